//! Every endpoint of Qdrant 1.18.3's API and what vecwal does with it: the REST operations
//! of its OpenAPI document plus the routes its server registers without documenting them,
//! and every method of the gRPC services on its public port.
//!
//! The table is checked against Qdrant's own API description by `tests/qdrant_api.rs`: a
//! request that may change data (REST: not a GET and no `consistency` parameter; gRPC: a
//! `wait` field, or a `timeout` without `read_consistency`) must be listed here as logged,
//! rebased, refused or ignored with a reason, so an endpoint that changes data can never
//! pass unlogged by omission. A request that matches no row and is not a GET is refused:
//! vecwal does not guess whether a newer Qdrant's endpoint writes.

/// What vecwal does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Changes data: forwarded, and logged once Qdrant accepted it.
    Logged(&'static str, Scope),
    /// Replaces a collection's data from a snapshot, which replaying the request could not
    /// do (the snapshot is a file on Qdrant's disk, a URL or an upload): forwarded, then an
    /// aligned snapshot of the collection is stored as its new base.
    Rebase(&'static str),
    /// Changes data in a way the log cannot keep: answered with this reason.
    Refused(&'static str),
    /// Changes nothing a restore needs: forwarded, not logged.
    Ignored(&'static str),
    /// Reads: a GET, or a POST with a `consistency` parameter.
    Read,
    /// A POST that reads, without a `consistency` parameter: why it is a read.
    ReadByPost(&'static str),
    /// A cluster-setup request: shard-key changes are logged, point replication between
    /// shard keys is refused, shard moves and replicas are ignored ([`cluster_rest`],
    /// [`cluster_grpc`]).
    Cluster,
}

/// What a logged request touches, for ordering conflicting writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Points named by id in the body, or the collection when the body selects by filter.
    Points,
    Collection,
    /// Alias changes name collections in the body: ordered against everything.
    Aliases,
}

use Disposition::*;
use Scope::*;

/// A REST route: method, path template (`{name}` for a path parameter), and the OpenAPI
/// operationId (`-` for a route the document leaves out).
pub type Rest = (&'static str, &'static str, &'static str, Disposition);

const FILE: &str = "writes or deletes a snapshot file; no collection data changes";
const LOCAL_SHARD: &str = "reads one local shard";

#[rustfmt::skip]
pub const REST: &[Rest] = &[
    ("GET", "/", "root", Read),
    ("GET", "/telemetry", "telemetry", Read),
    ("GET", "/metrics", "metrics", Read),
    ("GET", "/healthz", "healthz", Read),
    ("GET", "/livez", "livez", Read),
    ("GET", "/readyz", "readyz", Read),
    ("GET", "/issues", "get_issues", Read),
    ("DELETE", "/issues", "clear_issues", Ignored("clears Qdrant's in-memory list of issue reports")),
    ("GET", "/cluster", "cluster_status", Read),
    ("GET", "/cluster/telemetry", "cluster_telemetry", Read),
    ("POST", "/cluster/recover", "recover_current_peer", Ignored("cluster consensus state; no collection data")),
    ("DELETE", "/cluster/peer/{peer_id}", "remove_peer", Ignored("cluster topology")),
    ("GET", "/collections", "get_collections", Read),
    ("GET", "/collections/{collection_name}", "get_collection", Read),
    ("PUT", "/collections/{collection_name}", "create_collection", Logged("create collection", Collection)),
    ("PATCH", "/collections/{collection_name}", "update_collection", Logged("update collection", Collection)),
    ("DELETE", "/collections/{collection_name}", "delete_collection", Logged("delete collection", Collection)),
    ("POST", "/collections/aliases", "update_aliases", Logged("aliases", Aliases)),
    ("PUT", "/collections/{collection_name}/index", "create_field_index", Logged("create field index", Collection)),
    ("GET", "/collections/{collection_name}/exists", "collection_exists", Read),
    ("DELETE", "/collections/{collection_name}/index/{field_name}", "delete_field_index", Logged("delete field index", Collection)),
    ("PUT", "/collections/{collection_name}/vectors/{vector_name}", "create_vector_name", Logged("create named vector", Collection)),
    ("DELETE", "/collections/{collection_name}/vectors/{vector_name}", "delete_vector_name", Logged("delete named vector", Collection)),
    ("GET", "/collections/{collection_name}/cluster", "collection_cluster_info", Read),
    ("POST", "/collections/{collection_name}/cluster", "update_collection_cluster", Cluster),
    ("GET", "/collections/{collection_name}/optimizations", "get_optimizations", Read),
    ("GET", "/collections/{collection_name}/aliases", "get_collection_aliases", Read),
    ("GET", "/aliases", "get_collections_aliases", Read),
    ("PUT", "/collections/{collection_name}/shards", "create_shard_key", Logged("create shard key", Collection)),
    ("GET", "/collections/{collection_name}/shards", "list_shard_keys", Read),
    ("POST", "/collections/{collection_name}/shards/delete", "delete_shard_key", Logged("delete shard key", Collection)),
    ("POST", "/collections/{collection_name}/snapshots/upload", "recover_from_uploaded_snapshot", Rebase("recover from an uploaded snapshot")),
    ("PUT", "/collections/{collection_name}/snapshots/recover", "recover_from_snapshot", Rebase("recover from a snapshot")),
    ("GET", "/collections/{collection_name}/snapshots", "list_snapshots", Read),
    ("POST", "/collections/{collection_name}/snapshots", "create_snapshot", Ignored(FILE)),
    ("DELETE", "/collections/{collection_name}/snapshots/{snapshot_name}", "delete_snapshot", Ignored(FILE)),
    ("GET", "/collections/{collection_name}/snapshots/{snapshot_name}", "get_snapshot", Read),
    ("GET", "/snapshots", "list_full_snapshots", Read),
    ("POST", "/snapshots", "create_full_snapshot", Ignored(FILE)),
    ("DELETE", "/snapshots/{snapshot_name}", "delete_full_snapshot", Ignored(FILE)),
    ("GET", "/snapshots/{snapshot_name}", "get_full_snapshot", Read),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/snapshot", "stream_shard_snapshot", Read),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/snapshots/upload", "recover_shard_from_uploaded_snapshot", Rebase("recover a shard from an uploaded snapshot")),
    ("PUT", "/collections/{collection_name}/shards/{shard_id}/snapshots/recover", "recover_shard_from_snapshot", Rebase("recover a shard from a snapshot")),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/snapshots", "list_shard_snapshots", Read),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/snapshots", "create_shard_snapshot", Ignored(FILE)),
    ("DELETE", "/collections/{collection_name}/shards/{shard_id}/snapshots/{snapshot_name}", "delete_shard_snapshot", Ignored(FILE)),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/snapshots/{snapshot_name}", "get_shard_snapshot", Read),
    ("GET", "/collections/{collection_name}/points/{id}", "get_point", Read),
    ("POST", "/collections/{collection_name}/points", "get_points", Read),
    ("PUT", "/collections/{collection_name}/points", "upsert_points", Logged("upsert points", Points)),
    ("POST", "/collections/{collection_name}/points/delete", "delete_points", Logged("delete points", Points)),
    ("PUT", "/collections/{collection_name}/points/vectors", "update_vectors", Logged("update vectors", Points)),
    ("POST", "/collections/{collection_name}/points/vectors/delete", "delete_vectors", Logged("delete vectors", Points)),
    ("POST", "/collections/{collection_name}/points/payload", "set_payload", Logged("set payload", Points)),
    ("PUT", "/collections/{collection_name}/points/payload", "overwrite_payload", Logged("overwrite payload", Points)),
    ("POST", "/collections/{collection_name}/points/payload/delete", "delete_payload", Logged("delete payload", Points)),
    ("POST", "/collections/{collection_name}/points/payload/clear", "clear_payload", Logged("clear payload", Points)),
    ("POST", "/collections/{collection_name}/points/batch", "batch_update", Logged("batch update", Points)),
    ("POST", "/collections/{collection_name}/points/scroll", "scroll_points", Read),
    ("POST", "/collections/{collection_name}/points/search", "search_points", Read),
    ("POST", "/collections/{collection_name}/points/search/batch", "search_batch_points", Read),
    ("POST", "/collections/{collection_name}/points/search/groups", "search_point_groups", Read),
    ("POST", "/collections/{collection_name}/points/recommend", "recommend_points", Read),
    ("POST", "/collections/{collection_name}/points/recommend/batch", "recommend_batch_points", Read),
    ("POST", "/collections/{collection_name}/points/recommend/groups", "recommend_point_groups", Read),
    ("POST", "/collections/{collection_name}/points/discover", "discover_points", Read),
    ("POST", "/collections/{collection_name}/points/discover/batch", "discover_batch_points", Read),
    ("POST", "/collections/{collection_name}/points/count", "count_points", Read),
    ("POST", "/collections/{collection_name}/facet", "facet", Read),
    ("POST", "/collections/{collection_name}/points/query", "query_points", Read),
    ("POST", "/collections/{collection_name}/points/query/batch", "query_batch_points", Read),
    ("POST", "/collections/{collection_name}/points/query/groups", "query_points_groups", Read),
    ("POST", "/collections/{collection_name}/points/search/matrix/pairs", "search_matrix_pairs", Read),
    ("POST", "/collections/{collection_name}/points/search/matrix/offsets", "search_matrix_offsets", Read),
    // Routes Qdrant's server registers that its OpenAPI document leaves out.
    ("POST", "/audit/logs", "-", ReadByPost("reads the audit log")),
    ("GET", "/cluster/metadata/keys", "-", Read),
    ("GET", "/cluster/metadata/keys/{key}", "-", Read),
    ("PUT", "/cluster/metadata/keys/{key}", "-", Ignored("cluster metadata, not collection data")),
    ("DELETE", "/cluster/metadata/keys/{key}", "-", Ignored("cluster metadata, not collection data")),
    ("POST", "/collections/{collection_name}/debug", "-", Refused("a test-only operation of Qdrant's staging builds")),
    ("GET", "/collections/{collection_name}/memory", "-", Read),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/cleanup", "-", Ignored("drops points a shard no longer owns after resharding; cluster maintenance")),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/points", "-", ReadByPost(LOCAL_SHARD)),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/points/count", "-", ReadByPost(LOCAL_SHARD)),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/points/scroll", "-", ReadByPost(LOCAL_SHARD)),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/recovery_point", "-", Read),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/snapshot/partial/create", "-", ReadByPost("streams a partial snapshot")),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/snapshot/partial/manifest", "-", Read),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/snapshot/partial/recover", "-", Rebase("recover a shard from a partial snapshot")),
    ("POST", "/collections/{collection_name}/shards/{shard_id}/snapshot/partial/recover_from", "-", Refused("pulls a partial snapshot from another peer")),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/wal", "-", Read),
    ("POST", "/collections/{collection_name}/truncate_unapplied_wal", "-", Refused("drops writes Qdrant acknowledged but had not applied, which vecwal has logged and a restore would apply")),
    ("GET", "/debugger", "-", Read),
    ("PATCH", "/debugger", "-", Ignored("debugger settings")),
    ("GET", "/logger", "-", Read),
    ("POST", "/logger", "-", Ignored("log level")),
    ("GET", "/profiler/slow_requests", "-", Read),
    ("GET", "/stacktrace", "-", Read),
];

