//! Byte-plane shuffle with a 4-byte element (SPEC.md §6.2): byte k of every 4-byte word
//! is gathered into plane k. For f32 vectors this puts the sign/exponent bytes, which
//! vary little across an embedding, next to each other where zstd finds the repetition.

/// Shuffles `src`; a tail shorter than one word is copied unchanged.
pub fn shuffle4(src: &[u8]) -> Vec<u8> {
    let words = src.len() / 4;
    let mut out = vec![0u8; src.len()];
    let (planes, tail) = out.split_at_mut(words * 4);
    let (p0, rest) = planes.split_at_mut(words);
    let (p1, rest) = rest.split_at_mut(words);
    let (p2, p3) = rest.split_at_mut(words);
    // One pass over the input, four sequential output streams: no bounds checks inside.
    for ((((w, a), b), c), d) in src.chunks_exact(4).zip(p0).zip(p1).zip(p2).zip(p3) {
        *a = w[0];
        *b = w[1];
        *c = w[2];
        *d = w[3];
    }
    tail.copy_from_slice(&src[words * 4..]);
    out
}

/// Inverse of [`shuffle4`].
pub fn unshuffle4(src: &[u8]) -> Vec<u8> {
    let words = src.len() / 4;
    let mut out = vec![0u8; src.len()];
    let (p0, rest) = src.split_at(words);
    let (p1, rest) = rest.split_at(words);
    let (p2, rest) = rest.split_at(words);
    let (p3, tail) = rest.split_at(words);
    let (body, out_tail) = out.split_at_mut(words * 4);
    for ((((w, a), b), c), d) in body.chunks_exact_mut(4).zip(p0).zip(p1).zip(p2).zip(p3) {
        w.copy_from_slice(&[*a, *b, *c, *d]);
    }
    out_tail.copy_from_slice(tail);
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
