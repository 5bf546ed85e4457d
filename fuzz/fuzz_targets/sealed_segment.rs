#![no_main]
//! A sealed segment from arbitrary bytes: open (header, trailer, index), then every block,
//! and the seeks by LSN and time.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(seg) = vecwal_format::SealedSegment::open(data) {
        let _ = seg.verify();
        let _ = seg.block_for_lsn(seg.trailer.first_lsn);
        let _ = seg.block_for_time(seg.trailer.last_ts);
        for r in seg.records_from_block(0) {
            if r.is_err() {
                break;
            }
        }
    }
});
