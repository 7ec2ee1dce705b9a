//! The life of one swap on the server side, driven by its node's notifications.
//!
//! Waits until both invoices are held (ACCEPTED), publishes the HTLC (when and how the
//! behaviour says), settles the prepay, watches the HTLC's confirmation and spend, settles
//! the swap invoice once the preimage is known (pushed or read from a success witness), and
//! after the expiry takes an unspent HTLC back through the timeout leaf and cancels the held
//! payment. Every action is retried on the next event if it fails, and none is done twice.

use std::sync::Arc;

use bitcoin::{Address, ScriptBuf};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::behaviour::Settle;
use super::error::LoopServerError;
use super::funder::HtlcFunder;
use super::sign::{preimage_from_witness, timeout_claim};
use super::swap::{Funded, SwapEntry, is_final};
use crate::chain::fees::SatPerKw;
use crate::chain::htlc::HtlcV3;
use crate::domain::{BlockHeight, SwapHash};
use crate::lnd::types::{ConfRequest, ConfUpdate, InvoiceState, SpendRequest, SpendUpdate};
use crate::lnd::{NodeResult, NodeStream};
use crate::provider::wire::ServerSwapState as S;

fn parked<T: Send + 'static>() -> NodeStream<T> {
    futures::stream::pending().boxed()
}

/// What the engine has done so far; each flag guards one action.
#[derive(Debug, Default)]
struct Progress {
    height: BlockHeight,
    swap_invoice: Option<InvoiceState>,
    prepay_invoice: Option<InvoiceState>,
    prepay_settled: bool,
    swap_settled: bool,
    swap_canceled: bool,
    confirmed: bool,
    reported_confirmed: bool,
    failed_after_confirm: bool,
    spent: bool,
    timeout_published: bool,
    watching: bool,
    claim_address: Option<ScriptBuf>,
}

/// Runs a swap until it is final or `stop` fires. Node errors end the run with
/// `SERVER_UNEXPECTED_FAILURE`, except while subscribing, which is retried by the caller.
pub(super) async fn run(inner: Arc<Inner>, swap: Arc<SwapEntry>, stop: CancellationToken) {
    let result = tokio::select! {
        r = drive(&inner, &swap) => r,
        () = stop.cancelled() => return,
    };
    if let Err(e) = result {
        tracing::warn!(swap = %swap.hash, error = %e, "loop server: swap failed");
        swap.enter(S::ServerUnexpectedFailure, inner.now());
    }
}

