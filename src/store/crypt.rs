//! Client-side encryption keys. The envelope itself is the format crate's
//! (`vecwal_format::envelope`, SPEC.md §11); this is where keys come from and which one
//! encrypts.

use std::path::Path;

use base64::Engine as _;
use vecwal_format::envelope::{self, EnvelopeError, Key};

/// Keys for client-side encryption: the first encrypts new objects, every one can decrypt
/// (older keys stay after a rotation until nothing they encrypted is retained).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new(keys: Vec<Key>) -> Option<Keyring> {
        (!keys.is_empty()).then_some(Keyring { keys })
    }

    /// Reads a key file: 64 hex digits, base64 of 32 bytes, or exactly 32 raw bytes.
    pub fn key_from_file(path: &Path) -> Result<Key, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        if bytes.len() == 32 {
            return Ok(Key::new(bytes.try_into().expect("32 bytes")));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| bad_key(&format!("key file {}", path.display())))?;
        parse_key(text).map_err(|_| bad_key(&format!("key file {}", path.display())))
    }

    /// Reads a key from an environment variable (hex or base64).
    pub fn key_from_env(var: &str) -> Result<Key, String> {
        let text =
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
        parse_key(&text).map_err(|_| bad_key(&format!("environment variable {var}")))
    }

    /// This keyring's keys first (the first still encrypts), then `older`'s: a rotation.
    pub fn with_older(&self, older: &Keyring) -> Keyring {
        Keyring {
            keys: self.keys.iter().chain(&older.keys).cloned().collect(),
        }
    }

    /// Id of the key that encrypts.
    pub fn current_id(&self) -> String {
        self.keys[0].id_hex()
    }

    /// Encrypts an object to be stored at `object_key` with the current key. The same
    /// object, name and key always give the same bytes (SPEC.md §11), so a retried upload
    /// is recognized by the store.
    pub fn encrypt(&self, object_key: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        envelope::seal(
            key,
            envelope::derive_nonce(key, object_key, plaintext),
            object_key,
            plaintext,
        )
    }

    pub fn decrypt(&self, object_key: &str, data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        envelope::open(&self.keys, object_key, data)
    }
}

fn parse_key(text: &str) -> Result<Key, ()> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).map_err(|_| ())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| ())?
    };
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| ())?;
    Ok(Key::new(bytes))
}

/// Says what is wrong without repeating what was read: it may be a key.
fn bad_key(source: &str) -> String {
    format!("{source} does not hold a 256-bit key: expected 64 hex digits, base64 of 32 bytes, or 32 raw bytes")
}
