//! Table tests of the Loop In rules and a property test over random input sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use proptest::prelude::*;

use super::contract::fixtures::contract;
use super::diagram;
use super::*;
use crate::chain::SatPerKw;
use crate::domain::{BlockHeight, Sat};

fn out(n: u8) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: 1,
    }
}

/// Runs inputs in order, panicking on a rejection; returns the last transition.
fn run(c: &LoopInContract, p: &mut LoopInProgress, inputs: &[LoopInInput]) -> LoopInTransition {
    let mut last = None;
    for input in inputs {
        let t = step(c, p, input.clone())
            .unwrap_or_else(|e| panic!("{} rejected in {:?}: {e}", input.name(), p.state));
        *p = t.next.clone();
        last = Some(t);
    }
    last.unwrap()
}

fn has(t: &LoopInTransition, f: impl Fn(&LoopInAction) -> bool) -> bool {
    t.actions.iter().any(f)
}

/// From a fresh swap: resumed at height 1,000 with a funding estimate under the cap, so the
/// funding intent is saved (`HtlcPublished`, no transaction yet).
fn funding_intent(c: &LoopInContract, p: &mut LoopInProgress) {
    run(
        c,
        p,
        &[
            LoopInInput::Resumed {
                height: BlockHeight(1_000),
            },
            LoopInInput::FundingEstimate {
                height: BlockHeight(1_000),
                rate: SatPerKw(1_000),
                fee: Sat(800),
            },
        ],
    );
}

fn fund(c: &LoopInContract, p: &mut LoopInProgress) {
    funding_intent(c, p);
    run(
        c,
        p,
        &[
            LoopInInput::FundingPublished {
                txid: out(1).txid,
                fee: Sat(800),
            },
            LoopInInput::HtlcConfirmed {
                outpoint: out(1),
                value: c.terms().amount,
                height: BlockHeight(1_001),
                confirmations: 1,
            },
        ],
    );
}

#[test]
fn happy_path_funds_once_pushes_the_key_after_payment_and_succeeds() {
    let c = contract();
    let mut p = LoopInProgress::new();
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Resumed {
            height: BlockHeight(1_000),
        }],
    );
    assert_eq!(
        t.actions,
        vec![LoopInAction::EstimateFunding {
            height: BlockHeight(1_000)
        }]
    );
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::FundingEstimate {
            height: BlockHeight(1_000),
            rate: SatPerKw(1_000),
            fee: Sat(800),
        }],
    );
    assert_eq!(t.rule, LoopInRule::Fund);
    assert_eq!(p.state, LoopInState::HtlcPublished);
    assert!(has(&t, |a| matches!(
        a,
        LoopInAction::FundHtlc {
            rate: SatPerKw(1_000)
        }
    )));
    let t = run(
        &c,
        &mut p,
        &[
            LoopInInput::FundingPublished {
                txid: out(1).txid,
                fee: Sat(800),
            },
            LoopInInput::HtlcConfirmed {
                outpoint: out(1),
                value: c.terms().amount,
                height: BlockHeight(1_001),
                confirmations: 1,
            },
        ],
    );
    assert_eq!(p.state, LoopInState::HtlcConfirmed);
    assert!(has(&t, |a| matches!(a, LoopInAction::WatchSpend { .. })));
    assert!(!has(&t, |a| matches!(a, LoopInAction::PushKey)));
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::InvoiceSettled {
            amount_paid: c.invoice_amount(),
        }],
    );
    assert_eq!(p.state, LoopInState::InvoiceSettled);
    assert!(has(&t, |a| matches!(a, LoopInAction::PushKey)));
    // Pushed again every block until acknowledged.
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_002),
        }],
    );
    assert_eq!(t.actions, vec![LoopInAction::PushKey]);
    let t = run(
        &c,
        &mut p,
        &[
            LoopInInput::KeyPushAcked,
            LoopInInput::Block {
                height: BlockHeight(1_003),
            },
        ],
    );
    assert!(t.actions.is_empty());
    run(
        &c,
        &mut p,
        &[
            LoopInInput::HtlcSpent {
                txid: out(2).txid,
                height: BlockHeight(1_004),
                path: LoopInSpendPath::ServerClaim,
            },
            LoopInInput::SpendConfirmations { confirmations: 2 },
        ],
    );
    assert_eq!(p.state, LoopInState::InvoiceSettled, "not final yet");
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::SpendConfirmations { confirmations: 3 }],
    );
    assert_eq!(t.rule, LoopInRule::ClaimFinal);
    assert_eq!(p.state, LoopInState::Succeeded);
    assert_eq!(
        p.costs(c.terms().amount),
        LoopInCosts {
            server_sat: 1_500,
            onchain: Sat(800)
        }
    );
}

