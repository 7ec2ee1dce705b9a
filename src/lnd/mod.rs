//! The `LightningNode` port and its lnd gRPC adapter.

pub mod wire;
