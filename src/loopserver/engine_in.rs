//! The life of one Loop In on the server side, driven by its node's notifications.
//!
//! Watches the HTLC script the contract names (the client funds it) until it confirms, checks
//! that exactly one output pays it exactly the amount, pays the client's swap invoice (which
//! reveals the preimage), then claims the HTLC: by the key path once the client pushed its
//! internal key, by the success leaf with the preimage if no key came. Every action is retried
//! on the next event if it fails, and none is done twice: the payment is idempotent by hash
//! in the node, and a claim is the same transaction until the tip moves.

use std::sync::Arc;

use bitcoin::ScriptBuf;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::behaviour_in::{ClaimMode, KEY_WAIT_BLOCKS, PartPayment, PayMode};
use super::error::LoopServerError;
use super::sign::{InClaim, loop_in_claim};
use super::swap::is_final;
use super::swap_in::InSwapEntry;
use crate::chain::fees::SatPerKw;
use crate::domain::{BlockHeight, Msat};
use crate::lnd::types::{
    ConfRequest, ConfUpdate, HtlcOutcome, PaymentFailure, PaymentRequest, PaymentStatus,
    PaymentUpdate, SpendRequest, SpendUpdate,
};
use crate::lnd::{NodeResult, NodeStream};
use crate::provider::wire::ServerSwapState as S;

fn parked<T: Send + 'static>() -> NodeStream<T> {
    futures::stream::pending().boxed()
}

/// How long the node keeps trying routes for one payment attempt.
pub(super) const PAYMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most HTLCs a payment to the client may be split into.
pub(super) const PAYMENT_PARTS: u32 = 16;

/// The routing fee the server accepts for paying the client: its swap fee (its whole margin)
/// but at least 1 000 sat, so small swaps still route on test networks.
pub(super) fn routing_fee_limit(swap_fee: crate::domain::Sat) -> Msat {
    Msat(swap_fee.0.max(1_000).saturating_mul(1_000))
}

/// Sends one HTLC of a payment switch (`lnd::pay_part`).
pub(super) async fn send_part(
    node: &dyn crate::lnd::LightningNode,
    invoice: &str,
    part: PartPayment,
    fee_limit: Msat,
) -> NodeResult<HtlcOutcome> {
    crate::lnd::pay_part(node, invoice, part.amount, part.set_total, fee_limit).await
}

/// A payment switch's single HTLC (`PayMode::Less`, `PayMode::More`) as a payment stream: one
/// update with its outcome, once the client's node settled or failed it.
pub(super) fn part_payment(
    node: Arc<dyn crate::lnd::LightningNode>,
    hash: crate::domain::SwapHash,
    invoice: String,
    part: PartPayment,
    fee_limit: Msat,
) -> NodeStream<PaymentUpdate> {
    futures::stream::once(async move {
        let outcome = send_part(node.as_ref(), &invoice, part, fee_limit).await?;
        tracing::info!(swap = %hash, ?outcome, amount = part.amount.0, set_total = part.set_total.0,
            "loop server: paid the loop in invoice other than exactly (switch)");
        let status = match outcome {
            HtlcOutcome::Settled { preimage } => PaymentStatus::Succeeded { preimage },
            HtlcOutcome::Failed(_) => {
                PaymentStatus::Failed(PaymentFailure::IncorrectPaymentDetails)
            }
        };
        Ok(PaymentUpdate {
            hash,
            status,
            amount: part.amount,
            fee: Msat(0),
            htlcs_in_flight: 0,
        })
    })
    .boxed()
}

/// What the engine has done so far; each field guards one action.
#[derive(Debug, Default)]
struct Progress {
    height: BlockHeight,
    /// The HTLC confirmed with the contract's script (checked or not).
    confirmed: bool,
    /// The confirmed HTLC is wrong (value or outputs): never pay unless the switch says so.
    wrong_htlc: bool,
    /// A payment attempt is under way.
    paying: bool,
    /// The tip at the last payment attempt: a failed attempt is retried on the next block,
    /// not at once.
    paid_tried_at: Option<BlockHeight>,
    /// The height at which the payment succeeded.
    paid_at: Option<BlockHeight>,
    /// The height and path of the last claim published.
    claimed: Option<(BlockHeight, bool)>,
    spent: bool,
    /// The spend watch is registered.
    watching: bool,
    claim_address: Option<ScriptBuf>,
}

/// Runs a Loop In until it is final or `stop` fires.
pub(super) async fn run(inner: Arc<Inner>, swap: Arc<InSwapEntry>, stop: CancellationToken) {
    let result = tokio::select! {
        r = drive(&inner, &swap) => r,
        () = stop.cancelled() => return,
    };
    if let Err(e) = result {
        tracing::warn!(swap = %swap.hash, error = %e, "loop server: loop in failed");
        swap.enter(S::ServerUnexpectedFailure, inner.now());
    }
}

