#![no_main]
//! `decode_frame` on arbitrary bytes: an error or a record, never a panic; a decoded record
//! re-encodes to a frame that decodes to the same record. (Byte equality with the input
//! would not hold here: under the fuzzer the CRC is not checked, and re-encoding writes the
//! right one.)
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((record, n)) = vecwal_format::decode_frame(data, 0) {
        assert!(n <= data.len());
        let mut again = Vec::new();
        record.encode_frame(&mut again);
        assert_eq!(again.len(), n, "a re-encoded frame is as long as the decoded one");
        let (back, m) = vecwal_format::decode_frame(&again, 0).expect("a re-encoded frame decodes");
        assert_eq!((back, m), (record, n));
    }
});
