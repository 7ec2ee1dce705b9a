//! The lnd RPC subset in `proto/lnd/` declares every service and method sluice relies on,
//! with lnd's package names, request and response types and streaming shapes. A drift here
//! would make the daemon call a method a real lnd does not serve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorProto, FileDescriptorSet, ServiceDescriptorProto,
    field_descriptor_proto::{Label, Type},
};

/// (package, service, method, request type, response type, server-streaming).
const METHODS: &[(&str, &str, &str, &str, &str, bool)] = &[
    (
        "lnrpc",
        "Lightning",
        "GetInfo",
        ".lnrpc.GetInfoRequest",
        ".lnrpc.GetInfoResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "ListChannels",
        ".lnrpc.ListChannelsRequest",
        ".lnrpc.ListChannelsResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "SubscribeChannelEvents",
        ".lnrpc.ChannelEventSubscription",
        ".lnrpc.ChannelEventUpdate",
        true,
    ),
    (
        "lnrpc",
        "Lightning",
        "WalletBalance",
        ".lnrpc.WalletBalanceRequest",
        ".lnrpc.WalletBalanceResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "ListPeers",
        ".lnrpc.ListPeersRequest",
        ".lnrpc.ListPeersResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "GetNodeInfo",
        ".lnrpc.NodeInfoRequest",
        ".lnrpc.NodeInfo",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "GetChanInfo",
        ".lnrpc.ChanInfoRequest",
        ".lnrpc.ChannelEdge",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "DecodePayReq",
        ".lnrpc.PayReqString",
        ".lnrpc.PayReq",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "ForwardingHistory",
        ".lnrpc.ForwardingHistoryRequest",
        ".lnrpc.ForwardingHistoryResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "AddInvoice",
        ".lnrpc.Invoice",
        ".lnrpc.AddInvoiceResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "EstimateFee",
        ".lnrpc.EstimateFeeRequest",
        ".lnrpc.EstimateFeeResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "ListPayments",
        ".lnrpc.ListPaymentsRequest",
        ".lnrpc.ListPaymentsResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "ListInvoices",
        ".lnrpc.ListInvoiceRequest",
        ".lnrpc.ListInvoiceResponse",
        false,
    ),
    (
        "lnrpc",
        "Lightning",
        "QueryRoutes",
        ".lnrpc.QueryRoutesRequest",
        ".lnrpc.QueryRoutesResponse",
        false,
    ),
    (
        "routerrpc",
        "Router",
        "SendToRouteV2",
        ".routerrpc.SendToRouteRequest",
        ".lnrpc.HTLCAttempt",
        false,
    ),
    (
        "routerrpc",
        "Router",
        "SendPaymentV2",
        ".routerrpc.SendPaymentRequest",
        ".lnrpc.Payment",
        true,
    ),
    (
        "routerrpc",
        "Router",
        "TrackPaymentV2",
        ".routerrpc.TrackPaymentRequest",
        ".lnrpc.Payment",
        true,
    ),
    (
        "walletrpc",
        "WalletKit",
        "DeriveNextKey",
        ".walletrpc.KeyReq",
        ".signrpc.KeyDescriptor",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "DeriveKey",
        ".signrpc.KeyLocator",
        ".signrpc.KeyDescriptor",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "NextAddr",
        ".walletrpc.AddrRequest",
        ".walletrpc.AddrResponse",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "EstimateFee",
        ".walletrpc.EstimateFeeRequest",
        ".walletrpc.EstimateFeeResponse",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "PublishTransaction",
        ".walletrpc.Transaction",
        ".walletrpc.PublishResponse",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "SendOutputs",
        ".walletrpc.SendOutputsRequest",
        ".walletrpc.SendOutputsResponse",
        false,
    ),
    (
        "walletrpc",
        "WalletKit",
        "ListUnspent",
        ".walletrpc.ListUnspentRequest",
        ".walletrpc.ListUnspentResponse",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "SignOutputRaw",
        ".signrpc.SignReq",
        ".signrpc.SignResp",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "MuSig2CreateSession",
        ".signrpc.MuSig2SessionRequest",
        ".signrpc.MuSig2SessionResponse",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "MuSig2RegisterNonces",
        ".signrpc.MuSig2RegisterNoncesRequest",
        ".signrpc.MuSig2RegisterNoncesResponse",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "MuSig2Sign",
        ".signrpc.MuSig2SignRequest",
        ".signrpc.MuSig2SignResponse",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "MuSig2CombineSig",
        ".signrpc.MuSig2CombineSigRequest",
        ".signrpc.MuSig2CombineSigResponse",
        false,
    ),
    (
        "signrpc",
        "Signer",
        "MuSig2Cleanup",
        ".signrpc.MuSig2CleanupRequest",
        ".signrpc.MuSig2CleanupResponse",
        false,
    ),
    (
        "chainrpc",
        "ChainNotifier",
        "RegisterConfirmationsNtfn",
        ".chainrpc.ConfRequest",
        ".chainrpc.ConfEvent",
        true,
    ),
    (
        "chainrpc",
        "ChainNotifier",
        "RegisterSpendNtfn",
        ".chainrpc.SpendRequest",
        ".chainrpc.SpendEvent",
        true,
    ),
    (
        "chainrpc",
        "ChainNotifier",
        "RegisterBlockEpochNtfn",
        ".chainrpc.BlockEpoch",
        ".chainrpc.BlockEpoch",
        true,
    ),
    (
        "invoicesrpc",
        "Invoices",
        "AddHoldInvoice",
        ".invoicesrpc.AddHoldInvoiceRequest",
        ".invoicesrpc.AddHoldInvoiceResp",
        false,
    ),
    (
        "invoicesrpc",
        "Invoices",
        "SettleInvoice",
        ".invoicesrpc.SettleInvoiceMsg",
        ".invoicesrpc.SettleInvoiceResp",
        false,
    ),
    (
        "invoicesrpc",
        "Invoices",
        "CancelInvoice",
        ".invoicesrpc.CancelInvoiceMsg",
        ".invoicesrpc.CancelInvoiceResp",
        false,
    ),
    (
        "invoicesrpc",
        "Invoices",
        "SubscribeSingleInvoice",
        ".invoicesrpc.SubscribeSingleInvoiceRequest",
        ".lnrpc.Invoice",
        true,
    ),
    (
        "verrpc",
        "Versioner",
        "GetVersion",
        ".verrpc.VersionRequest",
        ".verrpc.Version",
        false,
    ),
];

