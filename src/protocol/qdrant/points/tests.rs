use super::*;

fn n(id: u64) -> PointKey {
    num_key(id)
}

fn u(s: &str) -> PointKey {
    uuid_key(s).unwrap()
}

#[test]
fn rest_writes_by_id_are_narrowed_to_their_points() {
    let r = |what, body: &str| rest(what, body.as_bytes());
    assert_eq!(
        r(
            "upsert points",
            r#"{"points":[{"id":3,"vector":[1,2]},{"id":1,"vector":[0.5,1e3]}]}"#
        ),
        Some(vec![n(1), n(3)])
    );
    assert_eq!(
        r(
            "upsert points",
            r#"{"batch":{"ids":[2,"936DA01F-9ABD-4D9D-80C7-02AF85C822A8"],"vectors":[[1],[2]]},
                "update_filter":{"must":[{"key":"v","match":{"value":1}}]}}"#
        ),
        Some(vec![n(2), u("936da01f9abd4d9d80c702af85c822a8")]),
        "columnar upsert; a conditional upsert reads only its own points"
    );
    assert_eq!(
        r("delete points", r#"{"points":[5,5,4]}"#),
        Some(vec![n(4), n(5)])
    );
    assert_eq!(
        r(
            "set payload",
            r#"{"payload":{"a":1},"points":[7],"key":"x"}"#
        ),
        Some(vec![n(7)])
    );
    assert_eq!(
        r(
            "update vectors",
            r#"{"points":[{"id":9,"vector":{"img":[1,2]}}]}"#
        ),
        Some(vec![n(9)])
    );
    assert_eq!(
        r(
            "batch update",
            r#"{"operations":[{"upsert":{"points":[{"id":1,"vector":[1]}]}},
                {"delete":{"points":[2]}},{"clear_payload":{"points":[3]}}]}"#
        ),
        Some(vec![n(1), n(2), n(3)])
    );
}

