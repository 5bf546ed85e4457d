//! Which commands write, and which keys they touch, as the upstream itself says (COMMAND
//! INFO): module commands (FT.CREATE, JSON.SET, VADD, …) are covered without a hand-kept
//! list, and a newer Redis brings its own table.

use std::collections::HashMap;

use super::redis_client::{ClientError, RedisClient};
use crate::protocol::resp_value::Value;

/// What vecwal needs to know about one command (or `container|subcommand`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandInfo {
    pub write: bool,
    /// Redis's `may_replicate` flag: not a write, but may add to the replication stream
    /// (scripts, functions, PUBLISH, PFCOUNT rewriting an HLL's cached count).
    pub may_replicate: bool,
    /// A module's command: it may reply with an error after it wrote.
    pub module: bool,
    /// Redis's `blocking` flag: the reply may wait for another client's write.
    pub blocking: bool,
    /// Legacy key positions (1-based; `last` may count from the end).
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    /// Keys cannot be found from fixed positions.
    pub movable: bool,
    /// Neither reads nor changes the connection's own state and never waits: it may share
    /// an upstream connection with other clients' commands (see [`CommandTable::route`]).
    pub shareable: bool,
}

/// What a command does to the keyspace, as far as ordering and logging go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Reads, connection state, everything that is not logged.
    Read,
    /// A write touching exactly these keys.
    Keys(Vec<Vec<u8>>),
    /// A write whose keys are unknown or not keys at all (FLUSHDB, FT.CREATE, scripts):
    /// ordered against every other write.
    Global,
}

#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    cmds: HashMap<String, CommandInfo>,
    containers: std::collections::HashSet<String>,
}

impl CommandTable {
    /// Loads the table from the upstream's `COMMAND INFO`.
    pub async fn load(c: &mut RedisClient) -> Result<CommandTable, ClientError> {
        let v = c.ok(&["COMMAND", "INFO"]).await?;
        let mut t = CommandTable::default();
        for entry in v.items().unwrap_or_default() {
            t.add(entry, None);
        }
        if t.cmds.is_empty() {
            return Err(ClientError::Protocol(
                "COMMAND INFO returned no commands".into(),
            ));
        }
        Ok(t)
    }

    fn add(&mut self, entry: &Value, parent: Option<&str>) {
        let Some(f) = entry.items() else { return };
        let Some(name) = f.first().and_then(Value::bytes) else {
            return;
        };
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let flags = lowercase_strings(f.get(2));
        let has = |s: &str| flags.iter().any(|x| x == s);
        let categories = lowercase_strings(f.get(6));
        let info = CommandInfo {
            write: has("write"),
            may_replicate: has("may_replicate"),
            module: has("module"),
            blocking: has("blocking"),
            first_key: f.get(3).and_then(Value::int).unwrap_or(0),
            last_key: f.get(4).and_then(Value::int).unwrap_or(0),
            step: f.get(5).and_then(Value::int).unwrap_or(0),
            movable: has("movablekeys"),
            shareable: shareable(&name, &flags, &categories),
        };
        let mut info = info;
        if let Some(subs) = f.get(9).and_then(Value::items).filter(|s| !s.is_empty()) {
            // A container with an unknown subcommand falls back to its own entry.
            info.shareable = false;
            self.containers.insert(name.clone());
            for s in subs {
                self.add(s, Some(&name));
            }
        }
        let _ = parent; // subcommand names already read "container|sub"
        self.cmds.insert(name, info);
    }

    /// The entry for `argv`, a container's subcommand resolved.
    pub fn get(&self, argv: &[Vec<u8>]) -> Option<&CommandInfo> {
        let name = String::from_utf8_lossy(argv.first()?).to_ascii_lowercase();
        if self.containers.contains(&name) {
            if let Some(sub) = argv.get(1) {
                let full = format!(
                    "{name}|{}",
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                );
                if let Some(i) = self.cmds.get(&full) {
                    return Some(i);
                }
            }
        }
        self.cmds.get(&name)
    }

