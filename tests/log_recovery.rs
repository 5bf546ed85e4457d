//! Recovery on open: torn tails are cut only at the end of the newest open segment;
//! damage anywhere else is an error naming file and offset; leftovers of a crash mid-seal
//! are cleaned up without losing or duplicating a record.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{config, entry, read_all};
use vecwal::log::reader::local_segments;
use vecwal::log::verify::verify_files;
use vecwal::log::{Entry, Log, LogError};
use vecwal_format::Operation;

/// A log with `n` small records in the open segment (no roll).
async fn log_with(dir: &Path, n: u64) {
    let (log, _) = Log::open(dir, config()).unwrap();
    for i in 0..n {
        let set = Operation::RedisCommand {
            argv: vec![
                b"SET".to_vec(),
                format!("k{i}").into_bytes(),
                vec![i as u8; 20],
            ],
        };
        log.append(Entry::new("0", &set).unwrap()).await.unwrap();
    }
    log.close().unwrap();
}

/// A log with sealed segments and an open one: 120 records, segments of ~16 KiB.
async fn log_with_sealed(dir: &Path) -> Vec<PathBuf> {
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    let (log, _) = Log::open(dir, cfg).unwrap();
    for i in 0..120 {
        log.append(entry(0, i)).await.unwrap();
    }
    log.close().unwrap();
    local_segments(dir).unwrap()
}

