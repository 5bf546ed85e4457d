//! Model-based test of the local log: random sequences of operations (appends of varied
//! sizes, rolls, reopens, a crash that leaves a torn partial frame, removal of shipped
//! segments, verification) checked after every step against a model of what must be there.
//! Failing cases shrink to a minimal sequence, which proptest records for the next runs.

mod support;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use support::config;
use vecwal::log::reader::local_segments;
use vecwal::log::verify::verify_files;
use vecwal::log::{Entry, Log, LogConfig};
use vecwal_format::{Kind, Record};

#[derive(Debug, Clone)]
enum Op {
    /// Appends records with these payload sizes.
    Append(Vec<usize>),
    Roll,
    Reopen,
    /// Close, then leave a partial frame at the end of the newest open segment.
    TornCrash(Vec<u8>),
    /// Remove the oldest sealed segment, as shipping does once every store has it.
    Ship,
    Verify,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0usize..3000, 1..12).prop_map(Op::Append),
        1 => Just(Op::Roll),
        1 => Just(Op::Reopen),
        1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::TornCrash),
        1 => Just(Op::Ship),
        1 => Just(Op::Verify),
    ]
}

fn payload(lsn: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (lsn as usize * 31 + i) as u8).collect()
}

fn cfg() -> LogConfig {
    let mut c = config();
    c.segment_max_bytes = 8 << 10; // size rolls happen along the way too
    c
}

/// Every record the directory holds, in order.
fn on_disk(dir: &std::path::Path) -> Vec<Record> {
    support::read_all(dir)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        // Integration tests have no lib.rs for proptest to sit its regressions beside.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/log_model.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_matches_its_model_after_every_operation(ops in prop::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Some(Log::open(dir.path(), cfg()).unwrap().0);
            // The model: payloads by LSN, and the first LSN still held locally.
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut first_local = 1u64;
            for op in ops {
                // Sealing runs on its own thread: the spool count equals the bytes on disk
                // exactly only when no seal is in flight (after a roll, a reopen or a crash).
                let quiescent = matches!(op, Op::Roll | Op::Reopen | Op::TornCrash(_));
                match op {
                    Op::Append(sizes) => {
                        let l = log.as_ref().unwrap();
                        for size in sizes {
                            let lsn = model.len() as u64 + 1;
                            let e = Entry { kind: Kind::RedisCommand, namespace: "0".into(), payload: payload(lsn, size) };
                            let a = l.append(e).await.unwrap();
                            prop_assert_eq!(a.lsn, lsn);
                            model.push(payload(lsn, size));
                        }
                    }
                    Op::Roll => {
                        log.as_ref().unwrap().roll().await.unwrap();
                    }
                    Op::Reopen => {
                        log.take().unwrap().close().unwrap();
                        let (l, report) = Log::open(dir.path(), cfg()).unwrap();
                        prop_assert_eq!(report.next_lsn, model.len() as u64 + 1);
                        prop_assert!(report.truncated.is_none());
                        // A restart seals what it finds: wait, so no seal is in flight.
                        l.wait_sealed(model.len() as u64).await.unwrap();
                        log = Some(l);
                    }
                    Op::TornCrash(garbage) => {
                        log.take().unwrap().close().unwrap();
                        let newest = std::fs::read_dir(dir.path().join("wal")).unwrap()
                            .map(|e| e.unwrap().path()).max().unwrap();
                        // A partial frame: a body length that runs past the end, then bytes.
                        let mut tail = 1000u32.to_le_bytes().to_vec();
                        tail.extend_from_slice(&garbage);
                        let mut bytes = std::fs::read(&newest).unwrap();
                        bytes.extend_from_slice(&tail);
                        std::fs::write(&newest, bytes).unwrap();
                        let (l, report) = Log::open(dir.path(), cfg()).unwrap();
                        prop_assert_eq!(report.next_lsn, model.len() as u64 + 1);
                        prop_assert_eq!(report.truncated.map(|t| t.2), Some(tail.len() as u64));
                        l.wait_sealed(model.len() as u64).await.unwrap();
                        log = Some(l);
                    }
                    Op::Ship => {
                        let l = log.as_ref().unwrap();
                        if let Some((name, path)) = l.sealed_segments().unwrap().into_iter().next() {
                            prop_assert_eq!(name.first_lsn, first_local);
                            l.remove_shipped(&path).unwrap();
                            first_local = name.last_lsn.unwrap() + 1;
                        }
                    }
                    Op::Verify => {
                        let report = verify_files(&local_segments(dir.path()).unwrap());
                        prop_assert!(report.is_sound(), "{:?}", report.fault);
                    }
                }
                // After every operation the directory holds exactly the model's local records.
                let l = log.as_ref().unwrap();
                prop_assert_eq!(l.last_lsn(), model.len() as u64);
                let got = on_disk(dir.path());
                let want = &model[(first_local - 1) as usize..];
                prop_assert_eq!(got.len(), want.len());
                for (r, p) in got.iter().zip(want) {
                    prop_assert_eq!(&r.payload, p, "LSN {}", r.lsn);
                }
                if let Some(r) = got.first() {
                    prop_assert_eq!(r.lsn, first_local);
                }
                if quiescent {
                    let spool: u64 = ["wal", "sealed"].iter()
                        .flat_map(|s| std::fs::read_dir(dir.path().join(s)).unwrap())
                        .map(|e| e.unwrap().metadata().unwrap().len()).sum();
                    prop_assert_eq!(l.spool_bytes(), spool);
                }
            }
            log.take().unwrap().close().unwrap();
            Ok(())
        })?;
    }
}
