//! The long-running child tasks of a driver: the two payments and the two chain watches.
//!
//! Each turns a node stream into [`Input`]s and re-subscribes with backoff whenever the
//! stream breaks: `pay` attaches to an existing payment of the same hash, and lnd reports an
//! already confirmed transaction or spend again, so a re-subscription repeats facts the state
//! machine already knows (it ignores them) but never loses one.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::{OutPoint, ScriptBuf};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::super::engine::EngineConfig;
use super::super::{
    Input, LoopOutContract, PaymentEvent, PaymentFailureReason, PaymentKind, SpendPath, read_spend,
    witness_shape,
};
use crate::domain::{BlockHeight, Sat, SwapHash};
use crate::lnd::types::{
    ConfRequest, ConfUpdate, PaymentFailure, PaymentRequest, PaymentStatus, PaymentUpdate,
    SpendRequest, SpendUpdate,
};
use crate::lnd::{LightningNode, NodeErrorKind};
use crate::store::SwapExtras;

/// Doubling delay between retries.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &EngineConfig) -> Backoff {
        Backoff {
            next: config.retry_initial,
            max: config.retry_max,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// lnd's view of a payment as the state machine's event.
fn payment_event(update: &PaymentUpdate) -> PaymentEvent {
    match &update.status {
        PaymentStatus::Initiated | PaymentStatus::InFlight => PaymentEvent::InFlight,
        PaymentStatus::Succeeded { .. } => PaymentEvent::Succeeded {
            amount: update.amount.to_sat_floor(),
            // Fees are paid in msat; round up so the recorded cost is never below the real one.
            routing_fee: Sat(update.fee.0.div_ceil(1000)),
        },
        PaymentStatus::Failed(f) => PaymentEvent::Failed {
            reason: match f {
                PaymentFailure::Timeout => PaymentFailureReason::Timeout,
                PaymentFailure::NoRoute => PaymentFailureReason::NoRoute,
                PaymentFailure::Error | PaymentFailure::Unknown => PaymentFailureReason::Error,
                PaymentFailure::IncorrectPaymentDetails => {
                    PaymentFailureReason::IncorrectPaymentDetails
                }
                PaymentFailure::InsufficientBalance => PaymentFailureReason::InsufficientBalance,
                PaymentFailure::Canceled => PaymentFailureReason::Canceled,
            },
        },
    }
}

/// Pays one of the swap's invoices (or attaches to the payment lnd already has for its hash)
/// and reports every update until the payment is final. With `track_only` (a swap that is
/// already over) it never pays, only follows a payment lnd already has.
pub(super) async fn payment(
    node: Arc<dyn LightningNode>,
    contract: Arc<LoopOutContract>,
    extras: SwapExtras,
    config: EngineConfig,
    kind: PaymentKind,
    track_only: bool,
    tx: mpsc::UnboundedSender<Input>,
) {
    let t = contract.terms();
    let (invoice, fee_limit, hash, chans, cltv_limit) = match kind {
        PaymentKind::Swap => (
            &t.swap_invoice,
            t.fee_limits.max_swap_routing_fee,
            t.swap_hash,
            t.outgoing_chan_set.clone(),
            Some(
                u32::try_from(extras.swap_min_final_cltv_delta)
                    .unwrap_or(u32::MAX)
                    .saturating_add(config.route_cltv_allowance),
            ),
        ),
        PaymentKind::Prepay => (
            &t.prepay_invoice,
            t.fee_limits.max_prepay_routing_fee,
            SwapHash(t.prepay_invoice.payment_hash),
            Vec::new(),
            None,
        ),
    };
    let request = PaymentRequest {
        invoice: invoice.bolt11.clone(),
        fee_limit: fee_limit.to_msat(),
        outgoing_chan_ids: chans,
        max_parts: config.max_parts.max(1),
        timeout: config.payment_timeout,
        cltv_limit,
        last_hop: None,
    };
    let mut backoff = Backoff::new(&config);
    loop {
        let started = if track_only {
            node.track_payment(hash).await
        } else {
            node.pay(&request).await
        };
        let stream = match started {
            Err(e) if track_only && e.kind == NodeErrorKind::NotFound => {
                tracing::info!(swap = %t_hash(&contract), ?kind,
                    "lnd has no payment for an unfinished invoice of a finished swap; \
                     it never left");
                return;
            }
            Ok(s) => Ok(s),
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                // pay refused for good: maybe lnd knows a payment under this hash anyway.
                match node.track_payment(hash).await {
                    Ok(s) => Ok(s),
                    Err(t) if t.kind == NodeErrorKind::NotFound => {
                        tracing::warn!(swap = %t_hash(&contract), ?kind, error = %e,
                            "lnd refused the payment and has none under its hash");
                        let _ = tx.send(Input::Payment {
                            kind,
                            event: PaymentEvent::Failed {
                                reason: PaymentFailureReason::Error,
                            },
                        });
                        return;
                    }
                    Err(t) => Err(t),
                }
            }
        };
        match stream {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(update) => {
                            let event = payment_event(&update);
                            let done = !matches!(event, PaymentEvent::InFlight);
                            if tx.send(Input::Payment { kind, event }).is_err() || done {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(swap = %t_hash(&contract), ?kind, error = %e,
                                "payment stream broke; attaching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(swap = %t_hash(&contract), ?kind, error = %e,
                "cannot start or track the payment; retrying"),
        }
        backoff.wait().await;
    }
}

fn t_hash(contract: &LoopOutContract) -> SwapHash {
    contract.terms().swap_hash
}

/// Watches for the first confirmed output paying exactly `pk_script` and its reorgs.
pub(super) async fn htlc(
    node: Arc<dyn LightningNode>,
    config: EngineConfig,
    pk_script: ScriptBuf,
    height_hint: BlockHeight,
    confirmations: u32,
    tx: mpsc::UnboundedSender<Input>,
) {
    let request = ConfRequest {
        txid: None,
        script: pk_script.clone(),
        num_confs: confirmations.max(1),
        height_hint,
    };
    let mut backoff = Backoff::new(&config);
    loop {
        match node.register_confirmations(&request).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let input = match item {
                        Ok(ConfUpdate::Confirmed {
                            tx: htlc_tx,
                            block_height,
                            ..
                        }) => {
                            let txid = htlc_tx.compute_txid();
                            let Some((vout, out)) = htlc_tx
                                .output
                                .iter()
                                .enumerate()
                                .find(|(_, o)| o.script_pubkey == pk_script)
                            else {
                                continue;
                            };
                            Input::HtlcConfirmed {
                                outpoint: OutPoint {
                                    txid,
                                    vout: u32::try_from(vout).unwrap_or(u32::MAX),
                                },
                                value: Sat(out.value.to_sat()),
                                height: block_height,
                                confirmations: request.num_confs,
                            }
                        }
                        Ok(ConfUpdate::Reorg) => Input::HtlcReorged,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTLC confirmation watch broke; re-registering");
                            break;
                        }
                    };
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the HTLC script; retrying"),
        }
        backoff.wait().await;
    }
}

