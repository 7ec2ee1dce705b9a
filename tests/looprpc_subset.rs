//! Checks the compiled `looprpc` subset against the names, numbers, types and streaming shape
//! of Loop's `SwapServer` protocol, by decoding the descriptor set `build.rs` embeds. Loop's
//! client API (`proto/loopd/`, package `looprpc` too) is compiled apart, into a descriptor set
//! of its own: the last test checks the two stay apart and both compile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn looprpc_file() -> FileDescriptorProto {
    let set =
        FileDescriptorSet::decode(sluice::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let files: Vec<_> = set
        .file
        .into_iter()
        .filter(|f| f.package() == "looprpc")
        .collect();
    assert_eq!(
        files.len(),
        1,
        "exactly one looprpc file is compiled into sluice's own descriptor set"
    );
    files.into_iter().next().expect("one file")
}

fn message<'a>(file: &'a FileDescriptorProto, name: &str) -> &'a DescriptorProto {
    file.message_type
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("message {name} is missing"))
}

/// Asserts a field's number, type and (for messages and enums) type name.
fn assert_field(file: &FileDescriptorProto, msg: &str, field: &str, number: i32, ty: Type) {
    let m = message(file, msg);
    let f = m
        .field
        .iter()
        .find(|f| f.name() == field)
        .unwrap_or_else(|| panic!("{msg}.{field} is missing"));
    assert_eq!(f.number(), number, "{msg}.{field} number");
    assert_eq!(f.r#type(), ty, "{msg}.{field} type");
}

#[test]
fn service_has_the_loop_out_and_loop_in_methods_with_their_shapes() {
    let file = looprpc_file();
    assert_eq!(file.service.len(), 1);
    let svc = &file.service[0];
    assert_eq!(svc.name(), "SwapServer");

    // (method, input, output, server streaming)
    let expected = [
        (
            "LoopOutTerms",
            "ServerLoopOutTermsRequest",
            "ServerLoopOutTerms",
            false,
        ),
        (
            "NewLoopOutSwap",
            "ServerLoopOutRequest",
            "ServerLoopOutResponse",
            false,
        ),
        (
            "LoopOutPushPreimage",
            "ServerLoopOutPushPreimageRequest",
            "ServerLoopOutPushPreimageResponse",
            false,
        ),
        (
            "LoopOutQuote",
            "ServerLoopOutQuoteRequest",
            "ServerLoopOutQuote",
            false,
        ),
        (
            "SubscribeLoopOutUpdates",
            "SubscribeUpdatesRequest",
            "SubscribeLoopOutUpdatesResponse",
            true,
        ),
        (
            "CancelLoopOutSwap",
            "CancelLoopOutSwapRequest",
            "CancelLoopOutSwapResponse",
            false,
        ),
        (
            "RecommendRoutingPlugin",
            "RecommendRoutingPluginReq",
            "RecommendRoutingPluginRes",
            false,
        ),
        (
            "ReportRoutingResult",
            "ReportRoutingResultReq",
            "ReportRoutingResultRes",
            false,
        ),
        (
            "MuSig2SignSweep",
            "MuSig2SignSweepReq",
            "MuSig2SignSweepRes",
            false,
        ),
        ("FetchL402", "FetchL402Request", "FetchL402Response", false),
        (
            "LoopInTerms",
            "ServerLoopInTermsRequest",
            "ServerLoopInTerms",
            false,
        ),
        (
            "NewLoopInSwap",
            "ServerLoopInRequest",
            "ServerLoopInResponse",
            false,
        ),
        (
            "LoopInQuote",
            "ServerLoopInQuoteRequest",
            "ServerLoopInQuoteResponse",
            false,
        ),
        (
            "SubscribeLoopInUpdates",
            "SubscribeUpdatesRequest",
            "SubscribeLoopInUpdatesResponse",
            true,
        ),
        ("Probe", "ServerProbeRequest", "ServerProbeResponse", false),
        ("PushKey", "ServerPushKeyReq", "ServerPushKeyRes", false),
    ];
    assert_eq!(svc.method.len(), expected.len());
    for (name, input, output, streaming) in expected {
        let m = svc
            .method
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("method {name} is missing"));
        assert_eq!(m.input_type(), format!(".looprpc.{input}"), "{name} input");
        assert_eq!(
            m.output_type(),
            format!(".looprpc.{output}"),
            "{name} output"
        );
        assert_eq!(m.server_streaming(), streaming, "{name} server streaming");
        assert!(!m.client_streaming(), "{name} client streaming");
    }
}

