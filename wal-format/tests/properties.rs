//! Property tests of the format: round trips, torn tails cut at every byte, every flipped
//! byte detected, and no input that makes a decoder panic.

use proptest::prelude::*;
use vecwal_format::{
    decode_frame, open_segment_header, Filter, Frames, Kind, Operation, Record, SealOptions,
    SealedSegment, SealedWriter, SegmentHeader, SegmentKind, Tail,
};

const STREAM: u64 = 42;

fn header(kind: SegmentKind, first_lsn: u64) -> SegmentHeader {
    SegmentHeader {
        kind,
        stream_id: STREAM,
        timeline: 3,
        first_lsn,
        created_us: 1,
        stream_name: "prop".into(),
    }
}

/// A run of records as a stream produces them: dense LSNs, time never going back.
fn stream(max: usize) -> impl Strategy<Value = Vec<Record>> {
    (
        1u64..1_000_000,
        prop::collection::vec(
            (
                0i64..5_000,
                any::<u8>(),
                "[a-z0-9]{0,12}",
                prop::collection::vec(any::<u8>(), 0..600),
            ),
            1..max,
        ),
    )
        .prop_map(|(first, items)| {
            let mut ts = 1_700_000_000_000_000i64;
            items
                .into_iter()
                .enumerate()
                .map(|(i, (dt, kind, ns, payload))| {
                    ts += dt;
                    Record {
                        lsn: first + i as u64,
                        timestamp_us: ts,
                        stream_id: STREAM,
                        timeline: 3,
                        kind: Kind::from_code(kind),
                        namespace: ns,
                        payload,
                    }
                })
                .collect()
        })
}

fn seal(records: &[Record], block_target: usize, filter: Filter) -> Vec<u8> {
    let opts = SealOptions {
        block_target,
        zstd_level: 1,
        filter,
    };
    let mut w = SealedWriter::new(
        Vec::new(),
        header(SegmentKind::Sealed, records[0].lsn),
        opts,
    )
    .unwrap();
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap().0
}

fn open_file(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
    let mut out = header(SegmentKind::Open, records[0].lsn).encode();
    let mut ends = vec![];
    for r in records {
        r.encode_frame(&mut out);
        ends.push(out.len());
    }
    (out, ends)
}