    /// Whether `argv` may change what Redis replicates, and whether it may have done so
    /// even when it answers with an error.
    pub fn effect(&self, argv: &[Vec<u8>]) -> Effect {
        match self.get(argv) {
            // Not in the table: a module loaded since it was read, or a typo Redis refuses.
            None => Effect::Always,
            Some(i) => effect_of(i, argv),
        }
    }

    /// [`CommandTable::effect`], and whether the command may share an upstream connection
    /// with other clients' commands, from its name and first argument (a container's
    /// subcommand). This runs for every request the proxy forwards, so it looks up without
    /// allocating: names are lowercased on the stack.
    pub fn route(&self, name: &[u8], first: Option<&[u8]>) -> (Effect, bool) {
        let mut lower = [0u8; 96];
        let Some(n) = lowercase(name, &mut lower) else {
            return (Effect::Always, false); // no command has such a name
        };
        let mut info = None;
        if let Some(sub) = first.filter(|_| self.containers.contains(n)) {
            let mut full = [0u8; 96];
            let (head, rest) = full.split_at_mut(n.len() + 1);
            head[..n.len()].copy_from_slice(n.as_bytes());
            head[n.len()] = b'|';
            if let Some(s) = lowercase(sub, rest) {
                let len = n.len() + 1 + s.len();
                info = std::str::from_utf8(&full[..len])
                    .ok()
                    .and_then(|f| self.cmds.get(f));
            }
        }
        match info.or_else(|| self.cmds.get(n)) {
            None => (Effect::Always, false),
            Some(i) => {
                let script = matches!(n, "eval" | "evalsha" | "fcall");
                (effect_from(i, script), i.shareable)
            }
        }
    }

    /// Whether `argv` writes and to which keys.
    pub fn access(&self, argv: &[Vec<u8>]) -> Access {
        self.classify(argv).0
    }

    /// [`CommandTable::access`], and whether the command may block (one table lookup).
    pub fn classify(&self, argv: &[Vec<u8>]) -> (Access, bool) {
        let Some(info) = self.get(argv) else {
            return (Access::Read, false); // unknown: Redis answers it with an error
        };
        if !info.write {
            return (Access::Read, info.blocking);
        }
        let access = match keys_of(info, argv) {
            Some(k) if !k.is_empty() => Access::Keys(k),
            _ => Access::Global,
        };
        (access, info.blocking)
    }

    /// Keys of `argv` from the fixed positions, if it has them.
    pub fn keys(&self, argv: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        keys_of(self.get(argv)?, argv)
    }

    #[cfg(test)]
    pub fn insert(&mut self, name: &str, info: CommandInfo) {
        self.cmds.insert(name.to_string(), info);
    }
}

/// What a command may do to Redis's replication stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Only when it answers without an error.
    OnSuccess,
    /// Whatever it answers.
    Always,
}

fn effect_of(i: &CommandInfo, argv: &[Vec<u8>]) -> Effect {
    effect_from(i, is_script(argv))
}

fn effect_from(i: &CommandInfo, script: bool) -> Effect {
    if !i.write && !i.may_replicate {
        Effect::None
    } else if i.module || script {
        // A script or a module command may fail after it wrote; a core command that
        // answers with an error changed nothing.
        Effect::Always
    } else {
        Effect::OnSuccess
    }
}

