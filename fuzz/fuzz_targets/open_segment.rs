#![no_main]
//! An open segment from arbitrary bytes: header, then every frame until the tail.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, first)) = vecwal_format::open_segment_header(data) {
        let mut frames = vecwal_format::Frames::new(data, &header, first);
        for _ in frames.by_ref() {}
        assert!(frames.valid_len() as usize <= data.len());
        assert!(frames.tail().is_some() || frames.violation().is_some());
    }
});