fn read_open(data: &[u8]) -> (Vec<Record>, Option<Tail>) {
    let (h, first) = open_segment_header(data).unwrap();
    let mut f = Frames::new(data, &h, first);
    let recs = f.by_ref().map(|(_, r)| r).collect();
    assert!(f.violation().is_none());
    (recs, f.tail().cloned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn frames_round_trip(records in stream(20)) {
        for r in &records {
            let mut buf = vec![];
            r.encode_frame(&mut buf);
            prop_assert_eq!(buf.len(), r.frame_len());
            let (back, n) = decode_frame(&buf, 0).unwrap();
            prop_assert_eq!(&back, r);
            prop_assert_eq!(n, buf.len());
        }
    }

    #[test]
    fn sealed_round_trip_and_seek(records in stream(60), target in 1usize..4096, shuffle in any::<bool>()) {
        let filter = if shuffle { Filter::Shuffle4 } else { Filter::None };
        let data = seal(&records, target, filter);
        let seg = SealedSegment::open(&data).unwrap();
        prop_assert_eq!(seg.verify().unwrap(), records.len() as u64);
        let back: Vec<Record> = seg.records_from_block(0).map(Result::unwrap).collect();
        prop_assert_eq!(&back, &records);
        // Seeking by LSN or time lands on the block holding the first record at or after it.
        for r in &records {
            let b = seg.block_for_lsn(r.lsn).unwrap();
            prop_assert!(seg.index[b].first_lsn <= r.lsn && r.lsn <= seg.index[b].last_lsn);
            let b = seg.block_for_time(r.timestamp_us).unwrap();
            let first_at = records.iter().find(|x| x.timestamp_us >= r.timestamp_us).unwrap();
            prop_assert!(seg.index[b].first_lsn <= first_at.lsn && first_at.lsn <= seg.index[b].last_lsn);
        }
        prop_assert!(seg.block_for_lsn(records.last().unwrap().lsn + 1).is_none());
    }

    #[test]
    fn open_segment_cut_anywhere_keeps_exactly_the_whole_frames(records in stream(8)) {
        let (data, ends) = open_file(&records);
        let header_len = header(SegmentKind::Open, 1).encoded_len();
        for cut in header_len..=data.len() {
            let (got, tail) = read_open(&data[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(&got[..], &records[..whole]);
            let clean = cut == header_len || ends.contains(&cut);
            prop_assert_eq!(matches!(tail, Some(Tail::Clean)), clean, "cut at {}", cut);
        }
    }

    #[test]
    fn operations_round_trip(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
                             s in "\\PC{0,30}", body in prop::collection::vec(any::<u8>(), 0..100), n in any::<u64>()) {
        let ops = vec![
            Operation::RedisCommand { argv: argv.clone() },
            Operation::RedisMulti { commands: vec![argv.clone(), argv] },
            Operation::QdrantRest { method: s.clone(), path: s.clone(), content_type: s.clone(), body: body.clone() },
            Operation::QdrantGrpc { path: s.clone(), message: body },
            Operation::StreamStart { source: s.clone(), vecwal_version: s.clone() },
            Operation::Snapshot { snapshot_lsn: n, size: n / 3, sha256: [7; 32], name: s.clone() },
            Operation::RestorePoint { name: s },
        ];
        for op in ops {
            let bytes = op.encode().unwrap();
            prop_assert_eq!(Operation::decode(op.kind(), &bytes).unwrap(), op);
        }
    }

    /// Arbitrary bytes, and valid segments with arbitrary damage, never panic a decoder.
    #[test]
    fn decoders_never_panic(records in stream(10), noise in prop::collection::vec(any::<u8>(), 0..300),
                            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                            kind in any::<u8>()) {
        let mut inputs = vec![noise.clone(), seal(&records, 128, Filter::Shuffle4), open_file(&records).0];
        for data in inputs.iter_mut().skip(1) {
            for (at, b) in &edits {
                let i = at.index(data.len());
                data[i] = *b;
            }
        }
        for data in &inputs {
            let _ = decode_frame(data, 0);
            let _ = Operation::decode(Kind::from_code(kind), data);
            if let Ok(seg) = SealedSegment::open(data) {
                let _ = seg.verify();
                let _ = seg.records_from_block(0).count();
            }
            if let Ok((h, first)) = open_segment_header(data) {
                let _ = Frames::new(data, &h, first).count();
            }
        }
    }
}

/// Every byte of a sealed segment is covered: flipping any one bit anywhere is detected,
/// and so is cutting the file at any length.
#[test]
fn every_flipped_byte_and_every_cut_of_a_sealed_segment_is_detected() {
    let records: Vec<Record> = (0..12u64)
        .map(|i| Record {
            lsn: 10 + i,
            timestamp_us: 1_000 + i as i64,
            stream_id: STREAM,
            timeline: 3,
            kind: Kind::RedisCommand,
            namespace: "0".into(),
            payload: Operation::RedisCommand {
                argv: vec![
                    b"SET".to_vec(),
                    format!("k{i}").into_bytes(),
                    vec![i as u8; 40],
                ],
            }
            .encode()
            .unwrap(),
        })
        .collect();
    for filter in [Filter::Shuffle4, Filter::None] {
        let data = seal(&records, 150, filter);
        let check = |d: &[u8]| SealedSegment::open(d).and_then(|s| s.verify());
        assert_eq!(check(&data).unwrap(), 12);
        for i in 0..data.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = data.clone();
                d[i] ^= bit;
                assert!(
                    check(&d).is_err(),
                    "flip {bit:#x} at offset {i} of {} went unnoticed",
                    data.len()
                );
            }
        }
        for cut in 0..data.len() {
            assert!(check(&data[..cut]).is_err(), "cut at {cut} went unnoticed");
        }
    }
}
