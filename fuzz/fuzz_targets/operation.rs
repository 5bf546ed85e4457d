#![no_main]
//! Operation payloads of every kind from arbitrary bytes; the first byte picks the kind.
use libfuzzer_sys::fuzz_target;
use vecwal_format::{Kind, Operation};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else { return };
    if let Ok(op) = Operation::decode(Kind::from_code(kind), payload) {
        assert_eq!(op.encode().unwrap(), payload, "a decoded payload re-encodes to the same bytes");
    }
});