/// Whether a command may go to Redis on a connection other clients' commands share. Such a
/// connection is a plain, unauthenticated connection to database 0, as a new client's is,
/// and it must stay so for every client on it: nothing that changes or reads the
/// connection's own state (AUTH, SELECT, HELLO, CLIENT, transactions, pub/sub, tracking),
/// nothing that blocks it (blocking pops, WAIT), and nothing an operator runs (`@admin`:
/// MONITOR, CONFIG, DEBUG, …) since it may stop the connection. Judged from Redis's own
/// flags and ACL categories, so a module's or a newer Redis's commands are judged too; a
/// command not in the table is never shared.
fn shareable(name: &str, flags: &[String], categories: &[String]) -> bool {
    let flag = |s: &str| flags.iter().any(|x| x == s);
    let category = |s: &str| categories.iter().any(|x| x == s);
    if flag("blocking") || flag("pubsub") || flag("admin") || flag("no_multi") {
        return false;
    }
    // Not @dangerous as such: it holds INFO, KEYS, FLUSHALL and SORT, which touch no
    // connection state; what in it does is @admin, @connection or named below.
    if ["@transaction", "@pubsub", "@blocking", "@admin"]
        .iter()
        .any(|c| category(c))
    {
        return false;
    }
    // A script holds its connection until it ends: one that runs long would stall every
    // client behind it, and the SCRIPT KILL that ends it, if sent on the shared connection,
    // would wait behind it for ever. On its own connection, others get BUSY as from Redis.
    if category("@scripting") {
        return false;
    }
    // @connection holds PING and ECHO, which touch no state, and everything that does.
    if category("@connection") && !matches!(name, "ping" | "echo") {
        return false;
    }
    // Explicitly, whatever a table says of them.
    !matches!(
        name.split('|').next().unwrap_or(name),
        "auth"
            | "hello"
            | "select"
            | "reset"
            | "quit"
            | "client"
            | "multi"
            | "exec"
            | "discard"
            | "watch"
            | "unwatch"
            | "wait"
            | "waitaof"
            | "monitor"
            | "sync"
            | "psync"
            | "readonly"
            | "readwrite"
            | "asking"
            | "replconf"
            | "shutdown"
            | "debug"
    )
}

/// The strings of an array of `COMMAND INFO` (flags, ACL categories), in lowercase.
fn lowercase_strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::items)
        .unwrap_or_default()
        .iter()
        .filter_map(|x| {
            x.bytes()
                .map(|b| String::from_utf8_lossy(b).to_ascii_lowercase())
        })
        .collect()
}

/// `name` in lowercase in `buf`, if it fits and is UTF-8.
fn lowercase<'a>(name: &[u8], buf: &'a mut [u8]) -> Option<&'a str> {
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

fn is_script(argv: &[Vec<u8>]) -> bool {
    let name = argv[0].to_ascii_lowercase();
    matches!(name.as_slice(), b"eval" | b"evalsha" | b"fcall")
}

