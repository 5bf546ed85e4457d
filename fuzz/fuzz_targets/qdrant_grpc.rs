#![no_main]
//! A gRPC call to the Qdrant proxy: the method (chosen by the first byte among Qdrant's),
//! the protobuf message (the rest), through the protobuf walker and every classifier.
use libfuzzer_sys::fuzz_target;
use vecwal::protocol::protobuf;
use vecwal::protocol::qdrant::{api, grpc, points};

fuzz_target!(|data: &[u8]| {
    let Some((&m, message)) = data.split_first() else {
        return;
    };
    let (path, _) = api::GRPC[m as usize % api::GRPC.len()];
    let _ = protobuf::walk(message, |_, _| Some(()));
    let _ = protobuf::string_field_1(message);
    let _ = api::grpc_method(path);
    let _ = api::cluster_grpc(message);
    if let Some(mutation) = grpc::classify(path, message) {
        let _ = points::grpc(mutation.what, message);
        let _ = grpc::replayable(path, &mutation.touches, message);
    }
});
