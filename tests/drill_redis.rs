//! `vecwal drill redis` on real Redis 8.2 with RediSearch and RedisJSON: a healthy store
//! passes (every key and exact vector search equal to the source), a drill can promote its
//! restore to a new base that restores exactly, `status --max-drill-age` pages on a stale
//! or missing drill, and each fault a store can carry fails the drill by name: a flipped
//! byte, a missing segment, a base snapshot that does not load.

#[path = "support/files.rs"]
mod files;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis.rs"]
mod redis;

use std::path::Path;
use std::process::Command;

use files::{copy_dir, files_under};
use proxy::{words, Proxied};
use redis::Redis;
use serde_json::Value;
use vecwal::catalog::Catalog;

/// Runs a drill with the scratch server the tests use; exit code, report, all output.
fn drill(store: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let (server, modules) = redis::server_and_modules();
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vecwal"));
    cmd.args(["drill", "redis", "--store"])
        .arg(store)
        .arg("--redis-server")
        .arg(server)
        .arg("--report")
        .arg(report.path())
        .args(extra);
    for m in modules {
        cmd.arg("--loadmodule").arg(m);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let json = std::fs::read(report.path()).unwrap_or_default();
    let report = serde_json::from_slice(&json).unwrap_or(Value::Null);
    (out.status.code(), report, text)
}

fn status(store: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(["status", "--max-lag", "1h", "--store"])
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

#[test]
fn a_drill_passes_on_a_sound_store_promotes_and_names_every_fault() {
    let source = Redis::start(&[]);
    let p = Proxied::start(&source, None);
    let mut c = p.conn();
    // Three rounds of writes, each shipped before the next: three segments after the base.
    for round in 0..3 {
        for i in 0..20 {
            let (k, v) = (format!("k{round}:{i}"), format!("v{i}"));
            words(&mut c, &["SET", &k, &v]);
            words(&mut c, &["HSET", &format!("h{round}"), &k, &v]);
            words(&mut c, &["SADD", "set", &k]);
            let (x, y) = (
                format!("{}", i + round * 20 + 1),
                format!("{}", (i * 7) % 13),
            );
            words(&mut c, &["VADD", "vs", "VALUES", "2", &x, &y, &k]);
        }
        words(&mut c, &["SET", "ttl", "x", "EX", "3600"]);
        words(
            &mut c,
            &["JSON.SET", "doc", "$", &format!("{{\"round\":{round}}}")],
        );
        words(&mut c, &["SET", &format!("marker{round}"), "1"]);
        p.shipped_lsn(&format!("marker{round}"));
    }
    let store = p.dir.path().join("store");

    // Sound: every key and every exact search equal to the source's.
    let src = format!("redis://{}", source.addr());
    let (code, report, text) = drill(&store, &["--source", &src]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["verdict"], "PASS", "{report:#}");
    assert!(text.contains("PASS"), "{text}");
    assert_eq!(check(&report, "keys")["status"], "pass", "{report:#}");
    assert!(check(&report, "keys")["detail"]
        .as_str()
        .unwrap()
        .ends_with("equal"));
    assert_eq!(check(&report, "searches")["status"], "pass", "{report:#}");
    assert_eq!(check(&report, "records")["status"], "pass", "{report:#}");
    let rto = &report["rto"];
    for phase in [
        "plan_s",
        "snapshot_download_s",
        "snapshot_load_s",
        "replay_s",
        "total_s",
    ] {
        assert!(rto[phase].as_f64().is_some(), "{phase} in {rto}");
    }
    assert!(rto["total_s"].as_f64().unwrap() > 0.0);
    let latest = report["restored_lsn"].as_u64().unwrap();
    assert_eq!(report["window"]["latest_lsn"].as_u64(), Some(latest));
    let (code, text) = status(&store, &["--max-drill-age", "35d"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("last passing drill"), "{text}");

    // The faults, each on a copy of the store as it is now (the base at its start).
    let work = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let d = work.path().join(name);
        copy_dir(&store, &d);
        d
    };
    let (flipped, missing, unloadable, stale) = (
        copy("flipped"),
        copy("missing"),
        copy("unloadable"),
        copy("stale"),
    );

    // Promoted: a new base at the restored record, which a drill then restores from.
    let (code, report, text) = drill(&store, &["--promote"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["promoted_lsn"].as_u64(), Some(latest), "{report:#}");
    let cat =
        p.rt.block_on(Catalog::load(p.store.as_ref(), "redis"))
            .unwrap();
    assert!(
        cat.snapshots.iter().any(|s| s.lsn == latest),
        "a base at LSN {latest}"
    );
    let (code, report, text) = drill(&store, &["--source", &src]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["base_lsn"].as_u64(), Some(latest), "{report:#}");
    assert!(check(&report, "keys")["detail"]
        .as_str()
        .unwrap()
        .ends_with("equal"));
    drop(p);

    let segments = files_under(&flipped, ".seg");
    assert!(segments.len() >= 3, "three segments: {segments:?}");
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(last, bytes).unwrap();
    let (code, report, text) = drill(&flipped, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["verdict"], "FAIL");
    let name = last.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        report["reason"].as_str().unwrap().contains(&name),
        "{report:#}"
    );

    let gone = &files_under(&missing, ".seg")[1];
    std::fs::remove_file(gone).unwrap();
    let (code, report, text) = drill(&missing, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        report["reason"].as_str().unwrap().contains("missing"),
        "{report:#}"
    );

    // A base cut short, its manifest rewritten to match: checksums pass, Redis refuses it.
    let rdb = &files_under(&unloadable, ".rdb")[0];
    let data = std::fs::read(rdb).unwrap();
    let cut = data[..data.len() / 2].to_vec();
    std::fs::write(rdb, &cut).unwrap();
    let manifest = rdb.with_extension("json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["size"] = cut.len().into();
    m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cut)).into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, report, text) = drill(&unloadable, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("could not load the base snapshot"),
        "{report:#}"
    );

    // No passing drill, then one too old: status fails for each.
    let (code, text) = status(&flipped, &["--max-drill-age", "35d"]);
    assert_eq!(
        code,
        Some(0),
        "the copy holds the first drill's pass: {text}"
    );
    let drills = files_under(&stale.join("redis/drills"), ".json");
    let mut r: Value = serde_json::from_slice(&std::fs::read(&drills[0]).unwrap()).unwrap();
    r["started_us"] = (vecwal::log::now_us() - 40 * 86_400_000_000).into();
    std::fs::write(&drills[0], serde_json::to_vec(&r).unwrap()).unwrap();
    let (code, text) = status(&stale, &["--max-drill-age", "35d"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("is 40.0 days old, more than --max-drill-age (35.0 days)"),
        "{text}"
    );
    std::fs::remove_file(&drills[0]).unwrap();
    let (code, text) = status(&stale, &["--max-drill-age", "35d"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no drill has passed"), "{text}");
    let (code, _) = status(&stale, &[]);
    assert_eq!(
        code,
        Some(0),
        "without --max-drill-age drills are not asked for"
    );
}