#[test]
fn funding_waits_while_the_fee_is_above_the_cap_and_fails_unspent_at_the_deadline() {
    let c = contract();
    let mut p = LoopInProgress::new();
    let t = run(
        &c,
        &mut p,
        &[
            LoopInInput::Resumed {
                height: BlockHeight(1_000),
            },
            LoopInInput::FundingEstimate {
                height: BlockHeight(1_000),
                rate: SatPerKw(50_000),
                fee: Sat(20_001),
            },
        ],
    );
    assert_eq!(t.rule, LoopInRule::FundingFeeAboveCap);
    assert!(t.actions.is_empty());
    assert_eq!(p.state, LoopInState::Initiated);
    // Exactly at the cap it funds.
    let mut q = p.clone();
    let t = run(
        &c,
        &mut q,
        &[LoopInInput::FundingEstimate {
            height: BlockHeight(1_000),
            rate: SatPerKw(40_000),
            fee: Sat(20_000),
        }],
    );
    assert_eq!(t.rule, LoopInRule::Fund);
    // An estimate for another height than the best one is stale.
    let mut q = p.clone();
    let t = run(
        &c,
        &mut q,
        &[LoopInInput::FundingEstimate {
            height: BlockHeight(999),
            rate: SatPerKw(1_000),
            fee: Sat(1),
        }],
    );
    assert_eq!(t.rule, LoopInRule::Ignored);
    // 10 blocks left: still asks; 9 left: fails, nothing spent, invoice cancelled.
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_190),
        }],
    );
    assert_eq!(t.rule, LoopInRule::WaitingForFundingEstimate);
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_191),
        }],
    );
    assert_eq!(p.state, LoopInState::FailedNotPublished);
    assert!(has(&t, |a| matches!(a, LoopInAction::CancelInvoice)));
    assert!(!has(&t, |a| matches!(a, LoopInAction::FundHtlc { .. })));
    assert_eq!(p.costs(c.terms().amount), LoopInCosts::default());
}

#[test]
fn a_restart_after_the_funding_intent_looks_the_wallet_up_and_never_funds_again() {
    let c = contract();
    let mut p = LoopInProgress::new();
    funding_intent(&c, &mut p);
    // Crash before SendOutputs answered: the stored state is HtlcPublished, no txid.
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Resumed {
            height: BlockHeight(1_005),
        }],
    );
    assert!(has(&t, |a| matches!(a, LoopInAction::FindFunding)));
    assert!(!has(&t, |a| matches!(a, LoopInAction::FundHtlc { .. })));
    // The wallet has it.
    let mut found = p.clone();
    run(
        &c,
        &mut found,
        &[LoopInInput::FundingPublished {
            txid: out(1).txid,
            fee: Sat(810),
        }],
    );
    assert_eq!(found.funding.map(|f| f.fee), Some(Sat(810)));
    // The wallet has nothing: failed, nothing spent.
    let t = run(&c, &mut p, &[LoopInInput::FundingFailed]);
    assert_eq!(p.state, LoopInState::FailedFunding);
    assert!(has(&t, |a| matches!(a, LoopInAction::CancelInvoice)));
    // A failure after a recorded publication is a contradiction.
    assert!(matches!(
        step(&c, &found, LoopInInput::FundingFailed),
        Err(LoopInRejected::FundingFailedAfterPublish(_))
    ));
}

#[test]
fn unpaid_at_the_expiry_it_sweeps_back_every_block_capped_and_cancels_the_invoice() {
    let c = contract();
    let mut p = LoopInProgress::new();
    fund(&c, &mut p);
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_199),
        }],
    );
    assert_eq!(t.rule, LoopInRule::Ignored, "one block before the expiry");
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_200),
        }],
    );
    assert_eq!(p.state, LoopInState::TimeoutSweeping);
    assert!(t.actions.contains(&LoopInAction::PublishTimeoutSweep {
        htlc: out(1),
        htlc_value: c.terms().amount,
        max_fee: Sat(20_000),
    }));
    let t = run(
        &c,
        &mut p,
        &[
            LoopInInput::SweepPublishFailed,
            LoopInInput::Block {
                height: BlockHeight(1_201),
            },
        ],
    );
    assert_eq!(t.rule, LoopInRule::Sweep);
    run(
        &c,
        &mut p,
        &[LoopInInput::HtlcSpent {
            txid: out(3).txid,
            height: BlockHeight(1_202),
            path: LoopInSpendPath::Timeout {
                swept_value: Sat(499_000),
            },
        }],
    );
    // Waiting for finality: no more sweeps.
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_203),
        }],
    );
    assert!(t.actions.is_empty());
    // Reorged out: sweep again.
    let t = run(&c, &mut p, &[LoopInInput::SpendReorged]);
    assert!(has(&t, |a| matches!(
        a,
        LoopInAction::PublishTimeoutSweep { .. }
    )));
    let t = run(
        &c,
        &mut p,
        &[
            LoopInInput::HtlcSpent {
                txid: out(3).txid,
                height: BlockHeight(1_204),
                path: LoopInSpendPath::Timeout {
                    swept_value: Sat(499_000),
                },
            },
            LoopInInput::SpendConfirmations { confirmations: 3 },
        ],
    );
    assert_eq!(p.state, LoopInState::FailedTimeout);
    assert!(has(&t, |a| matches!(a, LoopInAction::CancelInvoice)));
    assert_eq!(
        p.costs(c.terms().amount),
        LoopInCosts {
            server_sat: 0,
            onchain: Sat(800 + 1_000)
        }
    );
}