fn keys_of(info: &CommandInfo, argv: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if info.movable || info.first_key <= 0 || info.step <= 0 {
        return None;
    }
    let n = argv.len() as i64;
    let last = if info.last_key < 0 {
        n + info.last_key
    } else {
        info.last_key
    };
    let mut keys = Vec::new();
    let mut i = info.first_key;
    while i <= last && i < n {
        keys.push(argv[i as usize].clone());
        i += info.step;
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    /// A `COMMAND INFO` entry as Redis 8 sends it.
    fn entry(name: &str, flags: &[&str], categories: &[&str], subs: Vec<Value>) -> Value {
        let bulks = |v: &[&str]| {
            Value::Array(Some(
                v.iter()
                    .map(|s| Value::Bulk(Some(s.as_bytes().to_vec())))
                    .collect(),
            ))
        };
        Value::Array(Some(vec![
            Value::Bulk(Some(name.as_bytes().to_vec())),
            Value::Int(-1),
            bulks(flags),
            Value::Int(1),
            Value::Int(1),
            Value::Int(1),
            bulks(categories),
            bulks(&[]),
            bulks(&[]),
            Value::Array(Some(subs)),
        ]))
    }

    #[test]
    fn only_commands_that_keep_a_connection_plain_are_shareable() {
        let mut t = CommandTable::default();
        for e in [
            entry(
                "set",
                &["write", "denyoom"],
                &["@write", "@string", "@slow"],
                vec![],
            ),
            entry(
                "get",
                &["readonly", "fast"],
                &["@read", "@string", "@fast"],
                vec![],
            ),
            entry(
                "eval",
                &["noscript", "may_replicate"],
                &["@slow", "@scripting"],
                vec![],
            ),
            entry("ping", &["fast"], &["@fast", "@connection"], vec![]),
            entry(
                "select",
                &["loading", "fast"],
                &["@fast", "@connection"],
                vec![],
            ),
            entry(
                "blpop",
                &["write", "blocking"],
                &["@write", "@list", "@blocking"],
                vec![],
            ),
            entry(
                "multi",
                &["noscript", "fast", "no_multi"],
                &["@fast", "@transaction"],
                vec![],
            ),
            entry(
                "flushall",
                &["write"],
                &["@keyspace", "@write", "@dangerous"],
                vec![],
            ),
            entry(
                "role",
                &["noscript"],
                &["@admin", "@fast", "@dangerous"],
                vec![],
            ),
            entry("subscribe", &["pubsub"], &["@pubsub", "@slow"], vec![]),
            entry("vadd", &["write", "module"], &["@write", "@module"], vec![]),
            entry(
                "object",
                &[],
                &["@slow"],
                vec![entry(
                    "object|encoding",
                    &["readonly"],
                    &["@read", "@keyspace"],
                    vec![],
                )],
            ),
            entry(
                "client",
                &[],
                &["@slow"],
                vec![entry(
                    "client|id",
                    &["fast"],
                    &["@slow", "@connection"],
                    vec![],
                )],
            ),
        ] {
            t.add(&e, None);
        }
        let route =
            |name: &str, first: Option<&str>| t.route(name.as_bytes(), first.map(str::as_bytes));
        assert_eq!(route("SET", Some("k")), (Effect::OnSuccess, true));
        assert_eq!(route("get", Some("k")), (Effect::None, true));
        assert_eq!(route("EvAl", Some("return 1")), (Effect::Always, false));
        assert_eq!(route("PING", None), (Effect::None, true));
        assert_eq!(route("FLUSHALL", None), (Effect::OnSuccess, true));
        assert_eq!(route("VADD", Some("v")), (Effect::Always, true));
        assert_eq!(route("OBJECT", Some("ENCODING")), (Effect::None, true));
        // The container alone, or with a subcommand it does not have, is not shared.
        assert_eq!(route("object", None), (Effect::None, false));
        assert_eq!(route("object", Some("nosuch")), (Effect::None, false));
        for (name, first) in [
            ("select", Some("1")),
            ("blpop", Some("l")),
            ("multi", None),
            ("role", None),
            ("subscribe", Some("c")),
            ("client", Some("id")),
            ("nosuch", None),
        ] {
            assert!(!route(name, first).1, "{name} must not be shared");
        }
        assert_eq!(route("nosuch", None).0, Effect::Always);
        // A name longer than any command's: not found, not shared, and no panic.
        assert_eq!(route(&"x".repeat(500), None), (Effect::Always, false));
        // route agrees with effect on every command here.
        for (name, first) in [("set", "k"), ("get", "k"), ("eval", "s"), ("blpop", "l")] {
            let argv = vec![name.as_bytes().to_vec(), first.as_bytes().to_vec()];
            assert_eq!(route(name, Some(first)).0, t.effect(&argv));
        }
    }

    #[test]
    fn keys_come_from_fixed_positions() {
        let mut t = CommandTable::default();
        let w = |f, l, s| CommandInfo {
            write: true,
            first_key: f,
            last_key: l,
            step: s,
            ..Default::default()
        };
        t.insert("mset", w(1, -1, 2));
        t.insert("set", w(1, 1, 1));
        t.insert("flushdb", w(0, 0, 0));
        t.insert("get", CommandInfo::default());
        assert_eq!(
            t.access(&argv(&["MSET", "a", "1", "b", "2"])),
            Access::Keys(argv(&["a", "b"]))
        );
        assert_eq!(
            t.access(&argv(&["set", "k", "v"])),
            Access::Keys(argv(&["k"]))
        );
        assert_eq!(t.access(&argv(&["FLUSHDB"])), Access::Global);
        assert_eq!(t.access(&argv(&["GET", "k"])), Access::Read);
        assert_eq!(t.access(&argv(&["NOSUCH"])), Access::Read);
    }
}