/// Watches the HTLC outpoint for a confirmed spend, classifying it from the witness.
pub(super) async fn spend(
    node: Arc<dyn LightningNode>,
    config: EngineConfig,
    request: SpendRequest,
    destination: ScriptBuf,
    swap_hash: SwapHash,
    tx: mpsc::UnboundedSender<Input>,
) {
    let outpoint = request
        .outpoint
        .map_or_else(|| "<by script>".to_owned(), |o| o.to_string());
    let mut backoff = Backoff::new(&config);
    // Whether this watch reported a spend that no reorg notice has taken back yet.
    let mut vouched = false;
    loop {
        if vouched {
            // A lost stream may have hidden a reorg: the spend is no longer vouched for. The new
            // registration reports it again if the chain still has it; meanwhile the swap
            // sweeps.
            vouched = false;
            if tx.send(Input::SpendReorged).is_err() {
                return;
            }
        }
        match node.register_spend(&request).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let input = match item {
                        Ok(SpendUpdate::Spent {
                            spending_tx,
                            input_index,
                            height,
                            ..
                        }) => {
                            let witness = usize::try_from(input_index)
                                .ok()
                                .and_then(|i| spending_tx.input.get(i))
                                .map(|i| &i.witness);
                            let empty = bitcoin::Witness::new();
                            let witness = witness.unwrap_or(&empty);
                            let reading = read_spend(witness, swap_hash);
                            if !reading.shape_known {
                                // Never ignore a spend: the HTLC is gone either way.
                                tracing::warn!(%outpoint, txid = %spending_tx.compute_txid(),
                                    shape = ?witness_shape(witness), branch = ?reading.branch,
                                    "the HTLC was spent with a witness of unknown shape; \
                                     read by whether it carries the preimage");
                            }
                            let path = if reading.branch.is_success() {
                                let swept: u64 = spending_tx
                                    .output
                                    .iter()
                                    .filter(|o| o.script_pubkey == destination)
                                    .map(|o| o.value.to_sat())
                                    .sum();
                                SpendPath::Success {
                                    swept_value: Sat(swept),
                                }
                            } else {
                                SpendPath::Timeout
                            };
                            vouched = true;
                            Input::HtlcSpent {
                                txid: spending_tx.compute_txid(),
                                height,
                                path,
                            }
                        }
                        Ok(SpendUpdate::Reorg) => {
                            vouched = false;
                            Input::SpendReorged
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "HTLC spend watch broke; re-registering");
                            break;
                        }
                    };
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the HTLC spend; retrying"),
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use bitcoin::hashes::Hash as _;
    use bitcoin::{Amount, Transaction, TxIn, TxOut, Txid, Witness, absolute, transaction};

    use super::*;
    use crate::domain::Network;
    use crate::lnd::resilient::tests::Fake;

    fn key_path_spend(outpoint: OutPoint, destination: &ScriptBuf) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint,
                witness: Witness::from_slice(&[vec![1u8; 64]]),
                ..TxIn::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(90_000),
                script_pubkey: destination.clone(),
            }],
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Input>) -> Input {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("an input")
            .expect("the watch is running")
    }

    #[tokio::test(start_paused = true)]
    async fn a_spend_watch_that_registers_again_takes_back_the_spend_it_reported() {
        let fake = Fake::new(100);
        let outpoint = OutPoint {
            txid: Txid::from_byte_array([3; 32]),
            vout: 0,
        };
        let destination = ScriptBuf::from_bytes(vec![0x51]);
        let spending_tx = key_path_spend(outpoint, &destination);
        fake.st().spend_on_register = vec![SpendUpdate::Spent {
            outpoint,
            spending_tx: spending_tx.clone(),
            input_index: 0,
            height: BlockHeight(101),
        }];
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut config = EngineConfig::new(Network::Regtest);
        config.retry_initial = Duration::from_millis(10);
        config.retry_max = Duration::from_millis(10);
        tokio::spawn(spend(
            Arc::new(fake.clone()),
            config,
            SpendRequest {
                outpoint: Some(outpoint),
                script: ScriptBuf::new(),
                height_hint: BlockHeight(100),
            },
            destination,
            SwapHash([7; 32]),
            tx,
        ));
        assert_eq!(
            next(&mut rx).await,
            Input::HtlcSpent {
                txid: spending_tx.compute_txid(),
                height: BlockHeight(101),
                path: SpendPath::Success {
                    swept_value: Sat(90_000)
                },
            }
        );
        // The stream breaks; while it was down a reorg took the spend out, so the new
        // registration reports nothing. The watch must not keep vouching for the old spend.
        fake.st().spend_on_register = Vec::new();
        fake.crash();
        fake.up_after(Duration::from_millis(50));
        assert_eq!(next(&mut rx).await, Input::SpendReorged);
        // Once the spend is back in the chain, the watch reports it again.
        fake.st().spend_on_register = vec![SpendUpdate::Spent {
            outpoint,
            spending_tx: spending_tx.clone(),
            input_index: 0,
            height: BlockHeight(103),
        }];
        fake.crash();
        fake.up_after(Duration::from_millis(50));
        assert!(matches!(
            next(&mut rx).await,
            Input::HtlcSpent {
                height: BlockHeight(103),
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spend_of_unknown_shape_is_never_ignored() {
        use sha2::{Digest, Sha256};
        let preimage = [5u8; 32];
        let hash = SwapHash(Sha256::digest(preimage).into());
        let outpoint = OutPoint {
            txid: Txid::from_byte_array([4; 32]),
            vout: 1,
        };
        let destination = ScriptBuf::from_bytes(vec![0x51]);
        // Five witness elements: no shape the classifier knows.
        for (elements, ours) in [
            (
                vec![
                    vec![1u8; 64],
                    preimage.to_vec(),
                    vec![2; 40],
                    vec![3; 65],
                    vec![0x50, 1],
                ],
                true,
            ),
            (
                vec![
                    vec![1u8; 64],
                    vec![9; 32],
                    vec![2; 40],
                    vec![3; 65],
                    vec![0x50, 1],
                ],
                false,
            ),
        ] {
            let mut spending_tx = key_path_spend(outpoint, &destination);
            spending_tx.input[0].witness = Witness::from_slice(&elements);
            let fake = Fake::new(100);
            fake.st().spend_on_register = vec![SpendUpdate::Spent {
                outpoint,
                spending_tx: spending_tx.clone(),
                input_index: 0,
                height: BlockHeight(101),
            }];
            let (tx, mut rx) = mpsc::unbounded_channel();
            tokio::spawn(spend(
                Arc::new(fake),
                EngineConfig::new(Network::Regtest),
                SpendRequest {
                    outpoint: Some(outpoint),
                    script: ScriptBuf::new(),
                    height_hint: BlockHeight(100),
                },
                destination.clone(),
                hash,
                tx,
            ));
            let path = match next(&mut rx).await {
                Input::HtlcSpent { path, .. } => path,
                other => panic!("{other:?}"),
            };
            let expected = if ours {
                SpendPath::Success {
                    swept_value: Sat(90_000),
                }
            } else {
                SpendPath::Timeout
            };
            assert_eq!(path, expected, "preimage carried: {ours}");
        }
    }
}