/// (fully qualified message, field, number, type, repeated): fields sluice reads or writes
/// whose number or type a careless edit could move.
const FIELDS: &[(&str, &str, i32, Type, bool)] = &[
    (".lnrpc.ChanInfoRequest", "chan_id", 1, Type::Uint64, false),
    (".lnrpc.ChannelEdge", "node1_pub", 4, Type::String, false),
    (
        ".lnrpc.ChannelEdge",
        "node2_policy",
        8,
        Type::Message,
        false,
    ),
    (
        ".lnrpc.RoutingPolicy",
        "fee_rate_milli_msat",
        4,
        Type::Int64,
        false,
    ),
    (
        ".lnrpc.HopHint",
        "cltv_expiry_delta",
        5,
        Type::Uint32,
        false,
    ),
    (".lnrpc.Invoice", "route_hints", 14, Type::Message, true),
    (
        ".routerrpc.SendPaymentRequest",
        "last_hop_pubkey",
        14,
        Type::Bytes,
        false,
    ),
    (
        ".lnrpc.GetInfoResponse",
        "identity_pubkey",
        1,
        Type::String,
        false,
    ),
    (
        ".lnrpc.GetInfoResponse",
        "block_height",
        6,
        Type::Uint32,
        false,
    ),
    (
        ".lnrpc.GetInfoResponse",
        "synced_to_chain",
        9,
        Type::Bool,
        false,
    ),
    (".lnrpc.GetInfoResponse", "version", 14, Type::String, false),
    (".lnrpc.GetInfoResponse", "chains", 16, Type::Message, true),
    (
        ".lnrpc.ListChannelsResponse",
        "channels",
        11,
        Type::Message,
        true,
    ),
    (".lnrpc.Channel", "chan_id", 4, Type::Uint64, false),
    (".lnrpc.Channel", "local_balance", 6, Type::Int64, false),
    (".lnrpc.Channel", "remote_balance", 7, Type::Int64, false),
    (".lnrpc.Channel", "commitment_type", 26, Type::Enum, false),
    (
        ".lnrpc.Channel",
        "local_constraints",
        29,
        Type::Message,
        false,
    ),
    (".lnrpc.Channel", "peer_alias", 34, Type::String, false),
    (".lnrpc.ChannelEventUpdate", "type", 5, Type::Enum, false),
    (
        ".lnrpc.ChannelEventUpdate",
        "updated_channel",
        9,
        Type::Message,
        false,
    ),
    (".lnrpc.PayReq", "num_msat", 12, Type::Int64, false),
    (
        ".lnrpc.ForwardingEvent",
        "timestamp_ns",
        11,
        Type::Uint64,
        false,
    ),
    (
        ".lnrpc.ForwardingEvent",
        "incoming_htlc_id",
        14,
        Type::Uint64,
        false,
    ),
    (".lnrpc.Payment", "status", 10, Type::Enum, false),
    (".lnrpc.Payment", "failure_reason", 16, Type::Enum, false),
    (".lnrpc.Payment", "htlcs", 14, Type::Message, true),
    (".lnrpc.HTLCAttempt", "attempt_id", 7, Type::Uint64, false),
    (".lnrpc.MPPRecord", "payment_addr", 11, Type::Bytes, false),
    (".lnrpc.Invoice", "state", 21, Type::Enum, false),
    (".lnrpc.Invoice", "value_msat", 23, Type::Int64, false),
    (
        ".routerrpc.SendPaymentRequest",
        "payment_request",
        5,
        Type::String,
        false,
    ),
    (
        ".routerrpc.SendPaymentRequest",
        "timeout_seconds",
        6,
        Type::Int32,
        false,
    ),
    (
        ".routerrpc.SendPaymentRequest",
        "cltv_limit",
        9,
        Type::Int32,
        false,
    ),
    (
        ".routerrpc.SendPaymentRequest",
        "fee_limit_msat",
        13,
        Type::Int64,
        false,
    ),
    (
        ".routerrpc.SendPaymentRequest",
        "max_parts",
        17,
        Type::Uint32,
        false,
    ),
    (
        ".routerrpc.SendPaymentRequest",
        "outgoing_chan_ids",
        19,
        Type::Uint64,
        true,
    ),
    (
        ".signrpc.SignDescriptor",
        "tap_tweak",
        10,
        Type::Bytes,
        false,
    ),
    (
        ".signrpc.SignDescriptor",
        "sign_method",
        9,
        Type::Enum,
        false,
    ),
    (".signrpc.SignReq", "prev_outputs", 3, Type::Message, true),
    (
        ".signrpc.MuSig2RegisterNoncesRequest",
        "other_signer_public_nonces",
        3,
        Type::Bytes,
        true,
    ),
    (
        ".walletrpc.EstimateFeeResponse",
        "sat_per_kw",
        1,
        Type::Int64,
        false,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "sat_per_kw",
        1,
        Type::Int64,
        false,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "outputs",
        2,
        Type::Message,
        true,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "label",
        3,
        Type::String,
        false,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "min_confs",
        4,
        Type::Int32,
        false,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "spend_unconfirmed",
        5,
        Type::Bool,
        false,
    ),
    (
        ".walletrpc.SendOutputsRequest",
        "coin_selection_strategy",
        6,
        Type::Enum,
        false,
    ),
    (
        ".walletrpc.SendOutputsResponse",
        "raw_tx",
        1,
        Type::Bytes,
        false,
    ),
    (
        ".chainrpc.ConfRequest",
        "height_hint",
        4,
        Type::Uint32,
        false,
    ),
    (
        ".invoicesrpc.AddHoldInvoiceRequest",
        "value_msat",
        10,
        Type::Int64,
        false,
    ),
    (
        ".invoicesrpc.SubscribeSingleInvoiceRequest",
        "r_hash",
        2,
        Type::Bytes,
        false,
    ),
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(sluice::proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

fn lnd_files(set: &FileDescriptorSet) -> Vec<&FileDescriptorProto> {
    set.file
        .iter()
        .filter(|f| f.name().starts_with("lnd/"))
        .collect()
}

fn service<'a>(
    set: &'a FileDescriptorSet,
    package: &str,
    name: &str,
) -> &'a ServiceDescriptorProto {
    let mut found = set
        .file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == name);
    let svc = found
        .next()
        .unwrap_or_else(|| panic!("service {package}.{name} is missing from proto/lnd"));
    assert!(
        found.next().is_none(),
        "service {package}.{name} is declared twice"
    );
    svc
}

