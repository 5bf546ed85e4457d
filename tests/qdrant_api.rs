//! vecwal's table of Qdrant's API (`src/protocol/qdrant/api.rs`) against Qdrant's own API
//! description: the OpenAPI document of Qdrant 1.18.3 (from the conformance suite beside the
//! project, `../shared/qdrant-tests/`) and the gRPC services of the official Python client
//! (which scripts/services.sh installs). Fails when an endpoint that may change data is
//! neither logged nor listed as deliberately rebased, refused or ignored, and when the table
//! lists an operation Qdrant does not have.
//!
//! "May change data", mechanically: REST, a method other than GET without a `consistency`
//! parameter (every read by POST takes one); gRPC, a request with a `wait` field, or a
//! `timeout` without a `read_consistency`.

use std::path::PathBuf;
use std::process::Command;

use vecwal::protocol::qdrant::api::{Disposition, GRPC, REST};

fn openapi() -> serde_json::Value {
    let tarball = std::env::var_os("QDRANT_TESTS_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/qdrant-tests/qdrant-openapi-tests-1.18.3.tar.xz")
        });
    assert!(
        tarball.exists(),
        "{} is missing: Qdrant's API tests and OpenAPI document come from ../shared/qdrant-tests \
         (or QDRANT_TESTS_TARBALL)",
        tarball.display()
    );
    let out = Command::new("tar")
        .arg("-xJOf")
        .arg(&tarball)
        .arg("docs/redoc/master/openapi.json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn may_change(d: Disposition) -> bool {
    !matches!(d, Disposition::Read | Disposition::ReadByPost(_))
}

#[test]
fn every_rest_operation_of_qdrants_openapi_is_in_the_table_and_writes_are_never_reads() {
    let doc = openapi();
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let id = op["operationId"].as_str().unwrap_or("?");
            let consistency = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["in"] == "query" && p["name"] == "consistency")
            });
            let writes = method != "GET" && !consistency;
            match REST.iter().find(|r| r.0 == method && r.1 == path) {
                None => problems.push(format!(
                    "{method} {path} ({id}) is not in the table{}",
                    if writes {
                        ", and it may change data"
                    } else {
                        ""
                    }
                )),
                Some(r) => {
                    seen.push((r.0, r.1));
                    if r.2 != id {
                        problems.push(format!(
                            "{method} {path}: operationId {id}, table says {}",
                            r.2
                        ));
                    }
                    if writes && !may_change(r.3) {
                        problems.push(format!(
                            "{method} {path} ({id}) may change data but the table calls it a read"
                        ));
                    }
                    if !writes && may_change(r.3) {
                        problems.push(format!(
                            "{method} {path} ({id}) reads (GET or consistency) but the table says {:?}",
                            r.3
                        ));
                    }
                }
            }
        }
    }
    for r in REST.iter().filter(|r| r.2 != "-") {
        if !seen.contains(&(r.0, r.1)) {
            problems.push(format!(
                "{} {} ({}) is in the table but not in Qdrant's API",
                r.0, r.1, r.2
            ));
        }
    }
    // Routes the document leaves out are marked so; a read by POST among them says why.
    for r in REST.iter().filter(|r| r.2 == "-") {
        if r.0 != "GET" && r.3 == Disposition::Read {
            problems.push(format!(
                "{} {}: an undocumented POST read needs its reason",
                r.0, r.1
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(seen.len() > 70, "only {} operations read", seen.len());
}

/// Every method of the Qdrant gRPC services the Python client knows, with the names of
/// its request's fields: `Service/Method field,field,…` lines.
fn grpc_methods() -> Vec<(String, Vec<String>)> {
    let python = std::env::var("VECWAL_PYTHON")
        .unwrap_or_else(|_| format!("{}/.services/venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let script = r#"
import importlib, pkgutil, qdrant_client.grpc as g
for m in pkgutil.iter_modules(g.__path__):
    if not m.name.endswith("_pb2"):
        continue
    mod = importlib.import_module("qdrant_client.grpc." + m.name)
    for s in mod.DESCRIPTOR.services_by_name.values():
        for meth in s.methods:
            print("/%s/%s %s" % (s.full_name, meth.name, ",".join(f.name for f in meth.input_type.fields)))
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/services.sh installs it)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (m, f) = l.split_once(' ').unwrap_or((l, ""));
            (m.to_string(), f.split(',').map(str::to_string).collect())
        })
        .collect()
}

#[test]
fn every_grpc_method_of_qdrants_services_is_in_the_table_and_writes_are_never_reads() {
    let methods = grpc_methods();
    assert!(methods.len() > 50, "only {} methods found", methods.len());
    let mut problems = Vec::new();
    for (m, fields) in &methods {
        let has = |f: &str| fields.iter().any(|x| x == f);
        let writes = has("wait") || (has("timeout") && !has("read_consistency"));
        match GRPC.iter().find(|g| g.0 == m) {
            None => problems.push(format!("{m} is not in the table (fields {fields:?})")),
            Some(g) if writes && !may_change(g.1) => {
                problems.push(format!("{m} may change data but the table calls it a read"))
            }
            // Snapshot files are made and deleted without `wait`: ignored, not data.
            Some(g) if !writes && may_change(g.1) && !matches!(g.1, Disposition::Ignored(_)) => {
                problems.push(format!(
                    "{m} reads (no wait or timeout) but the table says {:?}",
                    g.1
                ))
            }
            Some(_) => {}
        }
    }
    // Methods of services the client does not describe are read-only ones of the server's.
    for g in GRPC.iter() {
        if !methods.iter().any(|(m, _)| m == g.0) && may_change(g.1) {
            problems.push(format!(
                "{} is in the table as a write but not in Qdrant's API",
                g.0
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