async fn drive(inner: &Inner, swap: &InSwapEntry) -> Result<(), LoopServerError> {
    let node = &inner.node;
    let mut blocks = node.register_block_epochs().await?;
    let mut confs = node
        .register_confirmations(&ConfRequest {
            txid: None,
            script: swap.htlc.pk_script(),
            num_confs: inner.config.htlc_confirmations.max(1),
            height_hint: swap.registered_at,
        })
        .await?;
    let mut spends: NodeStream<SpendUpdate> = parked();
    let mut payment: NodeStream<PaymentUpdate> = parked();
    let mut p = Progress {
        height: node.block_height().await?,
        ..Progress::default()
    };

    loop {
        match act(inner, swap, &mut p, &mut spends, &mut payment).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(swap = %swap.hash, error = %e, "loop server: loop in action failed; retrying");
            }
        }
        if is_final(swap.state()) {
            return Ok(());
        }
        tokio::select! {
            b = blocks.next() => match b {
                Some(Ok(b)) => p.height = b.height,
                other => { note_end("block epochs", other); blocks = parked(); }
            },
            c = confs.next() => match c {
                Some(Ok(ConfUpdate::Confirmed { tx, .. })) => on_confirmed(inner, swap, &mut p, &tx),
                Some(Ok(ConfUpdate::Reorg)) => {
                    p.confirmed = false;
                    swap.with_live(|l| l.htlc_output = None);
                }
                other => { note_end("HTLC confirmation", other); confs = parked(); }
            },
            s = spends.next() => match s {
                Some(Ok(SpendUpdate::Spent { spending_tx, input_index, .. })) => {
                    on_spend(inner, swap, &mut p, &spending_tx, input_index);
                }
                Some(Ok(SpendUpdate::Reorg)) => p.spent = false,
                other => { note_end("HTLC spend", other); spends = parked(); }
            },
            u = payment.next() => match u {
                Some(Ok(u)) => on_payment(swap, &mut p, &u),
                other => {
                    note_end("swap payment", other);
                    payment = parked();
                    p.paying = false;
                }
            },
            () = swap.wake.notified() => {}
        }
    }
}

fn note_end<T>(what: &str, item: Option<NodeResult<T>>) {
    if let Some(Err(e)) = item {
        tracing::warn!(stream = what, error = %e, "loop server: notification stream failed");
    }
}

/// The HTLC transaction confirmed: exactly one output must pay the script, with exactly the
/// amount (protocol notes §11); otherwise the server reports the failure and never pays.
fn on_confirmed(inner: &Inner, swap: &InSwapEntry, p: &mut Progress, tx: &bitcoin::Transaction) {
    let script = swap.htlc.pk_script();
    let outputs: Vec<_> = tx
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| o.script_pubkey == script)
        .map(|(i, o)| (i, crate::domain::Sat(o.value.to_sat())))
        .collect();
    p.confirmed = true;
    let txid = tx.compute_txid();
    let first = outputs.first().and_then(|(i, v)| {
        u32::try_from(*i)
            .ok()
            .map(|vout| (bitcoin::OutPoint { txid, vout }, *v))
    });
    let Some((outpoint, value)) = first else {
        return;
    };
    swap.with_live(|l| l.htlc_output = Some((outpoint, value)));
    let verdict = if outputs.len() != 1 {
        Some(S::ServerFailedMultipleSwapScripts)
    } else if value != swap.amount {
        Some(S::ServerFailedInvalidHtlcAmount)
    } else {
        None
    };
    match verdict {
        Some(state) if swap.behaviour.pay != PayMode::DespiteWrongHtlc => {
            tracing::warn!(swap = %swap.hash, ?state, value = %value, outputs = outputs.len(),
                "loop server: the loop in HTLC breaks the contract; not paying");
            p.wrong_htlc = true;
            swap.enter(state, inner.now());
        }
        _ => swap.enter(S::ServerHtlcConfirmed, inner.now()),
    }
}

fn on_payment(swap: &InSwapEntry, p: &mut Progress, u: &PaymentUpdate) {
    match &u.status {
        PaymentStatus::Succeeded { preimage } if preimage.hash() == swap.hash => {
            swap.with_live(|l| l.preimage = Some(*preimage));
            if p.paid_at.is_none() {
                p.paid_at = Some(p.height);
            }
            p.paying = false;
            tracing::info!(swap = %swap.hash, "loop server: paid the loop in invoice");
        }
        PaymentStatus::Succeeded { .. } => {
            tracing::warn!(swap = %swap.hash, "loop server: payment succeeded with a preimage of another hash");
            p.paying = false;
        }
        PaymentStatus::Failed(reason) => {
            tracing::warn!(swap = %swap.hash, ?reason, "loop server: paying the loop in invoice failed; retrying next block");
            p.paying = false;
        }
        PaymentStatus::Initiated | PaymentStatus::InFlight => {}
    }
}

