//! sluice's swaps in Loop's client-API terms: states, failure reasons, addresses and times.
//! Pure.

use bitcoin::{Address, ScriptBuf};

use crate::domain::{Network, Sat, SwapHash};
use crate::proto::loopd::looprpc as rpc;
use crate::store::loop_in::LoopInRecord;
use crate::store::swaps::SwapRecord;
use crate::swap::loop_in::LoopInState;
use crate::swap::{SwapCosts, SwapState};

/// The network name Loop's CLI and loopd use (`--network`, `GetInfo.network`, the directory
/// under `~/.loop`). sluice's simnet runs regtest's chain parameters, so it is `regtest`.
pub fn loop_network(network: Network) -> &'static str {
    match network {
        Network::Simnet => "regtest",
        other => other.as_str(),
    }
}

/// A sluice state as Loop's (`SwapState`, `FailureReason`). An HTLC seen on chain before the
/// reveal is Loop's `HTLC_PUBLISHED`; a sweep waiting for `swap.sweep_confirmations` is still
/// `PREIMAGE_REVEALED`, since sluice calls a swap done only at that depth.
pub fn state(state: SwapState, htlc_seen: bool) -> (rpc::SwapState, rpc::FailureReason) {
    use rpc::FailureReason as F;
    use rpc::SwapState as S;
    match state {
        SwapState::Initiated if htlc_seen => (S::HtlcPublished, F::None),
        SwapState::Initiated => (S::Initiated, F::None),
        SwapState::PreimageRevealed | SwapState::SpendConfirming => (S::PreimageRevealed, F::None),
        SwapState::Succeeded => (S::Success, F::None),
        SwapState::FailedOffchain => (S::Failed, F::Offchain),
        SwapState::FailedTimeout => (S::Failed, F::Timeout),
        SwapState::FailedSweepTimeout => (S::Failed, F::SweepTimeout),
        SwapState::FailedInsufficientValue => (S::Failed, F::InsufficientValue),
    }
}

/// A sluice Loop In state as Loop's. sluice's waiting states before the swap ends (funded,
/// confirmed, a wrong amount waiting for the expiry, a timeout sweep under way) are Loop's
/// `HTLC_PUBLISHED`; a funding that never went out is Loop's temporary failure.
pub fn loop_in_state(state: LoopInState) -> (rpc::SwapState, rpc::FailureReason) {
    use rpc::FailureReason as F;
    use rpc::SwapState as S;
    match state {
        LoopInState::Initiated => (S::Initiated, F::None),
        LoopInState::HtlcPublished
        | LoopInState::HtlcConfirmed
        | LoopInState::IncorrectHtlcAmount
        | LoopInState::TimeoutSweeping => (S::HtlcPublished, F::None),
        LoopInState::InvoiceSettled => (S::InvoiceSettled, F::None),
        LoopInState::Succeeded => (S::Success, F::None),
        LoopInState::FailedTimeout => (S::Failed, F::Timeout),
        LoopInState::FailedFunding | LoopInState::FailedNotPublished => (S::Failed, F::Temporary),
        LoopInState::FailedIncorrectHtlcAmtSwept => (S::Failed, F::IncorrectHtlcAmtSwept),
    }
}

/// A stored Loop In as Loop's `SwapStatus` (type `LOOP_IN`).
pub fn loop_in_status(r: &LoopInRecord) -> rpc::SwapStatus {
    let t = r.contract.terms();
    let (state, failure) = loop_in_state(r.progress.state);
    let mut status = SwapHead {
        hash: t.swap_hash,
        amount: t.amount,
        kind: rpc::SwapType::LoopIn,
        state,
        failure,
        created_at_unix: r.created_at_unix,
        updated_at_unix: r.updated_at_unix,
        label: &t.label,
    }
    .status(t.htlc_pk_script.as_bytes(), r.network);
    status.last_hop = t.last_hop.map(|k| k.to_vec()).unwrap_or_default();
    status.cost_server = r.costs.server_sat;
    status.cost_onchain = signed(r.costs.onchain.0);
    status
}

/// The HTLC's address in the field Loop uses for its kind: P2TR (sluice's v3 HTLCs) or P2WSH
/// (v2, read only). `(p2wsh, p2tr)`.
pub fn htlc_addresses(script: &[u8], network: Network) -> (String, String) {
    let script = ScriptBuf::from_bytes(script.to_vec());
    let address = Address::from_script(&script, network.bitcoin())
        .map(|a| a.to_string())
        .unwrap_or_default();
    if script.is_p2tr() {
        (String::new(), address)
    } else {
        (address, String::new())
    }
}

