//! The `vecwal` binary as an operator uses it: inspect and verify on real files, exit codes
//! and error text.

mod support;

use std::path::Path;

use support::{config, entry, text, vecwal};
use vecwal::log::Log;

async fn sample(dir: &Path) {
    let mut cfg = config();
    cfg.segment_max_bytes = 16 << 10;
    let (log, _) = Log::open(dir, cfg).unwrap();
    for i in 0..40 {
        log.append(entry(3, i)).await.unwrap();
    }
    log.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_sound_log_and_names_the_first_fault_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path()).await;
    let ok = vecwal(&["verify", dir.path().to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("sound: "), "{}", text(&ok));
    assert!(text(&ok).contains("40 records"), "{}", text(&ok));

    let seg = std::fs::read_dir(dir.path().join("sealed"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let bad = vecwal(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let out = text(&bad);
    assert!(out.contains("FAULT: "), "{out}");
    assert!(out.contains(seg.to_str().unwrap()), "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");

    let json = vecwal(&["verify", "--json", seg.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["fault"]["path"], seg.to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_lists_records_from_an_lsn_or_a_time_without_dumping_payloads() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path()).await;
    let d = dir.path().to_str().unwrap();
    let o = vecwal(&["inspect", d, "--from-lsn", "38"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}"); // header + LSN 38, 39, 40
    assert!(lines[1].trim_start().starts_with("38 "), "{out}");
    assert!(lines[1].contains("HSET w3:37 emb <1536 bytes>"), "{out}");

    let o = vecwal(&["inspect", d, "--json", "--limit", "2"]);
    let out = String::from_utf8(o.stdout).unwrap();
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["lsn"], 1);
    assert_eq!(recs[0]["kind"], "redis");
    assert!(recs[0]["payload_bytes"].as_u64().unwrap() > 1536);
    let t = recs[1]["time"].as_str().unwrap();

    // --at: from the first record at or after that time.
    let o = vecwal(&["inspect", d, "--json", "--at", t, "--limit", "1"]);
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(first["lsn"].as_u64().unwrap() <= 2);
    assert!(first["time"].as_str().unwrap() >= t);
    let o = vecwal(&["inspect", d, "--at", "-1h", "--limit", "1"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = vecwal(&["inspect", d, "--at", "yesterday"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("RFC 3339"), "{}", text(&o));
    let o = vecwal(&["inspect", "/nonexistent/vecwal"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/vecwal"), "{}", text(&o));
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in ["inspect", "verify"] {
        let o = vecwal(&[cmd, "--help"]);
        assert!(o.status.success());
        let out = text(&o);
        assert!(out.contains("Examples:"), "{cmd}: {out}");
        assert!(
            out.contains(&format!("vecwal {cmd} /var/lib/vecwal")),
            "{cmd}: {out}"
        );
    }
}

#[test]
fn the_capture_and_restore_commands_teach_with_examples() {
    for cmd in [
        &["proxy", "redis"][..],
        &["tap", "redis"],
        &["proxy", "qdrant"],
        &["snapshot", "qdrant"],
        &["restore", "qdrant"],
        &["snapshot", "redis"],
        &["restore", "redis"],
        &["replay"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = vecwal(&args);
        assert!(o.status.success(), "{cmd:?}");
        let out = text(&o);
        assert!(
            out.contains("Examples:") || out.contains("Example:"),
            "{cmd:?}: {out}"
        );
        assert!(
            out.contains(&format!("vecwal {}", cmd.join(" "))),
            "{cmd:?}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_refuses_damage_in_the_middle_unless_told_and_then_names_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = Log::open(&data, config()).unwrap();
    for i in 0..5 {
        log.append(entry(1, i)).await.unwrap();
    }
    log.close().unwrap();
    // One flipped byte inside the second record of the open segment; records 3..=5 are whole.
    let wal = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = support::read_all(&data);
    let mut bytes = std::fs::read(&wal).unwrap();
    let header = bytes.len() - records.iter().map(|r| r.frame_len()).sum::<usize>();
    bytes[header + records[0].frame_len() + 20] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();
    let store = dir.path().join("store");
    let ship = |extra: &[&str]| {
        let mut args = vec![
            "ship",
            "--data-dir",
            data.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ];
        args.extend(extra);
        vecwal(&args)
    };
    let o = ship(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("--recovery truncate-after-damage"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        bytes,
        "nothing cut without being told"
    );
    let o = ship(&["--recovery", "truncate-after-damage"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("dropped 3 whole records (LSN 3 to 5)"),
        "{}",
        text(&o)
    );
    let o = vecwal(&["inspect", "--store", store.to_str().unwrap(), "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "{}",
        text(&o)
    );
}