/// Reads the outcome of the HTLC's spend: 1 (key path) or 4 (success leaf) witness elements
/// are the server's claim; 3 are the client's timeout sweep.
fn on_spend(
    inner: &Inner,
    swap: &InSwapEntry,
    p: &mut Progress,
    tx: &bitcoin::Transaction,
    input_index: u32,
) {
    p.spent = true;
    let witness = usize::try_from(input_index)
        .ok()
        .and_then(|i| tx.input.get(i))
        .map(|i| &i.witness);
    let Some(witness) = witness else { return };
    let state = if matches!(witness.len(), 1 | 4) {
        S::ServerSuccess
    } else {
        S::ServerFailedTimeout
    };
    swap.enter(state, inner.now());
}

async fn act(
    inner: &Inner,
    swap: &InSwapEntry,
    p: &mut Progress,
    spends: &mut NodeStream<SpendUpdate>,
    payment: &mut NodeStream<PaymentUpdate>,
) -> Result<(), LoopServerError> {
    let node = &inner.node;
    let behaviour = swap.behaviour;
    let Some((outpoint, value)) = swap.with_live(|l| l.htlc_output) else {
        if !p.confirmed && p.height.0 >= swap.expiry {
            // No HTLC before the expiry: nothing to pay for.
            swap.enter(S::ServerFailedNoHtlc, inner.now());
        }
        return Ok(());
    };
    if !p.watching {
        *spends = node
            .register_spend(&SpendRequest {
                outpoint: Some(outpoint),
                script: swap.htlc.pk_script(),
                height_hint: swap.registered_at,
            })
            .await?;
        p.watching = true;
    }
    if p.spent {
        return Ok(());
    }
    let (preimage, pushed) = swap.with_live(|l| (l.preimage, l.client_internal));
    let key_path = match (preimage, behaviour.claim) {
        // The misbehaving server claims with a key pushed too early, and never pays.
        (_, ClaimMode::WithoutPaying) => {
            if pushed.is_none() {
                return Ok(());
            }
            true
        }
        (None, _) => {
            if p.wrong_htlc && behaviour.pay != PayMode::DespiteWrongHtlc
                || p.paying
                || p.paid_tried_at == Some(p.height)
                || !behaviour.pay.pays_at(p.height.0, swap.expiry)
            {
                return Ok(());
            }
            p.paid_tried_at = Some(p.height);
            *payment = match behaviour.pay.part(swap.invoice_amount) {
                Some(part) => part_payment(
                    Arc::clone(node),
                    swap.hash,
                    swap.invoice.clone(),
                    part,
                    routing_fee_limit(swap.swap_fee),
                ),
                None => {
                    node.pay(&PaymentRequest {
                        invoice: swap.invoice.clone(),
                        fee_limit: routing_fee_limit(swap.swap_fee),
                        outgoing_chan_ids: Vec::new(),
                        max_parts: PAYMENT_PARTS,
                        timeout: PAYMENT_TIMEOUT,
                        cltv_limit: None,
                        last_hop: swap.last_hop,
                    })
                    .await?
                }
            };
            p.paying = true;
            swap.with_live(|l| l.payment_sent = true);
            return Ok(());
        }
        (Some(_), ClaimMode::Never) => return Ok(()),
        (Some(_), mode) => {
            let key_path = pushed.is_some() && mode == ClaimMode::Honest;
            let paid_at = p.paid_at.unwrap_or(p.height);
            let waited = p.height.0 >= paid_at.0.saturating_add(KEY_WAIT_BLOCKS);
            if !key_path && !waited && mode == ClaimMode::Honest {
                return Ok(());
            }
            key_path
        }
    };
    // Once per block, or at once when the key arrives after a script-path claim.
    if let Some((h, was_key)) = p.claimed
        && h == p.height
        && (was_key || !key_path)
    {
        return Ok(());
    }
    let destination = match &p.claim_address {
        Some(s) => s.clone(),
        None => {
            let s = node.next_addr().await?.script_pubkey();
            p.claim_address = Some(s.clone());
            s
        }
    };
    let estimate = node.estimate_fee(inner.config.timeout_conf_target).await?;
    let rate = SatPerKw(estimate.to_sat_per_kwu().max(SatPerKw::FLOOR.0));
    let how = match (&pushed, preimage) {
        (Some(theirs), _) if key_path => InClaim::KeyPath {
            ours: &swap.receiver_internal_secret,
            theirs,
        },
        (_, Some(preimage)) => InClaim::SuccessLeaf {
            key: &swap.receiver_secret,
            preimage,
        },
        (_, None) => return Ok(()),
    };
    let tx = loop_in_claim(
        &swap.htlc,
        outpoint,
        value,
        &destination,
        rate,
        p.height,
        &how,
    )?;
    p.claimed = Some((p.height, key_path));
    node.publish_transaction(&tx, "loop: loop in claim").await?;
    Ok(())
}
