//! Client-side encryption of store objects (SPEC.md §11): an authenticated envelope around
//! a whole object (a sealed segment or a snapshot), XChaCha20-Poly1305 with a random
//! 24-byte nonce. The object's key in the store is authenticated too, so an encrypted
//! object cannot be passed off under another object's name.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::Digest;

use crate::error::{FormatError, Result};

pub const ENVELOPE_MAGIC: [u8; 8] = *b"\x89VWENC\n\0";
pub const ENVELOPE_VERSION: u16 = 1;
/// XChaCha20-Poly1305.
pub const ALG_XCHACHA20_POLY1305: u8 = 1;
pub const ENVELOPE_HEADER_LEN: usize = 44;
pub const TAG_LEN: usize = 16;

/// A 256-bit key and its id: the first 8 bytes of SHA-256("vecwal key id\0" ‖ key). The
/// id names the key without revealing it, so a reader with several keys (after a
/// rotation) picks the right one, and a wrong key is a precise error.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    id: [u8; 8],
}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(id {})", self.id_hex())
    }
}

impl Key {
    pub fn new(bytes: [u8; 32]) -> Key {
        let mut h = sha2::Sha256::new();
        h.update(b"vecwal key id\0");
        h.update(bytes);
        let d = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        Key { bytes, id }
    }

    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The nonce vecwal uses: the first 24 bytes of
/// SHA-256("vecwal nonce" ‖ 00 ‖ key ‖ object_key ‖ 00 ‖ SHA-256(plaintext)).
///
/// Deterministic on purpose: sealing the same object under the same name and key again
/// (a retried upload whose confirmation was lost) gives the same bytes, so the store
/// recognizes it instead of seeing a conflict. Different contents or names give different
/// nonces; with 192-bit nonces a collision is out of reach. It reveals only whether two
/// objects under the same name and key are equal.
pub fn derive_nonce(key: &Key, object_key: &str, plaintext: &[u8]) -> [u8; 24] {
    let mut h = sha2::Sha256::new();
    h.update(b"vecwal nonce\0");
    h.update(key.bytes);
    h.update(object_key.as_bytes());
    h.update([0u8]);
    h.update(sha2::Sha256::digest(plaintext));
    let d = h.finalize();
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&d[..24]);
    nonce
}

/// Encrypts `plaintext`, stored at `object_key`, with `key` and `nonce` (which must never
/// repeat for a key with other contents: use [`derive_nonce`] or the OS's random source).
pub fn seal(key: &Key, nonce: [u8; 24], object_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&ENVELOPE_MAGIC);
    out.extend_from_slice(&ENVELOPE_VERSION.to_le_bytes());
    out.push(ALG_XCHACHA20_POLY1305);
    out.push(0);
    out.extend_from_slice(&key.id);
    out.extend_from_slice(&nonce);
    let aad = aad(&out, object_key);
    let cipher = XChaCha20Poly1305::new((&key.bytes).into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any length that fits in memory");
    out.extend_from_slice(&ct);
    out
}

/// The key id an envelope names, after checking its header.
pub fn key_id(data: &[u8]) -> Result<[u8; 8]> {
    header(data).map(|h| h.0)
}

fn header(data: &[u8]) -> Result<([u8; 8], [u8; 24])> {
    if data.len() < ENVELOPE_MAGIC.len() || data[..8] != ENVELOPE_MAGIC {
        return Err(FormatError::BadMagic {
            offset: 0,
            found: data[..data.len().min(8)].to_vec(),
        });
    }
    if data.len() < ENVELOPE_HEADER_LEN + TAG_LEN {
        return Err(FormatError::Truncated {
            what: "encryption envelope".into(),
            offset: 0,
            need: (ENVELOPE_HEADER_LEN + TAG_LEN) as u64,
            have: data.len() as u64,
        });
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if version != ENVELOPE_VERSION {
        return Err(FormatError::UnsupportedVersion {
            offset: 8,
            found: version,
            supported: ENVELOPE_VERSION,
        });
    }
    if data[10] != ALG_XCHACHA20_POLY1305 || data[11] != 0 {
        return Err(FormatError::malformed(
            "encryption envelope",
            10,
            format!("unknown algorithm {} (reserved {})", data[10], data[11]),
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&data[12..20]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&data[20..44]);
    Ok((id, nonce))
}

/// Decrypts an envelope stored at `object_key` with whichever of `keys` it names.
pub fn open(keys: &[Key], object_key: &str, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let (id, nonce) = header(data).map_err(EnvelopeError::Format)?;
    let key = keys
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| EnvelopeError::UnknownKey {
            wanted: id.iter().map(|b| format!("{b:02x}")).collect(),
            have: keys.iter().map(Key::id_hex).collect(),
        })?;
    let aad = aad(&data[..ENVELOPE_HEADER_LEN], object_key);
    XChaCha20Poly1305::new((&key.bytes).into())
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &data[ENVELOPE_HEADER_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::Authentication)
}

fn aad(header: &[u8], object_key: &str) -> Vec<u8> {
    let mut aad = header[..ENVELOPE_HEADER_LEN].to_vec();
    aad.extend_from_slice(object_key.as_bytes());
    aad
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a readable encryption envelope: {0}")]
    Format(FormatError),
    #[error("encrypted with key id {wanted}, but the keys given have ids [{}]", have.join(", "))]
    UnknownKey { wanted: String, have: Vec<String> },
    #[error("authentication failed: the object was altered, renamed, or the key is wrong")]
    Authentication,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tamper_is_detected() {
        let k = Key::new([7; 32]);
        let ks = std::slice::from_ref(&k);
        let data = seal(&k, [1; 24], "s/wal/x.seg.enc", b"a sealed segment");
        assert_eq!(
            open(ks, "s/wal/x.seg.enc", &data).unwrap(),
            b"a sealed segment"
        );
        // Another name: the object was moved.
        assert_eq!(
            open(ks, "s/wal/y.seg.enc", &data),
            Err(EnvelopeError::Authentication)
        );
        // Any flipped byte past the magic/version/algorithm is an authentication failure
        // or a precise header error; never a wrong plaintext.
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 1;
            assert!(open(ks, "s/wal/x.seg.enc", &d).is_err(), "flip at {i}");
        }
        let other = Key::new([8; 32]);
        match open(std::slice::from_ref(&other), "s/wal/x.seg.enc", &data) {
            Err(EnvelopeError::UnknownKey { wanted, have }) => {
                assert_eq!(wanted, k.id_hex());
                assert_eq!(have, vec![other.id_hex()]);
            }
            r => panic!("{r:?}"),
        }
        assert!(
            !format!("{k:?}").contains("07"),
            "Debug must not print key bytes"
        );
    }
}