/// A gRPC method (`/package.Service/Method`) and what vecwal does with it.
pub type Grpc = (&'static str, Disposition);

const SNAPSHOT_FILE: Disposition = Ignored(FILE);

#[rustfmt::skip]
pub const GRPC: &[Grpc] = &[
    ("/qdrant.Collections/Get", Read),
    ("/qdrant.Collections/List", Read),
    ("/qdrant.Collections/Create", Logged("create collection", Collection)),
    ("/qdrant.Collections/Update", Logged("update collection", Collection)),
    ("/qdrant.Collections/Delete", Logged("delete collection", Collection)),
    ("/qdrant.Collections/UpdateAliases", Logged("aliases", Aliases)),
    ("/qdrant.Collections/ListCollectionAliases", Read),
    ("/qdrant.Collections/ListAliases", Read),
    ("/qdrant.Collections/CollectionClusterInfo", Read),
    ("/qdrant.Collections/CollectionExists", Read),
    ("/qdrant.Collections/UpdateCollectionClusterSetup", Cluster),
    ("/qdrant.Collections/CreateShardKey", Logged("create shard key", Collection)),
    ("/qdrant.Collections/DeleteShardKey", Logged("delete shard key", Collection)),
    ("/qdrant.Collections/ListShardKeys", Read),
    ("/qdrant.Points/Upsert", Logged("upsert points", Points)),
    ("/qdrant.Points/Delete", Logged("delete points", Points)),
    ("/qdrant.Points/Get", Read),
    ("/qdrant.Points/UpdateVectors", Logged("update vectors", Points)),
    ("/qdrant.Points/DeleteVectors", Logged("delete vectors", Points)),
    ("/qdrant.Points/SetPayload", Logged("set payload", Points)),
    ("/qdrant.Points/OverwritePayload", Logged("overwrite payload", Points)),
    ("/qdrant.Points/DeletePayload", Logged("delete payload", Points)),
    ("/qdrant.Points/ClearPayload", Logged("clear payload", Points)),
    ("/qdrant.Points/CreateFieldIndex", Logged("create field index", Collection)),
    ("/qdrant.Points/DeleteFieldIndex", Logged("delete field index", Collection)),
    ("/qdrant.Points/CreateVectorName", Logged("create named vector", Collection)),
    ("/qdrant.Points/DeleteVectorName", Logged("delete named vector", Collection)),
    ("/qdrant.Points/UpdateBatch", Logged("batch update", Points)),
    ("/qdrant.Points/Search", Read),
    ("/qdrant.Points/SearchBatch", Read),
    ("/qdrant.Points/SearchGroups", Read),
    ("/qdrant.Points/Scroll", Read),
    ("/qdrant.Points/Recommend", Read),
    ("/qdrant.Points/RecommendBatch", Read),
    ("/qdrant.Points/RecommendGroups", Read),
    ("/qdrant.Points/Discover", Read),
    ("/qdrant.Points/DiscoverBatch", Read),
    ("/qdrant.Points/Count", Read),
    ("/qdrant.Points/Query", Read),
    ("/qdrant.Points/QueryBatch", Read),
    ("/qdrant.Points/QueryGroups", Read),
    ("/qdrant.Points/Facet", Read),
    ("/qdrant.Points/SearchMatrixPairs", Read),
    ("/qdrant.Points/SearchMatrixOffsets", Read),
    ("/qdrant.Snapshots/Create", SNAPSHOT_FILE),
    ("/qdrant.Snapshots/List", Read),
    ("/qdrant.Snapshots/Delete", SNAPSHOT_FILE),
    ("/qdrant.Snapshots/CreateFull", SNAPSHOT_FILE),
    ("/qdrant.Snapshots/ListFull", Read),
    ("/qdrant.Snapshots/DeleteFull", SNAPSHOT_FILE),
    ("/qdrant.Qdrant/HealthCheck", Read),
    ("/grpc.health.v1.Health/Check", Read),
    ("/qdrant.StorageRead/ListFiles", Read),
    ("/qdrant.StorageRead/FileExists", Read),
    ("/qdrant.StorageRead/FileLength", Read),
    ("/qdrant.StorageRead/ReadBytes", Read),
    ("/qdrant.StorageRead/ReadBytesStream", Read),
    ("/qdrant.StorageRead/ReadWhole", Read),
    ("/qdrant.StorageRead/ReadBatch", Read),
    ("/qdrant.StorageRead/ReadMulti", Read),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Read),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Read),
];