#[test]
fn loop_out_request_and_quote_fields_match_loop() {
    let file = looprpc_file();
    let f = &file;
    assert_field(f, "ServerLoopOutRequest", "receiver_key", 1, Type::Bytes);
    assert_field(f, "ServerLoopOutRequest", "swap_hash", 2, Type::Bytes);
    assert_field(f, "ServerLoopOutRequest", "amt", 3, Type::Uint64);
    assert_field(
        f,
        "ServerLoopOutRequest",
        "swap_publication_deadline",
        4,
        Type::Int64,
    );
    assert_field(f, "ServerLoopOutRequest", "protocol_version", 5, Type::Enum);
    assert_field(f, "ServerLoopOutRequest", "expiry", 6, Type::Int32);
    assert_field(f, "ServerLoopOutRequest", "user_agent", 7, Type::String);
    assert_field(f, "ServerLoopOutResponse", "sender_key", 3, Type::Bytes);
    assert_field(
        f,
        "ServerLoopOutResponse",
        "server_message",
        5,
        Type::String,
    );
    assert_field(
        f,
        "ServerLoopOutQuoteRequest",
        "protocol_version",
        3,
        Type::Enum,
    );
    assert_field(
        f,
        "ServerLoopOutQuoteRequest",
        "user_agent",
        5,
        Type::String,
    );
    assert_field(
        f,
        "ServerLoopOutQuote",
        "swap_payment_dest",
        1,
        Type::String,
    );
    assert_field(f, "ServerLoopOutQuote", "prepay_amt", 4, Type::Uint64);
    assert_field(f, "ServerLoopOutTerms", "min_cltv_delta", 3, Type::Int32);
    assert_field(f, "ServerLoopOutTerms", "max_cltv_delta", 4, Type::Int32);
    assert_field(
        f,
        "ServerLoopOutPushPreimageRequest",
        "preimage",
        2,
        Type::Bytes,
    );
    assert_field(
        f,
        "SubscribeLoopOutUpdatesResponse",
        "timestamp_ns",
        1,
        Type::Int64,
    );

    let deprecated = message(f, "ServerLoopOutResponse")
        .field
        .iter()
        .find(|x| x.name() == "expiry")
        .and_then(|x| x.options.as_ref())
        .map(|o| o.deprecated());
    assert_eq!(
        deprecated,
        Some(true),
        "ServerLoopOutResponse.expiry is deprecated"
    );
}

#[test]
fn musig2_sign_sweep_keeps_field_five_reserved() {
    let file = looprpc_file();
    let f = &file;
    assert_field(f, "MuSig2SignSweepReq", "nonce", 4, Type::Bytes);
    assert_field(f, "MuSig2SignSweepReq", "sweep_tx_psbt", 6, Type::Bytes);
    assert_field(f, "MuSig2SignSweepReq", "prevout_info", 7, Type::Message);
    let req = message(f, "MuSig2SignSweepReq");
    let prevouts = req
        .field
        .iter()
        .find(|x| x.name() == "prevout_info")
        .expect("field");
    assert_eq!(prevouts.label(), Label::Repeated);
    assert_eq!(prevouts.type_name(), ".looprpc.PrevoutInfo");
    assert!(req.field.iter().all(|x| x.number() != 5));
    let reserved: Vec<(i32, i32)> = req
        .reserved_range
        .iter()
        .map(|r| (r.start(), r.end()))
        .collect();
    // Descriptor ranges are half-open: `reserved 5;` is [5, 6).
    assert_eq!(reserved, vec![(5, 6)]);

    assert_field(f, "PrevoutInfo", "value", 1, Type::Uint64);
    assert_field(f, "PrevoutInfo", "txid_bytes", 3, Type::Bytes);
    assert_field(f, "PrevoutInfo", "output_index", 4, Type::Uint32);
    assert_field(f, "MuSig2SignSweepRes", "partial_signature", 2, Type::Bytes);
}

