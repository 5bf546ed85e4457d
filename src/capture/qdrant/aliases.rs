//! Aliases, resolved in the proxy. Qdrant applies a write sent to an alias to the
//! collection the alias points at; the proxy orders it against that collection's other
//! writes and logs it under that collection, so `restore --collection C` sees every write
//! that reached C, whatever name the client used (the blue/green reindex pattern: clients
//! write to `live`, which is swapped from `docs_v1` to `docs_v2`).
//!
//! The map is read from Qdrant (`GET /aliases`) at start, again after every alias change
//! through the proxy (while that change still holds every claim, so no write sees a stale
//! map; a failed change too, since Qdrant keeps the actions before the failing one), after
//! a collection is deleted (its aliases go with it), and every second, for changes made on
//! Qdrant directly. Qdrant itself does not resolve aliases for creating and deleting a
//! collection, and neither does the proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use http::{HeaderValue, Method};

use super::proxy::Proxy;

#[derive(Default)]
pub struct Aliases {
    /// The map, and the number of the read it came from.
    map: RwLock<(u64, HashMap<String, String>)>,
    reads: AtomicU64,
}

impl Aliases {
    /// The collection `name` reaches.
    pub fn resolve(&self, name: &str) -> String {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.1.get(name).cloned().unwrap_or_else(|| name.to_string())
    }

    /// Reads the aliases from Qdrant. Of two reads that overlap, the one that began later
    /// wins: a periodic read that began before an alias change never overwrites the read
    /// made after it.
    pub async fn refresh(
        &self,
        proxy: &Proxy,
        api_key: Option<&HeaderValue>,
    ) -> Result<(), String> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        let body = super::snapshot::call(proxy, Method::GET, "/aliases", api_key).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("Qdrant's alias list is not JSON: {e}"))?;
        let map = parse(&v).ok_or_else(|| format!("unexpected alias list from Qdrant: {v}"))?;
        let mut current = self.map.write().unwrap_or_else(|p| p.into_inner());
        if n > current.0 {
            *current = (n, map);
        }
        Ok(())
    }

    /// How many reads of the aliases have completed (a test waits on it).
    pub fn reads(&self) -> u64 {
        self.map.read().unwrap_or_else(|p| p.into_inner()).0
    }

    #[cfg(test)]
    fn set(&self, map: HashMap<String, String>) {
        *self.map.write().unwrap() = (1, map);
    }
}

/// `{"result":{"aliases":[{"alias_name":…,"collection_name":…}]}}` as a map.
fn parse(v: &serde_json::Value) -> Option<HashMap<String, String>> {
    v["result"]["aliases"]
        .as_array()?
        .iter()
        .map(|a| {
            Some((
                a["alias_name"].as_str()?.to_string(),
                a["collection_name"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Whether a logged request names its collection literally in Qdrant too (creating and
/// deleting a collection do not go through aliases).
pub fn literal(what: &str) -> bool {
    matches!(what, "create collection" | "delete collection")
}

/// Whether the aliases may have changed after a request of this kind, whatever its answer.
pub fn may_change(what: &str) -> bool {
    matches!(what, "aliases" | "delete collection")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdrants_alias_list_is_read() {
        let v = serde_json::json!({"result":{"aliases":[
            {"alias_name":"live","collection_name":"docs_v2"},
            {"alias_name":"old","collection_name":"docs_v1"}]},"status":"ok"});
        let m = parse(&v).unwrap();
        assert_eq!(m["live"], "docs_v2");
        assert_eq!(m.len(), 2);
        assert!(parse(&serde_json::json!({"result":{}})).is_none());
        let a = Aliases::default();
        a.set(m);
        assert_eq!(a.resolve("live"), "docs_v2");
        assert_eq!(a.resolve("docs_v1"), "docs_v1");
    }
}
