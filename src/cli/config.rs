//! `--config FILE` and `VECWAL_*` environment settings for the long-running commands.
//!
//! A setting is a flag by another name: `data-dir = "/var/lib/vecwal"` in the file, or
//! `VECWAL_DATA_DIR=/var/lib/vecwal` in the environment, is `--data-dir /var/lib/vecwal`.
//! So the file and the environment are expanded into flags before parsing, and every
//! check, default and help text of the flags holds for them too. A flag on the command
//! line wins over the environment, which wins over the file.

use std::ffi::OsString;

use clap::{ArgAction, CommandFactory};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read --config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--config {path}: {message}")]
    Invalid { path: String, message: String },
}

/// A flag of the command being run.
struct Flag {
    long: String,
    /// Takes no value (`--force`).
    switch: bool,
    /// May be given several times (`--store`).
    repeat: bool,
}

/// The flags of the subcommand `args` runs, if it takes `--config`.
fn flags_of(args: &[OsString]) -> Option<Vec<Flag>> {
    let mut cmd = super::Cli::command();
    cmd.build(); // global flags (--log-format) reach every subcommand
    for a in args.iter().skip(1) {
        let Some(a) = a.to_str() else { break };
        if a.starts_with('-') {
            break;
        }
        match cmd.find_subcommand(a) {
            Some(sub) => cmd = sub.clone(),
            None => break,
        }
    }
    let flags: Vec<Flag> = cmd
        .get_arguments()
        .filter_map(|a| {
            Some(Flag {
                long: a.get_long()?.to_string(),
                switch: matches!(a.get_action(), ArgAction::SetTrue),
                repeat: matches!(a.get_action(), ArgAction::Append),
            })
        })
        .collect();
    flags.iter().any(|f| f.long == "config").then_some(flags)
}

/// Whether `--long` was given on the command line.
fn given(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    })
}

/// The file `--config` names, if any.
fn config_path(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(str::to_string);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_string());
        }
    }
    None
}

/// The words a setting adds: `--long value` (repeated for a list), or `--long` alone for
/// a switch set to true.
fn words(f: &Flag, values: Vec<String>) -> Vec<OsString> {
    let mut out = Vec::new();
    for v in values {
        if f.switch {
            if matches!(v.as_str(), "true" | "1" | "yes") {
                out.push(format!("--{}", f.long).into());
            }
        } else {
            out.push(format!("--{}", f.long).into());
            out.push(v.into());
        }
    }
    out
}

/// The values of one entry of the file.
fn values(f: &Flag, v: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| -> Result<String, String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(format!("{} cannot be a {}", f.long, other.type_str())),
        })
    };
    match v {
        toml::Value::Array(items) if f.repeat => items.iter().map(one).collect(),
        toml::Value::Array(_) => Err(format!("{} takes one value, not a list", f.long)),
        v => Ok(vec![one(v)?]),
    }
}

/// `args` with the file's and the environment's settings added as flags.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(flags) = flags_of(&args) else {
        return Ok(args);
    };
    let mut settings: Vec<(usize, Vec<String>)> = Vec::new();
    if let Some(path) = config_path(&args) {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|e| invalid(format!("{e}")))?;
        for (key, v) in &table {
            let long = key.replace('_', "-");
            let i = flags
                .iter()
                .position(|f| f.long == long && long != "config")
                .ok_or_else(|| {
                    let known: Vec<&str> = flags
                        .iter()
                        .map(|f| f.long.as_str())
                        .filter(|l| !matches!(*l, "config" | "help"))
                        .collect();
                    invalid(format!(
                        "unknown setting {key:?}; this command's settings are: {}",
                        known.join(", ")
                    ))
                })?;
            settings.push((i, values(&flags[i], v).map_err(invalid)?));
        }
    }
    for (i, f) in flags.iter().enumerate() {
        if matches!(f.long.as_str(), "config" | "help" | "version") {
            continue;
        }
        let var = format!("VECWAL_{}", f.long.to_ascii_uppercase().replace('-', "_"));
        if let Ok(v) = std::env::var(&var) {
            let vals = if f.repeat {
                v.split(',').map(str::to_string).collect()
            } else {
                vec![v]
            };
            settings.retain(|(j, _)| *j != i);
            settings.push((i, vals));
        }
    }
    let mut out = args.clone();
    for (i, vals) in settings {
        if !given(&args, &flags[i].long) {
            out.extend(words(&flags[i], vals));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(Into::into).collect()
    }

    #[test]
    fn a_file_becomes_flags_and_the_command_line_wins() {
        let dir = std::env::temp_dir().join(format!("vecwal-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "data-dir = \"/d\"\nstore = [\"/a\", \"/b\"]\nship_interval = \"5s\"\nfsync = \"everysec\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let out = expand(argv(&[
            "vecwal", "proxy", "redis", "--config", f, "--fsync", "no",
        ]))
        .unwrap();
        let text: Vec<String> = out
            .iter()
            .map(|o| o.to_string_lossy().into_owned())
            .collect();
        let text = text.join(" ");
        assert!(text.contains("--data-dir /d"), "{text}");
        assert!(text.contains("--store /a --store /b"), "{text}");
        assert!(text.contains("--ship-interval 5s"), "{text}");
        assert!(
            !text.contains("everysec"),
            "the command line's --fsync wins: {text}"
        );

        std::fs::write(&file, "datadir = \"/d\"\n").unwrap();
        let e = expand(argv(&["vecwal", "proxy", "redis", "--config", f])).unwrap_err();
        assert!(e.to_string().contains("unknown setting \"datadir\""), "{e}");
        assert!(e.to_string().contains("data-dir"), "{e}");
        std::fs::write(&file, "fsync = [\"no\"]\n").unwrap();
        let e = expand(argv(&["vecwal", "proxy", "redis", "--config", f])).unwrap_err();
        assert!(e.to_string().contains("takes one value"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn commands_without_config_are_left_alone() {
        let a = argv(&["vecwal", "verify", "--store", "/s"]);
        assert_eq!(expand(a.clone()).unwrap(), a);
    }
}