#[test]
fn cancel_request_carries_route_cancel_in_a_oneof() {
    let file = looprpc_file();
    let f = &file;
    assert_field(
        f,
        "CancelLoopOutSwapRequest",
        "payment_address",
        3,
        Type::Bytes,
    );
    assert_field(
        f,
        "CancelLoopOutSwapRequest",
        "route_cancel",
        5,
        Type::Message,
    );
    let req = message(f, "CancelLoopOutSwapRequest");
    assert_eq!(req.oneof_decl.len(), 1);
    assert_eq!(req.oneof_decl[0].name(), "cancel_info");
    let rc = req
        .field
        .iter()
        .find(|x| x.name() == "route_cancel")
        .expect("field");
    assert_eq!(rc.oneof_index, Some(0));
    assert_field(f, "RouteCancel", "route_type", 1, Type::Enum);
    assert_field(f, "RouteCancel", "attempts", 2, Type::Message);
    assert_field(f, "RouteCancel", "failure", 3, Type::Enum);
    assert_field(f, "HtlcAttempt", "remaining_hops", 1, Type::Uint32);
    assert_field(f, "ReportRoutingResultReq", "total_time", 7, Type::Int64);
}

#[test]
fn enums_have_loops_values() {
    let file = looprpc_file();
    let values = |name: &str| -> Vec<(String, i32)> {
        file.enum_type
            .iter()
            .find(|e| e.name() == name)
            .unwrap_or_else(|| panic!("enum {name} is missing"))
            .value
            .iter()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect()
    };
    let pv = values("ProtocolVersion");
    assert_eq!(pv.len(), 12);
    assert!(pv.contains(&("HTLC_V3".to_owned(), 10)));
    assert!(pv.contains(&("MUSIG2".to_owned(), 11)));
    let st = values("ServerSwapState");
    assert_eq!(st.len(), 17);
    assert!(st.contains(&("SERVER_HTLC_CONFIRMED".to_owned(), 12)));
    assert!(st.contains(&("SERVER_FAILED_INITIALIZATION".to_owned(), 16)));
    assert_eq!(
        values("RoutingPlugin"),
        vec![("NONE".to_owned(), 0), ("LOW_HIGH".to_owned(), 1)]
    );
    assert!(
        values("PaymentFailureReason")
            .contains(&("LND_FAILURE_REASON_INSUFFICIENT_BALANCE".to_owned(), 5))
    );
    assert!(values("RoutePaymentType").contains(&("INVOICE_ROUTE".to_owned(), 2)));
}

#[test]
fn generated_types_encode_with_loops_field_numbers() {
    use sluice::provider::wire::{ProtocolVersion, ServerLoopOutRequest};
    let req = ServerLoopOutRequest {
        expiry: 1,
        protocol_version: ProtocolVersion::Musig2 as i32,
        ..Default::default()
    };
    // Field 5 varint 11, then field 6 varint 1: tags 0x28 and 0x30.
    assert_eq!(req.encode_to_vec(), vec![0x28, 11, 0x30, 1]);
}