#[test]
fn rest_writes_by_filter_or_unreadable_take_the_collection() {
    for (what, body) in [
        ("delete points", r#"{"filter":{"must":[]}}"#),
        ("delete points", r#"{"points":[1],"filter":{"must":[]}}"#),
        ("set payload", r#"{"payload":{"a":1},"filter":{}}"#),
        ("set payload", r#"{"payload":{"a":1}}"#),
        ("clear payload", r#"{"filter":{}}"#),
        ("delete vectors", r#"{"filter":{},"vector":["a"]}"#),
        ("upsert points", r#"{"points":[{"id":1.5,"vector":[1]}]}"#),
        (
            "upsert points",
            r#"{"points":[{"id":"not-a-uuid","vector":[1]}]}"#,
        ),
        ("upsert points", r#"{"points":[{"vector":[1]}]}"#),
        ("upsert points", r#"{"points":[{"id":-1,"vector":[1]}]}"#),
        ("upsert points", "not json"),
        (
            "batch update",
            r#"{"operations":[{"delete":{"points":[1]}},{"delete":{"filter":{}}}]}"#,
        ),
        (
            "batch update",
            r#"{"operations":[{"delete":{"points":[1]},"upsert":{"points":[]}}]}"#,
        ),
        ("batch update", r#"{"operations":[{"future_op":{}}]}"#),
        ("create collection", r#"{"vectors":{"size":2}}"#),
        ("create field index", r#"{"field_name":"a"}"#),
    ] {
        assert_eq!(rest(what, body.as_bytes()), None, "{what} {body}");
    }
}

#[test]
fn uuids_are_one_point_in_every_spelling() {
    let forms = [
        "936da01f-9abd-4d9d-80c7-02af85c822a8",
        "936DA01F-9ABD-4D9D-80C7-02AF85C822A8",
        "936da01f9abd4d9d80c702af85c822a8",
        "{936da01f-9abd-4d9d-80c7-02af85c822a8}",
        "urn:uuid:936da01f-9abd-4d9d-80c7-02af85c822a8",
    ];
    for f in forms {
        assert_eq!(uuid_key(f), uuid_key(forms[0]), "{f}");
    }
    assert_ne!(uuid_key(forms[0]), Some(n(1)));
    for bad in ["", "936da01f", "zz6da01f9abd4d9d80c702af85c822a8", "é"] {
        assert_eq!(uuid_key(bad), None, "{bad}");
    }
}

// A minimal protobuf encoder for the gRPC cases.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn bytes_field(field: u64, b: &[u8]) -> Vec<u8> {
    let mut out = varint(field << 3 | 2);
    out.extend(varint(b.len() as u64));
    out.extend_from_slice(b);
    out
}

fn num_id(id: u64) -> Vec<u8> {
    let mut out = varint(1 << 3);
    out.extend(varint(id));
    out
}

fn uuid_id(s: &str) -> Vec<u8> {
    bytes_field(2, s.as_bytes())
}

fn ids_selector(ids: &[Vec<u8>]) -> Vec<u8> {
    let list: Vec<u8> = ids.iter().flat_map(|i| bytes_field(1, i)).collect();
    bytes_field(1, &list)
}

fn point(id: &[u8]) -> Vec<u8> {
    // PointStruct { id = 1, payload = 3 (an empty map entry), vectors = 4 }
    let mut p = bytes_field(1, id);
    p.extend(bytes_field(4, &[0x0a, 0x00]));
    p
}

fn with_collection(rest: &[Vec<u8>]) -> Vec<u8> {
    let mut m = bytes_field(1, b"docs");
    m.extend([0x10, 0x01]); // wait = true
    for r in rest {
        m.extend_from_slice(r);
    }
    m
}

#[test]
fn grpc_writes_by_id_are_narrowed_to_their_points() {
    let up = with_collection(&[
        bytes_field(3, &point(&num_id(4))),
        bytes_field(3, &point(&uuid_id("936DA01F9ABD4D9D80C702AF85C822A8"))),
    ]);
    assert_eq!(
        grpc("/qdrant.Points/Upsert", &up),
        Some(vec![n(4), u("936da01f-9abd-4d9d-80c7-02af85c822a8")])
    );
    let del = with_collection(&[bytes_field(3, &ids_selector(&[num_id(2), num_id(1)]))]);
    assert_eq!(grpc("/qdrant.Points/Delete", &del), Some(vec![n(1), n(2)]));
    let set = with_collection(&[
        bytes_field(3, &[0x0a, 0x00]),
        bytes_field(5, &ids_selector(&[num_id(8)])),
    ]);
    assert_eq!(grpc("/qdrant.Points/SetPayload", &set), Some(vec![n(8)]));
    // UpdateBatch: an upsert (1: PointStructList) and a delete (9: DeletePoints).
    let ops = [
        bytes_field(1, &bytes_field(1, &point(&num_id(5)))),
        bytes_field(9, &bytes_field(1, &ids_selector(&[num_id(6)]))),
    ];
    let batch = with_collection(&[bytes_field(3, &ops[0]), bytes_field(3, &ops[1])]);
    assert_eq!(
        grpc("/qdrant.Points/UpdateBatch", &batch),
        Some(vec![n(5), n(6)])
    );
}

#[test]
fn grpc_writes_by_filter_or_malformed_take_the_collection() {
    let filter_sel = bytes_field(2, &[]);
    let cases = [
        ("Delete", with_collection(&[bytes_field(3, &filter_sel)])),
        ("Delete", with_collection(&[])),
        ("SetPayload", with_collection(&[bytes_field(3, &[])])),
        (
            "ClearPayload",
            with_collection(&[bytes_field(3, &filter_sel)]),
        ),
        (
            "Delete",
            with_collection(&[
                bytes_field(3, &ids_selector(&[num_id(1)])),
                bytes_field(3, &filter_sel),
            ]),
        ),
        (
            "Upsert",
            with_collection(&[bytes_field(3, &bytes_field(4, &[]))]),
        ),
        ("Upsert", with_collection(&[bytes_field(3, &point(&[]))])),
        ("Upsert", with_collection(&[vec![0x1a, 0x05, 0x0a]])),
        ("Upsert", vec![0xff; 3]),
        ("CreateFieldIndex", with_collection(&[])),
        (
            "UpdateBatch",
            with_collection(&[bytes_field(
                3,
                &bytes_field(9, &bytes_field(1, &filter_sel)),
            )]),
        ),
    ];
    for (method, m) in cases {
        assert_eq!(
            grpc(&format!("/qdrant.Points/{method}"), &m),
            None,
            "{method} {m:?}"
        );
    }
}
