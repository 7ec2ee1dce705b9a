//! lnd's answers, as they cross the wire: any bytes decode (or not) as the protobuf message,
//! and every conversion into sluice's domain types answers a value or an "invalid response"
//! error, never a panic. The first byte picks the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice::lnd::convert;
use sluice::lnd::types::{CoinSelection, SendOutputsRequest};
use sluice::lnd::wire::{chainrpc, lnrpc, signrpc, verrpc, walletrpc};

fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 15 {
        0 => drop(decoded::<lnrpc::GetInfoResponse>(bytes).map(|m| convert::node_info(&m))),
        1 => drop(decoded::<verrpc::Version>(bytes).map(|m| convert::node_version(&m))),
        2 => drop(decoded::<lnrpc::Channel>(bytes).map(|m| convert::channel(&m))),
        3 => drop(decoded::<lnrpc::ChannelPoint>(bytes).map(|m| convert::channel_point(&m))),
        4 => drop(decoded::<lnrpc::ChannelEventUpdate>(bytes).map(|m| convert::channel_event(&m))),
        5 => drop(decoded::<lnrpc::Peer>(bytes).map(|m| convert::peer(&m))),
        6 => drop(
            decoded::<lnrpc::ForwardingHistoryResponse>(bytes)
                .map(|m| convert::forwarding_page(&m)),
        ),
        7 => drop(decoded::<lnrpc::PayReq>(bytes).map(|m| convert::decoded_invoice(&m))),
        8 => drop(decoded::<lnrpc::Payment>(bytes).map(|m| convert::payment_update(&m))),
        9 => drop(
            decoded::<signrpc::KeyDescriptor>(bytes)
                .map(|m| convert::key_descriptor("DeriveKey", &m)),
        ),
        10 => drop(
            decoded::<signrpc::MuSig2SessionResponse>(bytes).map(|m| convert::musig2_session(&m)),
        ),
        11 => drop(decoded::<chainrpc::ConfEvent>(bytes).map(|m| convert::conf_update(&m))),
        12 => drop(decoded::<chainrpc::SpendEvent>(bytes).map(|m| convert::spend_update(&m))),
        13 => drop(decoded::<chainrpc::BlockEpoch>(bytes).map(|m| convert::block_epoch(&m))),
        _ => {
            drop(decoded::<lnrpc::Invoice>(bytes).map(|m| convert::invoice_update(&m)));
            if let Some(r) = decoded::<walletrpc::SendOutputsResponse>(bytes) {
                let asked = SendOutputsRequest {
                    outputs: Vec::new(),
                    fee_rate: bitcoin::FeeRate::from_sat_per_vb_u32(1),
                    label: String::new(),
                    min_confs: 1,
                    coin_selection: CoinSelection::NodeDefault,
                };
                drop(convert::sent_outputs(&asked, &r));
            }
            if let Ok(eight) = <[u8; 8]>::try_from(bytes.get(..8).unwrap_or_default()) {
                drop(convert::fee_rate(i64::from_le_bytes(eight)));
            }
        }
    }
});