#[test]
fn a_payment_while_sweeping_stops_the_sweeps_and_the_expiry_then_succeeds() {
    let c = contract();
    let mut p = LoopInProgress::new();
    fund(&c, &mut p);
    run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_200),
        }],
    );
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::InvoiceSettled {
            amount_paid: Sat(498_600),
        }],
    );
    assert_eq!(p.state, LoopInState::InvoiceSettled);
    assert!(has(&t, |a| matches!(a, LoopInAction::PushKey)));
    // Already past the expiry: success on the next block, no sweep.
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_201),
        }],
    );
    assert_eq!(p.state, LoopInState::Succeeded);
    assert!(!has(&t, |a| matches!(
        a,
        LoopInAction::PublishTimeoutSweep { .. }
    )));
    // Overpaid by 100: the server's take is smaller.
    assert_eq!(p.costs(c.terms().amount).server_sat, 1_400);
}

#[test]
fn a_wrong_value_htlc_waits_for_the_expiry_and_is_taken_back() {
    let c = contract();
    let mut p = LoopInProgress::new();
    funding_intent(&c, &mut p);
    run(
        &c,
        &mut p,
        &[LoopInInput::HtlcConfirmed {
            outpoint: out(1),
            value: Sat(499_999),
            height: BlockHeight(1_001),
            confirmations: 1,
        }],
    );
    assert_eq!(p.state, LoopInState::IncorrectHtlcAmount);
    run(
        &c,
        &mut p,
        &[
            LoopInInput::Block {
                height: BlockHeight(1_200),
            },
            LoopInInput::HtlcSpent {
                txid: out(3).txid,
                height: BlockHeight(1_201),
                path: LoopInSpendPath::Timeout {
                    swept_value: Sat(499_000),
                },
            },
            LoopInInput::SpendConfirmations { confirmations: 3 },
        ],
    );
    assert_eq!(p.state, LoopInState::FailedIncorrectHtlcAmtSwept);
}

#[test]
fn an_output_to_the_script_from_another_transaction_is_not_taken_for_the_htlc() {
    // §11 row 14: anyone (the server) can pay the HTLC's script. Once our funding transaction
    // is known the watch looks in it alone, and an output of another transaction is ignored,
    // so a decoy can neither fail the swap nor hide the real HTLC from the timeout sweep.
    let c = contract();
    let mut p = LoopInProgress::new();
    funding_intent(&c, &mut p);
    let t = step(
        &c,
        &p,
        LoopInInput::FundingPublished {
            txid: out(1).txid,
            fee: Sat(800),
        },
    )
    .unwrap();
    assert!(has(&t, |a| matches!(
        a,
        LoopInAction::WatchHtlc { funding_txid: Some(txid), .. } if *txid == out(1).txid
    )));
    p = t.next;
    let decoy = step(
        &c,
        &p,
        LoopInInput::HtlcConfirmed {
            outpoint: out(9),
            value: Sat(10_000),
            height: BlockHeight(1_001),
            confirmations: 1,
        },
    )
    .unwrap();
    assert_eq!(decoy.next.state, LoopInState::HtlcPublished);
    assert_eq!(decoy.next.htlc, None);
    run(
        &c,
        &mut p,
        &[LoopInInput::HtlcConfirmed {
            outpoint: out(1),
            value: c.terms().amount,
            height: BlockHeight(1_001),
            confirmations: 1,
        }],
    );
    assert_eq!(p.state, LoopInState::HtlcConfirmed);
    assert_eq!(p.htlc.map(|h| h.outpoint), Some(out(1)));
}

#[test]
fn an_htlc_confirming_after_the_expiry_is_swept_at_once() {
    let c = contract();
    let mut p = LoopInProgress::new();
    funding_intent(&c, &mut p);
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::HtlcConfirmed {
            outpoint: out(1),
            value: c.terms().amount,
            height: BlockHeight(1_200),
            confirmations: 1,
        }],
    );
    assert_eq!(p.state, LoopInState::TimeoutSweeping);
    assert!(has(&t, |a| matches!(
        a,
        LoopInAction::PublishTimeoutSweep { .. }
    )));
}

