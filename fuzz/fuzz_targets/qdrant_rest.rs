#![no_main]
//! A REST request to the Qdrant proxy: the method (first byte), the path (to the first
//! newline) and the body (the rest), through every classifier the proxy runs on it.
use libfuzzer_sys::fuzz_target;
use vecwal::protocol::qdrant::{api, points, rest};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest_of)) = data.split_first() else {
        return;
    };
    let method = METHODS[m as usize % METHODS.len()];
    let (path, body) = match rest_of.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest_of[..i], &rest_of[i + 1..]),
        None => (rest_of, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let _ = api::rest_route(method, path);
    let _ = api::cluster_rest(body);
    let _ = rest::decode(path);
    if let Some(mutation) = rest::classify(method, path) {
        let _ = points::rest(mutation.what, body);
        let _ = rest::replayable(mutation.what, &mutation.touches, body);
    }
});
