//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use vecwal::log::reader::{local_segments, RecordReader, Start};
use vecwal::log::{Entry, LogConfig};
use vecwal_format::{Operation, Record};

/// A Redis HSET of a 384-dim vector whose bytes are derived from `(writer, seq)`, so any
/// record can be checked against what was appended.
pub fn entry(writer: u64, seq: u64) -> Entry {
    Entry::new("0", &op(writer, seq)).unwrap()
}

pub fn op(writer: u64, seq: u64) -> Operation {
    let mut x = (writer << 32 | seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vector: Vec<u8> = (0..384)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5).to_le_bytes()
        })
        .collect();
    Operation::RedisCommand {
        argv: vec![
            b"HSET".to_vec(),
            format!("w{writer}:{seq}").into_bytes(),
            b"emb".to_vec(),
            vector,
        ],
    }
}

/// Every record of a data directory, in order; panics on a read error.
pub fn read_all(dir: &Path) -> Vec<Record> {
    RecordReader::new(local_segments(dir).unwrap(), Start::Beginning)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

pub fn config() -> LogConfig {
    LogConfig::new("test")
}

/// Runs the `vecwal` binary with `args`; a run longer than two minutes is killed and fails
/// the test, so a hang cannot stall the suite.
pub fn vecwal(args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecwal"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).map(|_| b)
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).map(|_| b)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vecwal {args:?} did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap().unwrap(),
        stderr: err_t.join().unwrap().unwrap(),
    }
}

/// Everything a command printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
