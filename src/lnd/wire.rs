//! Code generated from `proto/lnd/`: lnd's wire types and gRPC clients and servers.
//!
//! Only `lnd/` (the adapter) and `simnet/` (the simulated lnd) may use these; everything
//! else speaks the domain types of [`crate::lnd`].

#![allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]

/// `lnrpc`: the main `Lightning` service and the shared payment and invoice messages.
pub mod lnrpc {
    tonic::include_proto!("lnrpc");
}

/// `routerrpc`: `SendPaymentV2` and `TrackPaymentV2`.
pub mod routerrpc {
    tonic::include_proto!("routerrpc");
}

/// `walletrpc`: keys, addresses, fee estimates and broadcasting.
pub mod walletrpc {
    tonic::include_proto!("walletrpc");
}

/// `signrpc`: raw and MuSig2 signatures.
pub mod signrpc {
    tonic::include_proto!("signrpc");
}

/// `chainrpc`: confirmation, spend and block notifications.
pub mod chainrpc {
    tonic::include_proto!("chainrpc");
}

/// `invoicesrpc`: hold invoices.
pub mod invoicesrpc {
    tonic::include_proto!("invoicesrpc");
}

/// `verrpc`: the lnd version.
pub mod verrpc {
    tonic::include_proto!("verrpc");
}