/// A REST request matched to its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestMatch {
    pub route: &'static Rest,
    /// The `{collection_name}` of the path, percent-decoded.
    pub collection: Option<String>,
}

/// The route `method path` takes in Qdrant, if any. The path is read as Qdrant's router
/// reads it: empty segments (`//`, a trailing `/`) dropped, percent-escapes decoded, so
/// `/collections/c//%70oints` is the upsert route it is to Qdrant. Of two routes that match,
/// the one with more fixed segments wins (`/collections/aliases` over a collection named
/// `aliases`).
pub fn rest_route(method: &str, path: &str) -> Option<RestMatch> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::rest::decode)
        .collect();
    let mut best: Option<(usize, RestMatch)> = None;
    for route in REST.iter().filter(|r| r.0.eq_ignore_ascii_case(method)) {
        let tmpl: Vec<&str> = route.1.split('/').filter(|s| !s.is_empty()).collect();
        if tmpl.len() != segs.len() {
            continue;
        }
        let mut fixed = 0;
        let mut collection = None;
        let fits = tmpl.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') {
                if *t == "{collection_name}" {
                    collection = Some(s.clone());
                }
                true
            } else {
                fixed += 1;
                t == s
            }
        });
        if fits && best.as_ref().is_none_or(|(f, _)| fixed > *f) {
            best = Some((fixed, RestMatch { route, collection }));
        }
    }
    best.map(|(_, m)| m)
}