async fn drive(inner: &Inner, swap: &SwapEntry) -> Result<(), LoopServerError> {
    let node = &inner.node;
    let mut swap_inv = node.subscribe_single_invoice(swap.hash).await?;
    let mut prepay_inv = node
        .subscribe_single_invoice(swap.prepay_preimage.hash())
        .await?;
    let mut blocks = node.register_block_epochs().await?;
    let mut confs: NodeStream<ConfUpdate> = parked();
    let mut spends: NodeStream<SpendUpdate> = parked();
    let mut p = Progress {
        height: node.block_height().await?,
        ..Progress::default()
    };

    loop {
        // A failed action is retried on the next event (usually the next block).
        if let Err(e) = act(inner, swap, &mut p, &mut confs, &mut spends).await {
            tracing::warn!(swap = %swap.hash, error = %e, "loop server: action failed; retrying");
        }
        if is_final(swap.state()) {
            return Ok(());
        }
        tokio::select! {
            u = swap_inv.next() => match u {
                Some(Ok(u)) => p.swap_invoice = Some(u.state),
                other => { note_end("swap invoice", other); swap_inv = parked(); }
            },
            u = prepay_inv.next() => match u {
                Some(Ok(u)) => p.prepay_invoice = Some(u.state),
                other => { note_end("prepay invoice", other); prepay_inv = parked(); }
            },
            b = blocks.next() => match b {
                Some(Ok(b)) => p.height = b.height,
                other => { note_end("block epochs", other); blocks = parked(); }
            },
            c = confs.next() => match c {
                Some(Ok(ConfUpdate::Confirmed { .. })) => p.confirmed = true,
                Some(Ok(ConfUpdate::Reorg)) => p.confirmed = false,
                other => { note_end("HTLC confirmation", other); confs = parked(); }
            },
            s = spends.next() => match s {
                Some(Ok(SpendUpdate::Spent { spending_tx, input_index, .. })) => {
                    on_spend(inner, swap, &mut p, &spending_tx, input_index);
                }
                Some(Ok(SpendUpdate::Reorg)) => p.spent = false,
                other => { note_end("HTLC spend", other); spends = parked(); }
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

/// Reads the outcome of the HTLC's spend: a success leaf reveals the preimage, a key-path
/// spend happens only after the server co-signed (it knew the preimage then), a timeout
/// leaf is the server's own claim.
fn on_spend(
    inner: &Inner,
    swap: &SwapEntry,
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
    if let Some(preimage) = preimage_from_witness(witness, swap.hash) {
        swap.with_live(|l| l.preimage = Some(preimage));
    }
    let state = if witness.len() == 3 {
        S::ServerFailedTimeout
    } else {
        S::ServerSuccess
    };
    // Success is recorded once the swap invoice is settled (or never will be).
    if state == S::ServerFailedTimeout {
        swap.enter(state, inner.now());
    }
}

async fn act(
    inner: &Inner,
    swap: &SwapEntry,
    p: &mut Progress,
    confs: &mut NodeStream<ConfUpdate>,
    spends: &mut NodeStream<SpendUpdate>,
) -> Result<(), LoopServerError> {
    let node = &inner.node;
    let (behaviour, preimage, published, client_cancel) =
        swap.with_live(|l| (l.behaviour, l.preimage, l.funded.is_some(), l.client_cancel));
    let held =
        |s: Option<InvoiceState>| matches!(s, Some(InvoiceState::Accepted | InvoiceState::Settled));
    let canceled = |s: Option<InvoiceState>| s == Some(InvoiceState::Canceled);

    if !published {
        if let Some(state) = client_cancel {
            swap.enter(state, inner.now());
            return Ok(());
        }
        if canceled(p.swap_invoice) || canceled(p.prepay_invoice) {
            cancel_both(inner, swap).await;
            swap.enter(S::ServerFailedOffChainTimeout, inner.now());
            return Ok(());
        }
        if p.height.0 >= swap.expiry {
            // Never published in time: release the held payments.
            cancel_both(inner, swap).await;
            let state = if held(p.swap_invoice) && held(p.prepay_invoice) {
                S::ServerFailedHtlcPublication
            } else {
                S::ServerFailedOffChainTimeout
            };
            swap.enter(state, inner.now());
            return Ok(());
        }
        let due = behaviour
            .publication
            .earliest_height(swap.expiry)
            .is_some_and(|h| p.height >= h);
        if !(held(p.swap_invoice) && held(p.prepay_invoice) && due) {
            return Ok(());
        }
        let f = publish(inner, swap).await?;
        swap.with_live(|l| l.funded = Some(f.clone()));
        swap.enter(S::ServerHtlcPublished, inner.now());
    }
    // Re-read: the HTLC may have been published just above.
    let Some(funded) = swap.with_live(|l| l.funded.clone()) else {
        return Ok(());
    };

    if !p.watching {
        let first = funded.outputs.first().map(|(o, _)| *o);
        *confs = node
            .register_confirmations(&ConfRequest {
                txid: first.map(|o| o.txid),
                script: funded.htlc.pk_script(),
                num_confs: inner.config.htlc_confirmations.max(1),
                height_hint: p.height,
            })
            .await?;
        *spends = node
            .register_spend(&SpendRequest {
                outpoint: first,
                script: funded.htlc.pk_script(),
                height_hint: p.height,
            })
            .await?;
        p.watching = true;
    }

    if !p.prepay_settled {
        node.settle_invoice(swap.prepay_preimage).await?;
        p.prepay_settled = true;
    }
    if p.confirmed && !p.spent && !p.reported_confirmed {
        p.reported_confirmed = true;
        swap.enter(S::ServerHtlcConfirmed, inner.now());
    }
    if p.confirmed
        && !p.spent
        && behaviour.fail_swap_payment_after_confirm
        && !p.failed_after_confirm
    {
        node.cancel_invoice(swap.hash).await?;
        p.failed_after_confirm = true;
        p.swap_canceled = true;
    }
    if let Some(preimage) = preimage
        && behaviour.settle == Settle::OnPreimage
        && !p.swap_settled
        && !p.swap_canceled
        && p.swap_invoice == Some(InvoiceState::Accepted)
    {
        node.settle_invoice(preimage).await?;
        p.swap_settled = true;
    }
    if p.spent && swap.state() != S::ServerFailedTimeout {
        // Done once the held payment has its outcome (settled, canceled here or by the node
        // as its HTLC neared expiry) or never will have one.
        let settled_or_never = p.swap_settled
            || p.swap_canceled
            || matches!(
                p.swap_invoice,
                Some(InvoiceState::Settled | InvoiceState::Canceled)
            )
            || behaviour.settle == Settle::Never;
        if settled_or_never {
            swap.enter(S::ServerSuccess, inner.now());
        }
        return Ok(());
    }
    if !p.spent
        && !p.timeout_published
        && p.height.0 >= funded.htlc.expiry()
        && let Some(factor) = behaviour.timeout_claim.fee_factor()
    {
        claim_timeout(inner, swap, p, &funded, factor).await?;
    }
    Ok(())
}

/// Cancels both hold invoices; errors (already settled or canceled) are only logged.
async fn cancel_both(inner: &Inner, swap: &SwapEntry) {
    for hash in [swap.hash, swap.prepay_preimage.hash()] {
        if let Err(e) = inner.node.cancel_invoice(hash).await {
            tracing::debug!(error = %e, "loop server: cancel invoice");
        }
    }
}

/// Funds the HTLC as the behaviour says: the honest script (or another), `amt` (or not), once
/// (or twice).
async fn publish(inner: &Inner, swap: &SwapEntry) -> Result<Funded, LoopServerError> {
    let tamper = swap.behaviour().htlc;
    let expiry = tamper.funded_expiry(swap.expiry);
    let htlc = if expiry == swap.expiry {
        swap.htlc.clone()
    } else {
        HtlcV3::new(
            swap.htlc.sender(),
            swap.receiver,
            swap.hash,
            expiry,
            inner.config.terms.network,
        )?
    };
    let address: Address = htlc.address();
    let values = tamper.output_values(swap.amount);
    let outputs: Vec<_> = values.iter().map(|v| (address.clone(), *v)).collect();
    let outpoints = inner.node.fund(&outputs).await?;
    if outpoints.len() != values.len() {
        return Err(LoopServerError::Fund(format!(
            "the wallet reported {} outputs for {} requested",
            outpoints.len(),
            values.len()
        )));
    }
    Ok(Funded {
        htlc,
        outputs: outpoints.into_iter().zip(values).collect(),
    })
}

async fn claim_timeout(
    inner: &Inner,
    swap: &SwapEntry,
    p: &mut Progress,
    funded: &Funded,
    factor: u64,
) -> Result<(), LoopServerError> {
    let node = &inner.node;
    let destination = match &p.claim_address {
        Some(s) => s.clone(),
        None => {
            let s = node.next_addr().await?.script_pubkey();
            p.claim_address = Some(s.clone());
            s
        }
    };
    let estimate = node.estimate_fee(inner.config.timeout_conf_target).await?;
    let rate = SatPerKw(
        estimate
            .to_sat_per_kwu()
            .max(SatPerKw::FLOOR.0)
            .saturating_mul(factor),
    );
    for (outpoint, value) in &funded.outputs {
        let tx = timeout_claim(
            &funded.htlc,
            &swap.sender_secret,
            *outpoint,
            *value,
            &destination,
            rate,
        )?;
        node.publish_transaction(&tx, "loop: timeout claim").await?;
    }
    p.timeout_published = true;
    swap.enter(S::ServerTimeoutPublished, inner.now());
    if !p.swap_settled && !p.swap_canceled {
        node.cancel_invoice(swap.hash).await?;
        p.swap_canceled = true;
    }
    Ok(())
}

/// The hash a pushed preimage belongs to: what `LoopOutPushPreimage` looks swaps up by.
pub(super) fn hash_of(preimage: &[u8; 32]) -> SwapHash {
    crate::domain::Preimage(*preimage).hash()
}