fn only_file(dir: &Path) -> PathBuf {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_cut_at_any_byte_recovers_exactly_the_whole_records_before_it() {
    let base = tempfile::tempdir().unwrap();
    let pristine = base.path().join("pristine");
    log_with(&pristine, 4).await;
    let wal = only_file(&pristine.join("wal"));
    let full = fs::read(&wal).unwrap();
    let all = read_all(&pristine);
    // Frame boundaries: where each record's frame ends.
    let header_len = full.len() - all.iter().map(|r| r.frame_len()).sum::<usize>();
    let mut ends = vec![header_len];
    for r in &all {
        ends.push(ends.last().unwrap() + r.frame_len());
    }

    for cut in header_len..full.len() {
        let dir = base.path().join(format!("cut{cut}"));
        copy_dir(&pristine, &dir);
        fs::write(dir.join("wal").join(wal.file_name().unwrap()), &full[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;

        let (log, report) = Log::open(&dir, config()).unwrap();
        assert_eq!(report.next_lsn, whole as u64 + 1, "cut at {cut}");
        let boundary = ends.contains(&cut);
        assert_eq!(report.truncated.is_some(), !boundary, "cut at {cut}");
        if let Some((_, offset, dropped)) = &report.truncated {
            assert_eq!(*offset as usize, ends[whole]);
            assert_eq!((*offset + *dropped) as usize, cut);
        }
        // The log continues right after the last whole record.
        assert_eq!(log.append(entry(9, 9)).await.unwrap().lsn, whole as u64 + 1);
        log.close().unwrap();
        let got = read_all(&dir);
        assert_eq!(&got[..whole], &all[..whole], "cut at {cut}");
        assert_eq!(got.len(), whole + 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_a_sealed_segment_is_a_located_error_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_sealed(dir.path()).await;
    let victim = files
        .iter()
        .find(|f| f.extension().unwrap() == "seg")
        .unwrap()
        .clone();
    let mut bytes = fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&victim, &bytes).unwrap();

    // verify names the file and the block's LSN range.
    let report = verify_files(&local_segments(dir.path()).unwrap());
    let fault = report.fault.expect("verify finds the flipped byte");
    assert_eq!(fault.path, victim);
    assert!(
        fault.message.contains("checksum mismatch in block"),
        "{}",
        fault.message
    );
    assert!(fault.message.contains("(LSN "), "{}", fault.message);
    assert!(fault.offset > 0 && fault.offset <= at as u64);

    // Opening the log checks sealed structures; a flipped byte in the index or trailer is
    // refused there. One inside a block is caught when it is read or verified: flip the
    // trailer too and the log must refuse to start.
    let n = bytes.len();
    bytes[n - 30] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();
    let err = Log::open(dir.path(), config())
        .err()
        .expect("open refuses a damaged sealed segment");
    match &err {
        LogError::Corruption { file, .. } => assert_eq!(file, &victim),
        other => panic!("expected Corruption, got {other}"),
    }
    assert!(err.to_string().contains(victim.to_str().unwrap()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_older_open_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 5).await;
    let older = only_file(&dir.path().join("wal"));
    // A newer open segment after it, as after a roll whose seal did not run yet.
    let newer = dir
        .path()
        .join("wal")
        .join("0000000001-00000000000000000006.wal");
    {
        let mut bytes = fs::read(&older).unwrap();
        let header_len = bytes.len()
            - read_all(dir.path())
                .iter()
                .map(|r| r.frame_len())
                .sum::<usize>();
        let mut newer_bytes = bytes[..header_len].to_vec();
        // Rewrite the header's first_lsn (offset 32) and checksum for LSN 6.
        newer_bytes[32..40].copy_from_slice(&6u64.to_le_bytes());
        let crc = crc(&newer_bytes[..header_len - 4]);
        newer_bytes[header_len - 4..].copy_from_slice(&crc.to_le_bytes());
        fs::write(&newer, newer_bytes).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 10); // the older file torn: impossible for a rolled file
        fs::write(&older, bytes).unwrap();
    }
    let err = Log::open(dir.path(), config()).err().expect("refused");
    match &err {
        LogError::Corruption { file, .. } => assert_eq!(file, &older),
        other => panic!("expected Corruption, got {other}"),
    }
}

fn crc(b: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC, bit by bit: independent of the crate under test.
    let mut c = 0xFFFF_FFFFu32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_segment_is_reported_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_sealed(dir.path()).await;
    let sealed: Vec<_> = files
        .iter()
        .filter(|f| f.extension().unwrap() == "seg")
        .collect();
    assert!(sealed.len() >= 3);
    fs::remove_file(sealed[1]).unwrap();
    let err = Log::open(dir.path(), config()).err().expect("refused");
    assert!(matches!(err, LogError::Gap { .. }), "{err}");
    assert!(err.to_string().contains("LSN gap"), "{err}");
    let report = verify_files(&local_segments(dir.path()).unwrap());
    assert!(report.fault.unwrap().message.starts_with("LSN gap"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_seal_neither_loses_nor_duplicates_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.segment_max_bytes = 1 << 30;
    let (log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..30 {
        log.append(entry(0, i)).await.unwrap();
    }
    let wal = only_file(&dir.path().join("wal"));
    let wal_bytes = fs::read(&wal).unwrap();
    log.roll().await.unwrap();
    log.close().unwrap();
    // As if the crash came after the sealed file was renamed into place but before the
    // open one was removed; plus a temp file from another interrupted seal.
    fs::write(&wal, &wal_bytes).unwrap();
    fs::write(dir.path().join("sealed").join("x.seg.tmp"), b"partial").unwrap();

    let (log, report) = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(report.already_sealed_removed, vec![wal.clone()]);
    assert_eq!(report.temp_files_removed, 1);
    assert_eq!(report.next_lsn, 31);
    log.close().unwrap();
    let records = read_all(dir.path());
    assert_eq!(
        records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_open_segments_are_sealed_on_start_and_a_torn_new_header_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 7).await;
    // A crash while creating the next segment: its header never got to disk whole.
    let torn = dir
        .path()
        .join("wal")
        .join("0000000001-00000000000000000008.wal");
    fs::write(&torn, &b"\x89VECWAL\n\x01\x00"[..]).unwrap();
    let (log, report) = Log::open(dir.path(), config()).unwrap();
    assert_eq!(report.next_lsn, 8);
    assert_eq!(
        report.to_seal, 1,
        "the segment holding 1..=7 is no longer the newest"
    );
    // The torn file was dropped and the next segment created afresh under the same name.
    let header = vecwal_format::peek_header(&fs::read(&torn).unwrap()).unwrap();
    assert_eq!(header.first_lsn, 8);
    tokio::time::timeout(std::time::Duration::from_secs(20), log.wait_sealed(7))
        .await
        .expect("sealed on start")
        .unwrap();
    assert_eq!(log.append(entry(0, 7)).await.unwrap().lsn, 8);
    log.close().unwrap();
    assert_eq!(read_all(dir.path()).len(), 8);
    assert_eq!(fs::read_dir(dir.path().join("sealed")).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_never_go_back_across_a_restart_even_if_the_clock_does() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 2).await;
    // A record stamped a day ahead, as if the clock was wrong before the restart.
    let ahead = append_future_record(dir.path());

    let (log, report) = Log::open(dir.path(), config()).unwrap();
    assert_eq!(report.next_lsn, 4);
    let a = log.append(entry(0, 3)).await.unwrap();
    assert_eq!(a.lsn, 4);
    assert!(
        a.timestamp_us >= ahead,
        "time went back: {} < {ahead}",
        a.timestamp_us
    );
    log.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_floor_survives_a_restart_after_every_record_was_shipped_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 1).await;
    // The last record is stamped a day ahead (a clock that was wrong, then corrected).
    let ahead = append_future_record(dir.path());

    // Roll, seal, and ship everything away: no record is left locally.
    let (log, _) = Log::open(dir.path(), config()).unwrap();
    log.roll().await.unwrap();
    for (_, path) in log.sealed_segments().unwrap() {
        log.remove_shipped(&path).unwrap();
    }
    log.close().unwrap();
    assert!(read_all(dir.path()).is_empty());

    let (log, _) = Log::open(dir.path(), config()).unwrap();
    let a = log.append(entry(0, 9)).await.unwrap();
    assert_eq!(a.lsn, 3);
    assert!(
        a.timestamp_us >= ahead,
        "time went back after the restart: {} < {ahead}",
        a.timestamp_us
    );
    log.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_middle_of_the_newest_segment_stops_recovery_unless_told_to_truncate() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 5).await;
    let wal = only_file(&dir.path().join("wal"));
    let records = read_all(dir.path());
    let mut bytes = fs::read(&wal).unwrap();
    // One flipped byte inside the second record; records 3..=5 after it are intact.
    let header_len = bytes.len() - records.iter().map(|r| r.frame_len()).sum::<usize>();
    let second = header_len + records[0].frame_len();
    bytes[second + 20] ^= 0x01;
    fs::write(&wal, &bytes).unwrap();

    let err = Log::open(dir.path(), config())
        .err()
        .expect("recovery must not drop LSNs 2..=5");
    assert!(
        matches!(err, LogError::Corruption { offset, .. } if offset == second as u64),
        "{err}"
    );
    assert!(
        err.to_string().contains("a whole record (LSN 3) follows"),
        "{err}"
    );
    assert_eq!(fs::read(&wal).unwrap(), bytes, "nothing was truncated");

    let mut cfg = config();
    cfg.recovery = vecwal::log::RecoveryMode::TruncateAfterDamage;
    let (log, report) = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(report.next_lsn, 2);
    assert_eq!(report.truncated.unwrap().1, second as u64);
    assert_eq!(
        report.dropped_records,
        Some((3, 5, 3)),
        "LSN 2 is the damage itself"
    );
    log.close().unwrap();
}

/// Appends to the open segment a record stamped a day ahead, as if the clock had been wrong
/// before a restart; returns its timestamp.
fn append_future_record(dir: &Path) -> i64 {
    let wal = only_file(&dir.join("wal"));
    let mut future = read_all(dir).pop().unwrap();
    let ahead = vecwal::log::now_us() + 86_400_000_000;
    future.lsn += 1;
    future.timestamp_us = ahead;
    let mut bytes = fs::read(&wal).unwrap();
    future.encode_frame(&mut bytes);
    fs::write(&wal, bytes).unwrap();
    ahead
}

/// A capture that restarts more often than segments roll by age must still ship: the
/// records a restart finds in the open segment are sealed at once, not `segment_max_age`
/// after the restart (killed every second, a proxy shipping every second fell 18 s behind).
#[tokio::test]
async fn records_found_at_restart_are_sealed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), 5).await;
    let mut cfg = config();
    cfg.segment_max_age = std::time::Duration::from_secs(3600);
    let (log, report) = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(report.next_lsn, 6);
    tokio::time::timeout(std::time::Duration::from_secs(30), log.wait_sealed(5))
        .await
        .expect("the records found at restart were not sealed within 30 s")
        .unwrap();
    // New records go on in a new open segment, after the sealed one.
    log.append(entry(0, 6)).await.unwrap();
    log.close().unwrap();
    let lsns: Vec<u64> = read_all(dir.path()).iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (1..=6).collect::<Vec<_>>());
}