/// The disposition of the gRPC method `path`; `None` when it is not one of Qdrant 1.18.3's.
pub fn grpc_method(path: &str) -> Option<Disposition> {
    GRPC.iter().find(|g| g.0 == path).map(|g| g.1)
}

const SHARD_KEY: Disposition = Logged("shard key change", Collection);
const REPLICATE_POINTS: Disposition =
    Refused("replicating points between shard keys runs in the background and cannot be replayed");
const TOPOLOGY: Disposition = Ignored("shard placement and replicas, not collection data");

/// What a `POST /collections/{c}/cluster` body asks for.
pub fn cluster_rest(body: &[u8]) -> Disposition {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Qdrant refuses what it cannot read; nothing changes.
        Err(_) => return TOPOLOGY,
    };
    let Some(op) = v.as_object() else {
        return TOPOLOGY;
    };
    if op.contains_key("create_sharding_key") || op.contains_key("drop_sharding_key") {
        SHARD_KEY
    } else if op.contains_key("replicate_points") {
        REPLICATE_POINTS
    } else {
        TOPOLOGY
    }
}

/// What an `UpdateCollectionClusterSetup` message asks for (the oneof's field number:
/// 7 create shard key, 8 delete shard key, 10 replicate points; the others move shards).
pub fn cluster_grpc(message: &[u8]) -> Disposition {
    let mut d = TOPOLOGY;
    let _ = crate::protocol::protobuf::walk(message, |field, _| {
        match field {
            7 | 8 => d = SHARD_KEY,
            10 => d = REPLICATE_POINTS,
            _ => {}
        }
        Some(())
    });
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disposition(m: &str, p: &str) -> Option<Disposition> {
        rest_route(m, p).map(|r| r.route.3)
    }

    #[test]
    fn paths_are_read_as_qdrants_router_reads_them() {
        let upsert = Some(Logged("upsert points", Points));
        assert_eq!(disposition("PUT", "/collections/docs/points"), upsert);
        assert_eq!(disposition("PUT", "/collections/docs//points/"), upsert);
        assert_eq!(disposition("PUT", "/collections/docs/%70oints"), upsert);
        let m = rest_route("PUT", "/collections/my%20docs/points").unwrap();
        assert_eq!(m.collection.as_deref(), Some("my docs"));
        assert_eq!(
            disposition("POST", "/collections/aliases"),
            Some(Logged("aliases", Aliases))
        );
        assert_eq!(
            rest_route("PUT", "/collections/aliases")
                .unwrap()
                .collection
                .as_deref(),
            Some("aliases"),
            "a collection may be named aliases"
        );
        assert_eq!(
            disposition("POST", "/collections/docs/points/search"),
            Some(Read)
        );
        assert_eq!(disposition("PUT", "/collections/docs/points/unknown"), None);
        assert!(matches!(
            disposition("PUT", "/collections/docs/snapshots/recover"),
            Some(Rebase(_))
        ));
        assert!(matches!(
            disposition("POST", "/collections/docs/truncate_unapplied_wal"),
            Some(Refused(_))
        ));
    }

    #[test]
    fn cluster_requests_are_decided_by_their_body() {
        assert_eq!(
            cluster_rest(br#"{"create_sharding_key":{"shard_key":"a"}}"#),
            SHARD_KEY
        );
        assert_eq!(
            cluster_rest(br#"{"replicate_points":{}}"#),
            REPLICATE_POINTS
        );
        assert_eq!(cluster_rest(br#"{"move_shard":{}}"#), TOPOLOGY);
        assert_eq!(cluster_rest(b"not json"), TOPOLOGY);
        // field 7 (create shard key), an empty message
        assert_eq!(cluster_grpc(&[0x3a, 0x00]), SHARD_KEY);
        assert_eq!(cluster_grpc(&[0x52, 0x00]), REPLICATE_POINTS);
        assert_eq!(cluster_grpc(&[0x12, 0x00]), TOPOLOGY);
    }

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in REST.iter().enumerate() {
            for b in &REST[i + 1..] {
                assert!(!(a.0 == b.0 && a.1 == b.1), "{} {} twice", a.0, a.1);
            }
        }
        for (i, a) in GRPC.iter().enumerate() {
            assert!(GRPC[i + 1..].iter().all(|b| b.0 != a.0), "{} twice", a.0);
        }
    }
}
