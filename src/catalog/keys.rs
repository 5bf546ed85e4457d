//! Object names in a store. A stream's objects live under `<stream>/`:
//!
//! ```text
//! <stream>/stream.json                                   identity: name, id (written once)
//! <stream>/wal/<tl>/<first>-<last>.<first_us>-<last_us>.seg[.enc]
//! <stream>/snapshots/<tl>/<lsn>.<format>[.enc]            base snapshot bytes
//! <stream>/snapshots/<tl>/<lsn>.json                      its manifest, written last
//! <stream>/heartbeat.json                                  shipper's latest status
//! <stream>/verified.json                                   how far `verify --store` got
//! <stream>/drills/<started_us>.json                        a drill's report
//! ```
//! `<tl>` is 10 digits, LSNs and microsecond times 20, all zero-padded decimal, so keys sort
//! by timeline, then LSN. A segment's name carries its LSN and time range (taken from its
//! records), so one LIST gives a restore plan everything it needs.

pub const STREAM_FILE: &str = "stream.json";
pub const HEARTBEAT_FILE: &str = "heartbeat.json";
pub const VERIFIED_FILE: &str = "verified.json";
/// Below a stream: drill reports, one per drill (`vecwal drill`).
pub const DRILLS_DIR: &str = "drills/";

/// What a segment object's name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct SegmentKey {
    pub timeline: u32,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub encrypted: bool,
}

impl SegmentKey {
    pub fn key(&self, stream: &str) -> String {
        format!(
            "{stream}/wal/{:010}/{:020}-{:020}.{:020}-{:020}.seg{}",
            self.timeline,
            self.first_lsn,
            self.last_lsn,
            self.first_ts.max(0),
            self.last_ts.max(0),
            if self.encrypted { ".enc" } else { "" }
        )
    }

    /// Parses a key below `<stream>/wal/`; `None` for anything vecwal does not write.
    pub fn parse(stream: &str, key: &str) -> Option<SegmentKey> {
        let rest = key.strip_prefix(stream)?.strip_prefix("/wal/")?;
        let (tl, name) = rest.split_once('/')?;
        let (name, encrypted) = match name.strip_suffix(".seg.enc") {
            Some(n) => (n, true),
            None => (name.strip_suffix(".seg")?, false),
        };
        let (lsns, times) = name.split_once('.')?;
        let (first, last) = lsns.split_once('-')?;
        let (t0, t1) = times.split_once('-')?;
        let k = SegmentKey {
            timeline: tl.parse().ok()?,
            first_lsn: first.parse().ok()?,
            last_lsn: last.parse().ok()?,
            first_ts: t0.parse().ok()?,
            last_ts: t1.parse().ok()?,
            encrypted,
        };
        // LSN u64::MAX is never written (the next one would not exist); refusing it keeps
        // `last + 1` safe everywhere names are compared.
        (k.first_lsn >= 1
            && k.first_lsn <= k.last_lsn
            && k.last_lsn < u64::MAX
            && k.first_ts <= k.last_ts)
            .then_some(k)
    }
}

/// Prefix of every segment of a stream.
pub fn wal_prefix(stream: &str) -> String {
    format!("{stream}/wal/")
}

pub fn snapshot_prefix(stream: &str) -> String {
    format!("{stream}/snapshots/")
}

/// A snapshot of one namespace (a Qdrant collection) has it in its name, hex-encoded (any
/// byte may be in a collection name); a whole-database snapshot (Redis) has none.
fn snapshot_stem(stream: &str, timeline: u32, lsn: u64, namespace: &str) -> String {
    let ns = if namespace.is_empty() {
        String::new()
    } else {
        format!(".{}", hex::encode(namespace))
    };
    format!("{stream}/snapshots/{timeline:010}/{lsn:020}{ns}")
}

pub fn snapshot_manifest_key(stream: &str, timeline: u32, lsn: u64, namespace: &str) -> String {
    format!("{}.json", snapshot_stem(stream, timeline, lsn, namespace))
}

pub fn snapshot_data_key(
    stream: &str,
    timeline: u32,
    lsn: u64,
    namespace: &str,
    format: &str,
    encrypted: bool,
) -> String {
    let enc = if encrypted { ".enc" } else { "" };
    format!(
        "{}.{format}{enc}",
        snapshot_stem(stream, timeline, lsn, namespace)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip_and_sort_by_lsn() {
        let k = SegmentKey {
            timeline: 1,
            first_lsn: 10,
            last_lsn: 99,
            first_ts: 1_795_255_140_000_000,
            last_ts: 1_795_255_141_000_000,
            encrypted: true,
        };
        let s = k.key("redis-main");
        assert_eq!(
            s,
            "redis-main/wal/0000000001/00000000000000000010-00000000000000000099.\
             00001795255140000000-00001795255141000000.seg.enc"
        );
        assert_eq!(SegmentKey::parse("redis-main", &s), Some(k));
        assert_eq!(SegmentKey::parse("redis", &s), None);
        let later = SegmentKey {
            first_lsn: 100,
            last_lsn: 100,
            ..k
        };
        assert!(k.key("s") < later.key("s"));
        assert_eq!(SegmentKey::parse("s", "s/wal/0000000001/x.seg"), None);
    }
}