#[test]
fn loop_in_messages_match_loop() {
    let file = looprpc_file();
    let f = &file;
    let fields: &[(&str, &str, i32, Type)] = &[
        (
            "ServerLoopInTermsRequest",
            "protocol_version",
            1,
            Type::Enum,
        ),
        ("ServerLoopInTermsRequest", "user_agent", 2, Type::String),
        ("ServerLoopInTerms", "min_swap_amount", 1, Type::Uint64),
        ("ServerLoopInTerms", "max_swap_amount", 2, Type::Uint64),
        ("ServerLoopInQuoteRequest", "amt", 1, Type::Uint64),
        (
            "ServerLoopInQuoteRequest",
            "protocol_version",
            2,
            Type::Enum,
        ),
        ("ServerLoopInQuoteRequest", "pubkey", 3, Type::Bytes),
        ("ServerLoopInQuoteRequest", "last_hop", 4, Type::Bytes),
        ("ServerLoopInQuoteRequest", "route_hints", 5, Type::Message),
        ("ServerLoopInQuoteRequest", "user_agent", 6, Type::String),
        (
            "ServerLoopInQuoteRequest",
            "num_static_address_deposits",
            7,
            Type::Uint32,
        ),
        ("ServerLoopInQuoteRequest", "fast", 8, Type::Bool),
        ("ServerLoopInQuoteResponse", "swap_fee", 1, Type::Int64),
        ("ServerLoopInQuoteResponse", "cltv_delta", 6, Type::Int32),
        ("ServerLoopInRequest", "sender_key", 1, Type::Bytes),
        ("ServerLoopInRequest", "swap_hash", 2, Type::Bytes),
        ("ServerLoopInRequest", "amt", 3, Type::Uint64),
        ("ServerLoopInRequest", "swap_invoice", 4, Type::String),
        ("ServerLoopInRequest", "last_hop", 5, Type::Bytes),
        ("ServerLoopInRequest", "protocol_version", 6, Type::Enum),
        ("ServerLoopInRequest", "probe_invoice", 7, Type::String),
        ("ServerLoopInRequest", "user_agent", 8, Type::String),
        (
            "ServerLoopInRequest",
            "sender_internal_pubkey",
            9,
            Type::Bytes,
        ),
        ("ServerLoopInResponse", "receiver_key", 1, Type::Bytes),
        ("ServerLoopInResponse", "expiry", 2, Type::Int32),
        ("ServerLoopInResponse", "server_message", 3, Type::String),
        (
            "ServerLoopInResponse",
            "receiver_internal_pubkey",
            9,
            Type::Bytes,
        ),
        (
            "SubscribeLoopInUpdatesResponse",
            "timestamp_ns",
            1,
            Type::Int64,
        ),
        ("SubscribeLoopInUpdatesResponse", "state", 2, Type::Enum),
        ("ServerProbeRequest", "protocol_version", 1, Type::Enum),
        ("ServerProbeRequest", "amt", 2, Type::Uint64),
        ("ServerProbeRequest", "target", 3, Type::Bytes),
        ("ServerProbeRequest", "last_hop", 4, Type::Bytes),
        ("ServerProbeRequest", "route_hints", 5, Type::Message),
        ("ServerPushKeyReq", "protocol_version", 1, Type::Enum),
        ("ServerPushKeyReq", "swap_hash", 2, Type::Bytes),
        ("ServerPushKeyReq", "internal_privkey", 3, Type::Bytes),
        ("HopHint", "node_id", 1, Type::String),
        ("HopHint", "chan_id", 2, Type::Uint64),
        ("HopHint", "fee_base_msat", 3, Type::Uint32),
        ("HopHint", "fee_proportional_millionths", 4, Type::Uint32),
        ("HopHint", "cltv_expiry_delta", 5, Type::Uint32),
        ("RouteHint", "hop_hints", 1, Type::Message),
    ];
    for &(msg, field, number, ty) in fields {
        assert_field(f, msg, field, number, ty);
    }
}

#[test]
fn loops_client_api_is_compiled_apart_with_the_swap_client_service() {
    let set = FileDescriptorSet::decode(sluice::proto::loopd::FILE_DESCRIPTOR_SET)
        .expect("loopd descriptor set");
    let client = set
        .file
        .iter()
        .find(|f| f.name() == "looprpc/client.proto")
        .expect("looprpc/client.proto is compiled");
    assert_eq!(client.package(), "looprpc");
    let svc = client
        .service
        .iter()
        .find(|s| s.name() == "SwapClient")
        .expect("service SwapClient");
    for (name, streaming) in [
        ("LoopOut", false),
        ("Monitor", true),
        ("ListSwaps", false),
        ("SwapInfo", false),
        ("LoopOutTerms", false),
        ("LoopOutQuote", false),
        ("GetInfo", false),
        ("SuggestSwaps", false),
        ("GetLiquidityParams", false),
    ] {
        let m = svc
            .method
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("SwapClient.{name} is missing"));
        assert_eq!(m.server_streaming(), streaming, "{name} server streaming");
    }
    // The swap server's file is not in this set: the two packages' HopHint would collide.
    assert!(set.file.iter().all(|f| f.name() != "looprpc/server.proto"));
}