fn find_message<'a>(
    msgs: &'a [DescriptorProto],
    prefix: &str,
    want: &str,
) -> Option<&'a DescriptorProto> {
    for m in msgs {
        let full = format!("{prefix}.{}", m.name());
        if full == want {
            return Some(m);
        }
        if want.starts_with(&format!("{full}."))
            && let Some(found) = find_message(&m.nested_type, &full, want)
        {
            return Some(found);
        }
    }
    None
}

fn message<'a>(set: &'a FileDescriptorSet, full_name: &str) -> &'a DescriptorProto {
    set.file
        .iter()
        .find_map(|f| find_message(&f.message_type, &format!(".{}", f.package()), full_name))
        .unwrap_or_else(|| panic!("message {full_name} is missing"))
}

#[test]
fn every_listed_method_exists_with_lnds_types_and_streaming_shape() {
    let set = descriptor_set();
    for &(package, svc_name, method, input, output, server_streaming) in METHODS {
        let svc = service(&set, package, svc_name);
        let m = svc
            .method
            .iter()
            .find(|m| m.name() == method)
            .unwrap_or_else(|| panic!("{package}.{svc_name}/{method} is missing"));
        assert_eq!(
            m.input_type(),
            input,
            "{package}.{svc_name}/{method} request type"
        );
        assert_eq!(
            m.output_type(),
            output,
            "{package}.{svc_name}/{method} response type"
        );
        assert!(
            !m.client_streaming(),
            "{package}.{svc_name}/{method} must not be client-streaming"
        );
        assert_eq!(
            m.server_streaming(),
            server_streaming,
            "{package}.{svc_name}/{method} server-streaming"
        );
    }
}

