//! Golden files: committed segments in `testdata/` with their expected decodes.
//!
//! Two checks per file: the encoder still produces the committed bytes (so a format change
//! cannot slip in unnoticed), and decoding the committed bytes gives the committed
//! `.expected` text (so old files stay readable). After a deliberate format change, run
//! `UPDATE_GOLDEN=1 cargo test -p vecwal-format --test golden golden_files_match` (only that
//! test: the other one reads the files) and review the diff together with SPEC.md.

use std::fmt::Write as _;
use std::path::PathBuf;

use vecwal_format::envelope;
use vecwal_format::{
    open_segment_header, Filter, Frames, Kind, Operation, Record, SealOptions, SealedSegment,
    SealedWriter, SegmentHeader, SegmentKind, Tail,
};

const STREAM_ID: u64 = 0x5eed_0000_0000_0001;
/// 2026-11-21T09:59:00Z in microseconds.
const T0: i64 = 1_795_255_140_000_000;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn header(kind: SegmentKind) -> SegmentHeader {
    SegmentHeader {
        kind,
        stream_id: STREAM_ID,
        timeline: 1,
        first_lsn: 1,
        created_us: T0,
        stream_name: "golden".into(),
    }
}

fn vector(dim: usize, seed: f32) -> Vec<u8> {
    (0..dim)
        .flat_map(|i| ((i as f32 + seed) * 0.01).to_le_bytes())
        .collect()
}

/// The records every golden file is made of: one of each kind.
fn records() -> Vec<Record> {
    let ops = [
        (
            "",
            Operation::StreamStart {
                source: "redis://127.0.0.1:6379".into(),
                vecwal_version: "0.1.0".into(),
            },
        ),
        (
            "0",
            Operation::RedisCommand {
                argv: vec![
                    b"HSET".to_vec(),
                    b"doc:1".to_vec(),
                    b"emb".to_vec(),
                    vector(4, 1.0),
                ],
            },
        ),
        (
            "0",
            Operation::RedisMulti {
                commands: vec![
                    vec![
                        b"SET".to_vec(),
                        b"k".to_vec(),
                        b"v".to_vec(),
                        b"PXAT".to_vec(),
                        b"1795255200000".to_vec(),
                    ],
                    vec![b"DEL".to_vec(), b"doc:2".to_vec()],
                ],
            },
        ),
        (
            "docs",
            Operation::QdrantRest {
                method: "PUT".into(),
                path: "/collections/docs/points?wait=true".into(),
                content_type: "application/json".into(),
                body: br#"{"points":[{"id":1,"vector":[0.1,0.2]}]}"#.to_vec(),
            },
        ),
        (
            "docs",
            Operation::QdrantGrpc {
                path: "/qdrant.Points/Delete".into(),
                message: vec![0x0a, 0x04, b'd', b'o', b'c', b's'],
            },
        ),
        (
            "",
            Operation::Snapshot {
                snapshot_lsn: 5,
                size: 4096,
                sha256: [0xab; 32],
                name: "snapshots/00000000000000000005.rdb".into(),
            },
        ),
        (
            "",
            Operation::RestorePoint {
                name: "before-migration".into(),
            },
        ),
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, (ns, op))| Record {
            lsn: i as u64 + 1,
            timestamp_us: T0 + i as i64 * 250_000,
            stream_id: STREAM_ID,
            timeline: 1,
            kind: op.kind(),
            namespace: ns.into(),
            payload: op.encode().unwrap(),
        })
        .collect()
}

fn sealed(records: &[Record]) -> Vec<u8> {
    // A small block target so the file has several blocks and a real index.
    let opts = SealOptions {
        block_target: 200,
        zstd_level: 3,
        filter: Filter::Shuffle4,
    };
    let mut w = SealedWriter::new(Vec::new(), header(SegmentKind::Sealed), opts).unwrap();
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap().0
}

fn open(records: &[Record]) -> Vec<u8> {
    let mut out = header(SegmentKind::Open).encode();
    for r in records {
        r.encode_frame(&mut out);
    }
    out
}

/// The key of `encrypted.seg.enc`: 32 bytes of 0x42. Its id is in the `.expected` file.
fn golden_key() -> envelope::Key {
    envelope::Key::new([0x42; 32])
}

/// The store key `encrypted.seg.enc` was sealed under (authenticated with it).
const ENCRYPTED_NAME: &str = "golden/wal/0000000001/00000000000000000001-00000000000000000007.00001795255140000000-00001795255141500000.seg.enc";

/// Every golden file, built from code.
fn build() -> Vec<(&'static str, Vec<u8>)> {
    let recs = records();
    let valid_seg = sealed(&recs);
    let valid_wal = open(&recs);

    let mut torn = valid_wal.clone();
    torn.truncate(torn.len() - 7); // the last frame cut short, as by a crash mid-write

    let mut bad_crc = valid_seg.clone();
    let first_block_data = header(SegmentKind::Sealed).encoded_len() + 20;
    bad_crc[first_block_data + 3] ^= 0x01; // one bit of compressed data in block 0

    let mut bad_magic = valid_seg.clone();
    bad_magic[1] = b'X';

    let mut unknown_version = valid_seg.clone();
    unknown_version[8..10].copy_from_slice(&2u16.to_le_bytes());

    let mut unknown_kind_records = recs.clone();
    unknown_kind_records[2].kind = Kind::Unknown(200);
    unknown_kind_records[2].payload = b"from a newer writer".to_vec();
    let unknown_kind = sealed(&unknown_kind_records);

    let mut truncated = valid_seg.clone();
    truncated.truncate(truncated.len() - 10);

    // valid.seg encrypted with the test key (SPEC.md §11).
    let encrypted = envelope::seal(&golden_key(), [0x24; 24], ENCRYPTED_NAME, &valid_seg);

    vec![
        ("encrypted.seg.enc", encrypted),
        ("valid.seg", valid_seg),
        ("valid.wal", valid_wal),
        ("torn-tail.wal", torn),
        ("bad-checksum.seg", bad_crc),
        ("bad-magic.seg", bad_magic),
        ("unknown-version.seg", unknown_version),
        ("unknown-kind.seg", unknown_kind),
        ("truncated.seg", truncated),
    ]
}

