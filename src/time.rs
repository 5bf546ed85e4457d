//! Times and durations as operators type them.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses a point in time: RFC 3339 (`2026-11-21T09:59:00Z`, `2026-11-21T10:59:00+01:00`),
/// or relative to `now_us` (`-15m`, `-2h30m`, `-90s`). Returns UTC microseconds.
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("invalid relative time {s:?}: {e}"))?;
        let us = i64::try_from(d.as_micros())
            .map_err(|_| format!("relative time {s:?} is too far back"))?;
        return Ok(now_us - us);
    }
    if s == "now" {
        return Ok(now_us);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|e| {
            format!("invalid time {s:?}: {e}; use RFC 3339 like 2026-11-21T09:59:00Z, or a relative time like -15m")
        })
}

/// Parses a duration like `60s`, `1m`, `500ms`, `24h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 1s, 60s, 5m, 24h)"))
}

/// Formats UTC microseconds as RFC 3339 with microseconds.
pub fn format_us(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("<invalid time {us}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_and_relative_times() {
        let t = parse_time("2026-11-21T09:59:00Z", 0).unwrap();
        assert_eq!(format_us(t), "2026-11-21T09:59:00.000000Z");
        assert_eq!(parse_time("2026-11-21T10:59:00+01:00", 0).unwrap(), t);
        assert_eq!(parse_time("-15m", t).unwrap(), t - 15 * 60 * 1_000_000);
        assert_eq!(parse_time("-1h30m", t).unwrap(), t - 90 * 60 * 1_000_000);
        assert!(parse_time("yesterday", t).unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("fast").is_err());
    }
}