#[test]
fn the_lnd_services_declare_nothing_beyond_the_listed_methods() {
    // Every method in proto/lnd is one sluice uses: a stray one would be untested surface.
    let set = descriptor_set();
    let files = lnd_files(&set);
    assert_eq!(files.len(), 7, "proto/lnd has one file per lnd package");
    let mut declared = 0;
    for f in files {
        for svc in &f.service {
            for m in &svc.method {
                declared += 1;
                assert!(
                    METHODS
                        .iter()
                        .any(|&(p, s, n, ..)| p == f.package() && s == svc.name() && n == m.name()),
                    "{}.{}/{} is declared but not listed",
                    f.package(),
                    svc.name(),
                    m.name()
                );
            }
        }
    }
    assert_eq!(declared, METHODS.len());
}

#[test]
fn key_fields_carry_lnds_numbers_and_types() {
    let set = descriptor_set();
    for &(msg, field, number, ty, repeated) in FIELDS {
        let m = message(&set, msg);
        let f = m
            .field
            .iter()
            .find(|f| f.name() == field)
            .unwrap_or_else(|| panic!("{msg}.{field} is missing"));
        assert_eq!(f.number(), number, "{msg}.{field} number");
        assert_eq!(f.r#type(), ty, "{msg}.{field} type");
        assert_eq!(
            f.label() == Label::Repeated,
            repeated,
            "{msg}.{field} repeated"
        );
    }
}

#[test]
fn the_lnd_files_use_lnds_package_names() {
    let set = descriptor_set();
    let mut packages: Vec<&str> = lnd_files(&set).iter().map(|f| f.package()).collect();
    packages.sort_unstable();
    assert_eq!(
        packages,
        [
            "chainrpc",
            "invoicesrpc",
            "lnrpc",
            "routerrpc",
            "signrpc",
            "verrpc",
            "walletrpc"
        ]
    );
}