fn describe_record(out: &mut String, r: &Record) {
    let op = match Operation::decode(r.kind, &r.payload) {
        Ok(op) => format!("{op:?}"),
        Err(e) => format!("<{} payload bytes, not decoded: {e}>", r.payload.len()),
    };
    writeln!(
        out,
        "record lsn={} ts={} stream={:016x} timeline={} kind={} ns={:?} op={op}",
        r.lsn,
        r.timestamp_us,
        r.stream_id,
        r.timeline,
        r.kind.name(),
        r.namespace
    )
    .unwrap();
}

/// A stable text rendering of what a reader makes of `data`.
fn describe(data: &[u8]) -> String {
    let mut out = String::new();
    if data.starts_with(&envelope::ENVELOPE_MAGIC) {
        let id = envelope::key_id(data).unwrap();
        writeln!(
            out,
            "envelope: key id {}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
        .unwrap();
        return match envelope::open(&[golden_key()], ENCRYPTED_NAME, data) {
            Ok(plain) => out + &describe(&plain),
            Err(e) => out + &format!("error: {e}\n"),
        };
    }
    let h = match vecwal_format::peek_header(data) {
        Ok(h) => h,
        Err(e) => return format!("error: {e}\n"),
    };
    writeln!(out, "header: {h:?}").unwrap();
    match h.kind {
        SegmentKind::Sealed => {
            let seg = match SealedSegment::open(data) {
                Ok(s) => s,
                Err(e) => {
                    writeln!(out, "error: {e}").unwrap();
                    return out;
                }
            };
            writeln!(out, "trailer: {:?}", seg.trailer).unwrap();
            for e in &seg.index {
                writeln!(out, "index: {e:?}").unwrap();
            }
            for r in seg.records_from_block(0) {
                match r {
                    Ok(r) => describe_record(&mut out, &r),
                    Err(e) => writeln!(out, "error: {e}").unwrap(),
                }
            }
        }
        SegmentKind::Open => {
            let (h, first) = open_segment_header(data).unwrap();
            let mut frames = Frames::new(data, &h, first);
            for (_, r) in frames.by_ref() {
                describe_record(&mut out, &r);
            }
            match frames.tail() {
                Some(Tail::Clean) => {
                    writeln!(out, "tail: clean at {}", frames.valid_len()).unwrap()
                }
                Some(Tail::Torn { offset, cause }) => {
                    writeln!(out, "tail: torn at {offset}: {cause}").unwrap()
                }
                None => writeln!(out, "violation: {}", frames.violation().unwrap()).unwrap(),
            }
        }
    }
    out
}

#[test]
fn golden_files_match_the_encoder_and_their_expected_decodes() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = testdata();
    for (name, bytes) in build() {
        let path = dir.join(name);
        let expected_path = dir.join(format!("{name}.expected"));
        if update {
            std::fs::write(&path, &bytes).unwrap();
            std::fs::write(&expected_path, describe(&bytes)).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{name}: {e} (run with UPDATE_GOLDEN=1)"));
        assert!(
            committed == bytes,
            "{name}: the encoder no longer produces the committed bytes"
        );
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(
            describe(&committed),
            expected,
            "{name}: decode differs from {name}.expected"
        );
    }
}

#[test]
fn golden_faults_are_the_documented_errors() {
    let read = |n: &str| std::fs::read(testdata().join(n)).unwrap();
    let err = |n: &str| {
        SealedSegment::open(&read(n))
            .and_then(|s| s.verify())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("bad-magic.seg").starts_with("bad magic at offset 0"),
        "{}",
        err("bad-magic.seg")
    );
    assert!(err("unknown-version.seg").starts_with("unsupported format version 2"));
    assert!(
        err("bad-checksum.seg").starts_with("checksum mismatch in block 0 (LSN 1..="),
        "{}",
        err("bad-checksum.seg")
    );
    assert!(
        err("truncated.seg").contains("trailer"),
        "{}",
        err("truncated.seg")
    );

    // An unknown kind decodes as a record; only its payload is opaque.
    let data = read("unknown-kind.seg");
    let seg = SealedSegment::open(&data).unwrap();
    assert_eq!(seg.verify().unwrap(), 7);
    let r: Vec<Record> = seg.records_from_block(0).map(Result::unwrap).collect();
    assert_eq!(r[2].kind, Kind::Unknown(200));
    assert!(!r[2].kind.is_marker());

    // The torn tail keeps exactly the whole frames before the cut.
    let data = read("torn-tail.wal");
    let (h, first) = open_segment_header(&data).unwrap();
    let mut frames = Frames::new(&data, &h, first);
    assert_eq!(frames.by_ref().count(), 6);
    assert!(matches!(frames.tail(), Some(Tail::Torn { .. })));
}
