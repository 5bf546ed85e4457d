#![no_main]
//! `decode_frame` on arbitrary bytes: an error or a record, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((record, n)) = vecwal_format::decode_frame(data, 0) {
        assert!(n <= data.len());
        let mut again = Vec::new();
        record.encode_frame(&mut again);
        assert_eq!(&again[..], &data[..n], "a decoded frame re-encodes to the same bytes");
    }
});
