//! Byte-plane shuffle with a 4-byte element (SPEC.md §6.2): byte k of every 4-byte word
//! is gathered into plane k. For f32 vectors this puts the sign/exponent bytes, which
//! vary little across an embedding, next to each other where zstd finds the repetition.

/// Shuffles `src`; a tail shorter than one word is copied unchanged.
pub fn shuffle4(src: &[u8]) -> Vec<u8> {
    let words = src.len() / 4;
    let mut out = vec![0u8; src.len()];
    for plane in 0..4 {
        let dst = &mut out[plane * words..(plane + 1) * words];
        for (i, d) in dst.iter_mut().enumerate() {
            *d = src[i * 4 + plane];
        }
    }
    out[words * 4..].copy_from_slice(&src[words * 4..]);
    out
}

/// Inverse of [`shuffle4`].
pub fn unshuffle4(src: &[u8]) -> Vec<u8> {
    let words = src.len() / 4;
    let mut out = vec![0u8; src.len()];
    for plane in 0..4 {
        let s = &src[plane * words..(plane + 1) * words];
        for (i, b) in s.iter().enumerate() {
            out[i * 4 + plane] = *b;
        }
    }
    out[words * 4..].copy_from_slice(&src[words * 4..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_tail_length() {
        for len in 0..23 {
            let data: Vec<u8> = (0..len as u8).collect();
            assert_eq!(unshuffle4(&shuffle4(&data)), data);
        }
        assert_eq!(
            shuffle4(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            vec![1, 5, 2, 6, 3, 7, 4, 8, 9]
        );
    }
}