#[test]
fn resuming_a_sweep_forgets_the_stored_spend_and_sweeps_again() {
    let c = contract();
    let mut p = LoopInProgress::new();
    fund(&c, &mut p);
    run(
        &c,
        &mut p,
        &[
            LoopInInput::Block {
                height: BlockHeight(1_200),
            },
            LoopInInput::HtlcSpent {
                txid: out(3).txid,
                height: BlockHeight(1_201),
                path: LoopInSpendPath::Timeout {
                    swept_value: Sat(499_000),
                },
            },
        ],
    );
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Resumed {
            height: BlockHeight(1_210),
        }],
    );
    assert!(p.spend.is_none());
    assert!(has(&t, |a| matches!(
        a,
        LoopInAction::PublishTimeoutSweep { .. }
    )));
    assert!(has(&t, |a| matches!(a, LoopInAction::WatchSpend { .. })));
}

#[test]
fn blocks_deepen_a_spend_to_finality() {
    let c = contract();
    let mut p = LoopInProgress::new();
    fund(&c, &mut p);
    run(
        &c,
        &mut p,
        &[
            LoopInInput::Block {
                height: BlockHeight(1_200),
            },
            LoopInInput::HtlcSpent {
                txid: out(3).txid,
                height: BlockHeight(1_201),
                path: LoopInSpendPath::Timeout {
                    swept_value: Sat(499_000),
                },
            },
            LoopInInput::Block {
                height: BlockHeight(1_202),
            },
        ],
    );
    assert_eq!(
        p.state,
        LoopInState::TimeoutSweeping,
        "2 of 3 confirmations"
    );
    let t = run(
        &c,
        &mut p,
        &[LoopInInput::Block {
            height: BlockHeight(1_203),
        }],
    );
    assert_eq!(p.state, LoopInState::FailedTimeout);
    assert!(has(&t, |a| matches!(a, LoopInAction::CancelInvoice)));
}

#[test]
fn contradictions_are_rejected() {
    let c = contract();
    let p = LoopInProgress::new();
    assert_eq!(
        step(&c, &p, LoopInInput::FundingFailed),
        Err(LoopInRejected::FundingBeforeIntent)
    );
    assert_eq!(
        step(&c, &p, LoopInInput::KeyPushAcked),
        Err(LoopInRejected::KeyAckBeforeSettlement)
    );
    let mut q = LoopInProgress::new();
    fund(&c, &mut q);
    assert_eq!(
        step(&c, &q, LoopInInput::KeyPushAcked),
        Err(LoopInRejected::KeyAckBeforeSettlement)
    );
    assert!(matches!(
        step(
            &c,
            &q,
            LoopInInput::HtlcConfirmed {
                outpoint: out(9),
                value: Sat(1),
                height: BlockHeight(1_002),
                confirmations: 0
            }
        ),
        Err(LoopInRejected::ZeroConfirmations { .. })
    ));
}

fn any_input() -> impl Strategy<Value = LoopInInput> {
    let c = diagram::sample_contract().unwrap();
    let alphabet = diagram::alphabet(&c);
    prop::sample::select(alphabet)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever the inputs: the internal key is asked for only after an `InvoiceSettled` input
    /// was accepted and only from a saved progress whose gate opens; the HTLC is funded at most
    /// once; a terminal swap never acts.
    #[test]
    fn no_input_sequence_pushes_the_key_before_settlement_or_funds_twice(
        inputs in prop::collection::vec(any_input(), 1..60)
    ) {
        let c = diagram::sample_contract().unwrap();
        let key = InternalKey::from_bytes([7; 32]).unwrap();
        let mut p = LoopInProgress::new();
        let mut settled_seen = false;
        let mut fundings = 0;
        for input in inputs {
            let was_terminal = p.state.is_terminal();
            let is_settlement = matches!(input, LoopInInput::InvoiceSettled { .. });
            let Ok(t) = step(&c, &p, input) else { continue };
            if is_settlement {
                settled_seen = true;
            }
            for action in &t.actions {
                match action {
                    LoopInAction::PushKey => {
                        prop_assert!(settled_seen, "PushKey before any settlement");
                        prop_assert!(t.next.release_internal_key(&key).is_ok(),
                            "PushKey from {:?} whose gate is shut", t.next.state);
                    }
                    LoopInAction::FundHtlc { .. } => fundings += 1,
                    LoopInAction::PublishTimeoutSweep { .. } => {
                        prop_assert!(!t.next.invoice_settled(), "sweeping back a paid swap");
                    }
                    _ => {}
                }
            }
            prop_assert!(fundings <= 1, "funded twice");
            if was_terminal {
                prop_assert!(t.actions.is_empty(), "a terminal swap acted");
            }
            if !t.next.invoice_settled() {
                prop_assert!(t.next.release_internal_key(&key).is_err());
            }
            p = t.next;
        }
    }
}