/// Unix seconds as Loop's nanoseconds.
pub fn unix_nanos(seconds: i64) -> i64 {
    seconds.saturating_mul(1_000_000_000)
}

fn signed(sat: u64) -> i64 {
    i64::try_from(sat).unwrap_or(i64::MAX)
}

/// What every swap's `SwapStatus` carries, whichever its direction.
struct SwapHead<'a> {
    hash: SwapHash,
    amount: Sat,
    kind: rpc::SwapType,
    state: rpc::SwapState,
    failure: rpc::FailureReason,
    created_at_unix: i64,
    updated_at_unix: i64,
    label: &'a str,
}

impl SwapHead<'_> {
    /// The status, with the HTLC's address in the field Loop uses for its kind. The
    /// deprecated `id` and `htlc_address` are filled too: older tools still read them.
    #[allow(deprecated)]
    fn status(&self, htlc_script: &[u8], network: Network) -> rpc::SwapStatus {
        let (p2wsh, p2tr) = htlc_addresses(htlc_script, network);
        rpc::SwapStatus {
            amt: signed(self.amount.0),
            id: self.hash.to_string(),
            id_bytes: self.hash.0.to_vec(),
            r#type: self.kind.into(),
            state: self.state.into(),
            failure_reason: self.failure.into(),
            initiation_time: unix_nanos(self.created_at_unix),
            last_update_time: unix_nanos(self.updated_at_unix),
            htlc_address: if p2tr.is_empty() {
                p2wsh.clone()
            } else {
                p2tr.clone()
            },
            htlc_address_p2wsh: p2wsh,
            htlc_address_p2tr: p2tr,
            label: self.label.to_owned(),
            ..rpc::SwapStatus::default()
        }
    }
}

/// A stored swap as Loop's `SwapStatus`.
pub fn swap_status(r: &SwapRecord) -> rpc::SwapStatus {
    let t = r.contract.terms();
    let (state, failure) = state(r.progress.state, r.progress.htlc.is_some());
    let mut status = SwapHead {
        hash: t.swap_hash,
        amount: t.amount,
        kind: rpc::SwapType::LoopOut,
        state,
        failure,
        created_at_unix: r.created_at_unix,
        updated_at_unix: r.updated_at_unix,
        label: &t.label,
    }
    .status(t.htlc_pk_script.as_bytes(), r.extras.network);
    status.outgoing_chan_set = t.outgoing_chan_set.iter().map(|c| c.0).collect();
    set_costs(&mut status, r.costs);
    status
}

/// Writes sluice's costs into Loop's three cost fields (the same split: server, on chain,
/// off chain).
pub fn set_costs(status: &mut rpc::SwapStatus, costs: SwapCosts) {
    status.cost_server = costs.server_sat;
    status.cost_onchain = signed(costs.onchain.0);
    status.cost_offchain = signed(costs.offchain.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps_and_failures_carry_their_reason() {
        for s in SwapState::ALL {
            let (loop_state, reason) = state(s, false);
            assert_eq!(
                loop_state == rpc::SwapState::Failed,
                reason != rpc::FailureReason::None,
                "{s:?}"
            );
        }
        assert_eq!(
            state(SwapState::Initiated, true).0,
            rpc::SwapState::HtlcPublished
        );
        assert_eq!(state(SwapState::Succeeded, true).0, rpc::SwapState::Success);
        assert_eq!(
            state(SwapState::FailedTimeout, true),
            (rpc::SwapState::Failed, rpc::FailureReason::Timeout)
        );
    }

    #[test]
    fn every_loop_in_state_maps_and_only_terminal_failures_carry_a_reason() {
        for s in LoopInState::ALL {
            let (loop_state, reason) = loop_in_state(s);
            assert_eq!(
                loop_state == rpc::SwapState::Failed,
                reason != rpc::FailureReason::None,
                "{s:?}"
            );
            assert_eq!(
                matches!(loop_state, rpc::SwapState::Success | rpc::SwapState::Failed),
                s.is_terminal(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn simnet_is_regtest_to_loop() {
        assert_eq!(loop_network(Network::Simnet), "regtest");
        assert_eq!(loop_network(Network::Mainnet), "mainnet");
    }
}
