//! Table-driven and property tests of the Loop Out state machine.
//!
//! The fixture contract: amount 1 000 000 sat, initiation 1 000, expiry 1 100, margin 20 (reveal
//! deadline 1 080), 2 HTLC confirmations, finality 3, the whole miner-fee cap offered within 10
//! blocks of the expiry; max_miner_fee 50 000 sat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use proptest::prelude::*;

use super::contract::fixtures::contract;
use super::*;
use crate::chain::SatPerKw;
use crate::chain::fees::{fee_for, max_sweep_weight};
use crate::domain::{BlockHeight, Ppm, Sat};

const AMT: Sat = Sat(1_000_000);
const DEADLINE: u32 = 1_080;
const EXPIRY: u32 = 1_100;

fn op(n: u8) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: 1,
    }
}

fn txid(n: u8) -> Txid {
    Txid::from_byte_array([n; 32])
}

fn block(h: u32) -> Input {
    Input::Block {
        height: BlockHeight(h),
    }
}

fn resumed(h: u32) -> Input {
    Input::Resumed {
        height: BlockHeight(h),
    }
}

fn htlc(n: u8, value: Sat, height: u32, confirmations: u32) -> Input {
    Input::HtlcConfirmed {
        outpoint: op(n),
        value,
        height: BlockHeight(height),
        confirmations,
    }
}

fn paid(kind: PaymentKind, amount: u64, fee: u64) -> Input {
    Input::Payment {
        kind,
        event: PaymentEvent::Succeeded {
            amount: Sat(amount),
            routing_fee: Sat(fee),
        },
    }
}

fn failed(kind: PaymentKind) -> Input {
    Input::Payment {
        kind,
        event: PaymentEvent::Failed {
            reason: PaymentFailureReason::NoRoute,
        },
    }
}

/// Feeds `inputs` from a new swap; returns the final progress and the last transition. Like
/// the driver, it answers every `EstimateSweepFee` with an estimate (the relay floor, which the
/// fixture's `max_miner_fee` affords), so a reveal is the transition that follows it.
fn run(inputs: &[Input]) -> (SwapProgress, Transition) {
    run_at(inputs, SatPerKw::FLOOR)
}

/// [`run`] with lnd estimating `rate` for every sweep.
fn run_at(inputs: &[Input], rate: SatPerKw) -> (SwapProgress, Transition) {
    let c = contract();
    let mut progress = SwapProgress::new();
    let mut last = None;
    for input in inputs {
        let mut t = step(&c, &progress, input.clone()).unwrap();
        let asked = t.actions.iter().find_map(|a| match a {
            Action::EstimateSweepFee { height, .. } => Some(*height),
            _ => None,
        });
        if let Some(height) = asked {
            progress = t.next.clone();
            t = step(&c, &progress, Input::SweepFeeEstimate { height, rate }).unwrap();
        }
        progress = t.next.clone();
        last = Some(t);
    }
    (progress, last.unwrap())
}

/// A swap that revealed at height 1 010 with HTLC `op(1)` worth `AMT + 500`.
fn revealed() -> Vec<Input> {
    vec![resumed(1_000), htlc(1, AMT + Sat(500), 1_009, 2)]
}

fn has_sweep(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::PublishSweep { .. }))
}

fn has_push(actions: &[Action]) -> bool {
    actions.contains(&Action::PushPreimage)
}

#[test]
fn reveal_height_boundary() {
    // (HTLC conf height, tip after the second confirmation, expected state)
    let table = [
        (1_060, 1_061, SwapState::PreimageRevealed),
        (1_077, 1_078, SwapState::PreimageRevealed),
        // tip = expiry − margin − 1: the last safe height.
        (1_078, 1_079, SwapState::PreimageRevealed),
        // tip = expiry − margin exactly: too late.
        (1_079, 1_080, SwapState::FailedTimeout),
        (1_085, 1_086, SwapState::FailedTimeout),
    ];
    for (conf, tip, expected) in table {
        let (p, t) = run(&[resumed(1_000), htlc(1, AMT, conf, 1), block(tip)]);
        assert_eq!(p.state, expected, "conf {conf} tip {tip}");
        assert_eq!(
            has_push(&t.actions),
            expected == SwapState::PreimageRevealed
        );
        // Reported directly with 2 confirmations, the same boundary holds.
        let (p, _) = run(&[resumed(1_000), htlc(1, AMT, conf, 2)]);
        assert_eq!(p.state, expected, "direct conf {conf}");
    }
}

#[test]
fn waiting_fails_at_the_reveal_deadline() {
    let (p, t) = run(&[resumed(1_000), block(DEADLINE - 1)]);
    assert_eq!((p.state, t.actions.len()), (SwapState::Initiated, 0));
    let (p, t) = run(&[resumed(1_000), block(DEADLINE)]);
    assert_eq!(p.state, SwapState::FailedTimeout);
    assert_eq!(t.rule, Rule::RevealDeadlineReached);
    assert_eq!(
        t.actions,
        vec![
            Action::CancelWithServer {
                reason: CancelReason::RevealDeadlineReached
            },
            Action::Notify {
                state: SwapState::FailedTimeout
            },
        ]
    );
    let (p, _) = run(&[resumed(DEADLINE)]);
    assert_eq!(p.state, SwapState::FailedTimeout);
}

#[test]
fn confirmation_boundary() {
    // One confirmation short: nothing leaves.
    let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1)]);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::Initiated, Rule::WaitingForConfirmations)
    );
    assert!(t.actions.is_empty());
    let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1), block(1_010)]);
    assert_eq!(p.state, SwapState::Initiated);
    assert!(t.actions.is_empty());
    // The next block makes two.
    let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1), block(1_011)]);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::PreimageRevealed, Rule::Reveal)
    );
    assert_eq!(p.revealed_at, Some(BlockHeight(1_011)));
    assert_eq!(
        t.actions,
        vec![
            Action::WatchSpend {
                outpoint: op(1),
                height_hint: BlockHeight(1_010)
            },
            Action::PushPreimage,
            Action::PublishSweep {
                htlc: op(1),
                htlc_value: AMT,
                blocks_left: EXPIRY - 1_011,
                // Just revealed: the needed rate, nothing of the schedule yet.
                fee_share: Ppm(0),
            },
            Action::Notify {
                state: SwapState::PreimageRevealed
            },
        ]
    );
}

#[test]
fn value_boundary() {
    for (value, expected) in [
        (AMT - Sat(1), SwapState::FailedInsufficientValue),
        (AMT, SwapState::PreimageRevealed),
        (AMT + Sat(1), SwapState::PreimageRevealed),
    ] {
        let (p, t) = run(&[resumed(1_000), htlc(1, value, 1_010, 2)]);
        assert_eq!(p.state, expected, "value {value}");
        if expected == SwapState::FailedInsufficientValue {
            assert_eq!(
                t.actions,
                vec![
                    Action::CancelWithServer {
                        reason: CancelReason::InsufficientHtlcValue { value }
                    },
                    Action::Notify { state: expected },
                ]
            );
        }
    }
}

#[test]
fn a_stored_htlc_under_the_amount_never_reveals() {
    // The reveal re-checks the value itself, so even a progress row written by another version
    // (or edited by hand) cannot lead to a reveal for a short HTLC.
    let c = contract();
    let stored = SwapProgress {
        htlc: Some(HtlcOutput {
            outpoint: op(1),
            value: AMT - Sat(1),
            conf_height: Some(BlockHeight(1_010)),
        }),
        ..SwapProgress::new()
    };
    let t = step(&c, &stored, block(1_020)).unwrap();
    assert_eq!(t.next.state, SwapState::Initiated);
    assert!(t.actions.is_empty());
}

#[test]
fn payment_failure_before_reveal_cancels_after_reveal_is_recorded() {
    for kind in [PaymentKind::Swap, PaymentKind::Prepay] {
        let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1), failed(kind)]);
        assert_eq!(p.state, SwapState::FailedOffchain);
        assert_eq!(
            t.actions[0],
            Action::CancelWithServer {
                reason: CancelReason::PaymentFailed {
                    kind,
                    reason: PaymentFailureReason::NoRoute
                },
            }
        );

        let mut inputs = revealed();
        inputs.push(failed(kind));
        let (p, t) = run(&inputs);
        assert_eq!(p.state, SwapState::PreimageRevealed);
        assert!(t.actions.is_empty());
        assert!(p.payment(kind).is_final());
        // ... and the swap keeps sweeping.
        inputs.push(block(1_011));
        let (_, t) = run(&inputs);
        assert!(has_sweep(&t.actions));
    }
}

#[test]
fn after_reveal_every_block_sweeps_and_pushes_until_the_swap_payment_settles() {
    let mut inputs = revealed();
    // Revealed at 1 010: the schedule offers a growing share of max_miner_fee, all of it from
    // 10 blocks before the expiry (1 090).
    for (h, share) in [(1_011, 12_500), (1_050, 500_000), (1_089, 987_500)] {
        inputs.push(block(h));
        let (_, t) = run(&inputs);
        assert_eq!(t.rule, Rule::Sweep);
        assert!(has_push(&t.actions), "push at {h}");
        assert!(t.actions.contains(&Action::PublishSweep {
            htlc: op(1),
            htlc_value: AMT + Sat(500),
            blocks_left: EXPIRY - h,
            fee_share: Ppm(share),
        }));
    }
    inputs.push(paid(PaymentKind::Swap, 1_002_000, 30));
    // Near the expiry the whole cap is offered; past it, the swap still sweeps.
    for (h, blocks_left) in [(1_090, 10), (1_100, 0), (1_200, 0)] {
        inputs.push(block(h));
        let (p, t) = run(&inputs);
        assert_eq!(p.state, SwapState::PreimageRevealed);
        assert!(!has_push(&t.actions));
        assert_eq!(
            t.actions,
            vec![Action::PublishSweep {
                htlc: op(1),
                htlc_value: AMT + Sat(500),
                blocks_left,
                fee_share: Ppm(1_000_000),
            }]
        );
    }
}

#[test]
fn success_needs_finality_and_both_payments_then_records_costs() {
    let mut inputs = revealed();
    inputs.push(paid(PaymentKind::Prepay, 3_000, 2));
    inputs.push(Input::HtlcSpent {
        txid: txid(9),
        height: BlockHeight(1_011),
        path: SpendPath::Success {
            swept_value: AMT + Sat(500) - Sat(700),
        },
    });
    let (p, t) = run(&inputs);
    assert_eq!(p.state, SwapState::SpendConfirming);
    assert_eq!(
        t.actions,
        vec![Action::Notify {
            state: SwapState::SpendConfirming
        }]
    );
    inputs.push(Input::SpendConfirmations { confirmations: 2 });
    assert_eq!(run(&inputs).0.state, SwapState::SpendConfirming);
    inputs.push(Input::SpendConfirmations { confirmations: 3 });
    let (p, t) = run(&inputs);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::SpendConfirming, Rule::AwaitingPayments)
    );
    inputs.push(paid(PaymentKind::Swap, 1_002_000, 30));
    let (p, t) = run(&inputs);
    assert_eq!((p.state, t.rule), (SwapState::Succeeded, Rule::SweepFinal));
    assert_eq!(
        t.actions,
        vec![Action::Notify {
            state: SwapState::Succeeded
        }]
    );
    // Paid 1,005,000 off chain, swept 999,800 from an HTLC of 1,000,500: the node is down
    // 5,200, the 500 the server put on chain above the amount counting as received.
    assert_eq!(
        p.costs(),
        SwapCosts {
            server_sat: 4_500,
            onchain: Sat(700),
            offchain: Sat(32),
        }
    );
}

#[test]
fn spend_depth_also_follows_blocks() {
    let mut inputs = revealed();
    inputs.push(paid(PaymentKind::Prepay, 3_000, 2));
    inputs.push(paid(PaymentKind::Swap, 1_002_000, 30));
    inputs.push(Input::HtlcSpent {
        txid: txid(9),
        height: BlockHeight(1_011),
        path: SpendPath::Success { swept_value: AMT },
    });
    inputs.push(block(1_012));
    assert_eq!(run(&inputs).0.state, SwapState::SpendConfirming);
    inputs.push(block(1_013));
    assert_eq!(run(&inputs).0.state, SwapState::Succeeded);
}

#[test]
fn timeout_spend_after_reveal_is_the_only_failure_and_costs_show_the_loss() {
    let mut inputs = revealed();
    inputs.push(paid(PaymentKind::Prepay, 3_000, 2));
    inputs.push(paid(PaymentKind::Swap, 1_002_000, 30));
    inputs.push(block(1_101));
    inputs.push(Input::HtlcSpent {
        txid: txid(10),
        height: BlockHeight(1_101),
        path: SpendPath::Timeout,
    });
    let (p, _) = run(&inputs);
    assert_eq!(p.state, SwapState::SpendConfirming);
    // While the server's spend is unconfirmed-final nothing is pushed; a reorg would resume.
    inputs.push(block(1_102));
    let (_, t) = run(&inputs);
    assert!(t.actions.is_empty());
    inputs.push(block(1_103));
    let (p, t) = run(&inputs);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::FailedSweepTimeout, Rule::TimeoutSpendFinal)
    );
    assert_eq!(
        p.costs(),
        SwapCosts {
            server_sat: 1_005_000,
            onchain: Sat::ZERO,
            offchain: Sat(32),
        }
    );
}

#[test]
fn reorg_before_reveal_goes_back_to_waiting() {
    let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1), Input::HtlcReorged]);
    assert_eq!((p.state, p.htlc), (SwapState::Initiated, None));
    assert!(matches!(t.actions.as_slice(), [Action::WatchHtlc { .. }]));
    let (p, t) = run(&[
        resumed(1_000),
        htlc(1, AMT, 1_010, 1),
        Input::HtlcReorged,
        block(1_011),
    ]);
    assert_eq!(p.state, SwapState::Initiated);
    assert!(t.actions.is_empty());
}

#[test]
fn reorgs_after_reveal_keep_sweeping() {
    let mut inputs = revealed();
    inputs.push(Input::HtlcReorged);
    inputs.push(block(1_011));
    let (p, t) = run(&inputs);
    assert_eq!(p.state, SwapState::PreimageRevealed);
    assert!(has_sweep(&t.actions));
    // A different output paying our script replaces the reorged one, whatever its value.
    inputs.push(htlc(2, Sat(10), 1_012, 1));
    let (p, t) = run(&inputs);
    assert_eq!(t.rule, Rule::HtlcReplaced);
    assert_eq!(p.htlc.map(|h| h.outpoint), Some(op(2)));
    assert!(has_sweep(&t.actions));

    let mut inputs = revealed();
    inputs.push(Input::HtlcSpent {
        txid: txid(9),
        height: BlockHeight(1_011),
        path: SpendPath::Success { swept_value: AMT },
    });
    inputs.push(Input::SpendReorged);
    let (p, t) = run(&inputs);
    assert_eq!((p.state, p.spend), (SwapState::PreimageRevealed, None));
    assert!(has_sweep(&t.actions) && has_push(&t.actions));
}

#[test]
fn a_second_output_does_not_replace_a_confirmed_htlc() {
    let mut inputs = revealed();
    inputs.push(htlc(2, AMT, 1_012, 2));
    let (p, t) = run(&inputs);
    assert_eq!(
        (t.rule, p.htlc.map(|h| h.outpoint)),
        (Rule::Ignored, Some(op(1)))
    );
}

#[test]
fn resume_reemits_what_the_stored_state_requires() {
    let c = contract();
    // A new swap: pay both, watch the script.
    let t = step(&c, &SwapProgress::new(), resumed(1_000)).unwrap();
    assert_eq!(
        t.actions,
        vec![
            Action::DispatchPayment {
                kind: PaymentKind::Swap
            },
            Action::DispatchPayment {
                kind: PaymentKind::Prepay
            },
            Action::WatchHtlc {
                pk_script: c.terms().htlc_pk_script.clone(),
                height_hint: BlockHeight(1_000),
                confirmations: 2,
            },
        ]
    );
    // Resuming twice asks for the same things: every action is safe to repeat.
    let again = step(&c, &t.next, resumed(1_000)).unwrap();
    assert_eq!(again.actions, t.actions);

    let mut inputs = revealed();
    inputs.push(paid(PaymentKind::Prepay, 3_000, 2));
    let (p, _) = run(&inputs);
    let t = step(&c, &p, resumed(1_020)).unwrap();
    assert_eq!(t.next.state, SwapState::PreimageRevealed);
    assert_eq!(
        t.actions[0],
        Action::DispatchPayment {
            kind: PaymentKind::Swap
        }
    );
    assert!(matches!(t.actions[1], Action::WatchHtlc { .. }));
    assert!(matches!(t.actions[2], Action::WatchSpend { .. }));
    assert!(has_push(&t.actions) && has_sweep(&t.actions));
    let again = step(&c, &t.next, resumed(1_020)).unwrap();
    assert_eq!(again.actions, t.actions);
}

#[test]
fn resume_with_a_stored_spend_sweeps_until_the_chain_reports_it_again() {
    let c = contract();
    let spent = Input::HtlcSpent {
        txid: txid(9),
        height: BlockHeight(1_011),
        path: SpendPath::Success { swept_value: AMT },
    };
    let mut inputs = revealed();
    inputs.push(paid(PaymentKind::Prepay, 3_000, 2));
    inputs.push(paid(PaymentKind::Swap, 1_002_000, 30));
    inputs.push(spent.clone());
    assert_eq!(run(&inputs).0.state, SwapState::SpendConfirming);
    // Restarted far above the stored spend: heights alone would call it final, but the sweep
    // may have been reorged out while the daemon was down.
    inputs.push(resumed(1_030));
    let (p, t) = run(&inputs);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::PreimageRevealed, Rule::SpendUnverified)
    );
    assert_eq!(p.spend, None);
    assert!(has_sweep(&t.actions), "a vanished sweep is swept again");
    assert!(t.actions.contains(&Action::WatchSpend {
        outpoint: op(1),
        height_hint: BlockHeight(1_009),
    }));
    // Blocks without a report from the chain keep sweeping and never succeed.
    inputs.push(block(1_031));
    let (p, t) = run(&inputs);
    assert_eq!(p.state, SwapState::PreimageRevealed);
    assert!(has_sweep(&t.actions));
    // The re-registered watch reports the spend still confirmed: final at once.
    inputs.push(spent);
    assert_eq!(run(&inputs).0.state, SwapState::Succeeded);
    // A timeout spend stored at a restart is re-checked the same way.
    let mut inputs = revealed();
    inputs.push(Input::HtlcSpent {
        txid: txid(8),
        height: BlockHeight(1_011),
        path: SpendPath::Timeout,
    });
    let (p, _) = run(&inputs);
    let t = step(&c, &p, resumed(1_040)).unwrap();
    assert_eq!(t.next.state, SwapState::PreimageRevealed);
}

#[test]
fn resume_before_reveal_forgets_the_htlc_so_a_missed_reorg_cannot_reveal() {
    let (p, t) = run(&[resumed(1_000), htlc(1, AMT, 1_010, 1), resumed(1_011)]);
    assert_eq!(p.htlc, None);
    assert!(!has_push(&t.actions));
    let (p, _) = run(&[
        resumed(1_000),
        htlc(1, AMT, 1_010, 1),
        resumed(1_011),
        block(1_012),
    ]);
    assert_eq!(p.state, SwapState::Initiated);
}

#[test]
fn impossible_inputs_are_rejected() {
    let c = contract();
    let fresh = SwapProgress::new();
    let spent = Input::HtlcSpent {
        txid: txid(9),
        height: BlockHeight(1_011),
        path: SpendPath::Success { swept_value: AMT },
    };
    assert_eq!(
        step(&c, &fresh, spent),
        Err(Rejected::SuccessSpendBeforeReveal)
    );
    assert_eq!(
        step(&c, &fresh, Input::ServerPushAcked),
        Err(Rejected::PushAckBeforeReveal)
    );
    assert_eq!(
        step(&c, &fresh, htlc(1, AMT, 1_010, 0)),
        Err(Rejected::ZeroConfirmations {
            input: "HtlcConfirmed"
        })
    );
    let (p, _) = run(&[resumed(1_000), paid(PaymentKind::Prepay, 3_000, 2)]);
    assert!(matches!(
        step(&c, &p, failed(PaymentKind::Prepay)),
        Err(Rejected::ConflictingPaymentResult {
            kind: PaymentKind::Prepay,
            ..
        })
    ));
    // A repeated identical result and a late in-flight update are fine and change nothing.
    let t = step(&c, &p, paid(PaymentKind::Prepay, 3_000, 2)).unwrap();
    assert_eq!((t.rule, &t.next), (Rule::Ignored, &p));
    let in_flight = Input::Payment {
        kind: PaymentKind::Prepay,
        event: PaymentEvent::InFlight,
    };
    assert_eq!(step(&c, &p, in_flight).unwrap().next, p);
}

#[test]
fn terminal_states_absorb_every_input() {
    let c = diagram::sample_contract().unwrap();
    for state in SwapState::ALL.into_iter().filter(|s| s.is_terminal()) {
        let progress = SwapProgress {
            state,
            ..SwapProgress::new()
        };
        for input in diagram::alphabet(&c) {
            let t = step(&c, &progress, input.clone()).unwrap();
            assert_eq!(t.next.state, state, "{state:?} on {input:?}");
            assert!(t.actions.is_empty(), "{state:?} acted on {input:?}");
        }
    }
}

#[test]
fn no_reveal_while_the_needed_sweep_does_not_fit_the_miner_fee_cap() {
    let c = contract();
    let max_fee = c.terms().fee_limits.max_miner_fee;
    // The highest estimate the heaviest sweep still affords, and one sat/kw more.
    let fits = SatPerKw(max_fee.0 * 1_000 / max_sweep_weight().to_wu());
    assert!(fee_for(max_sweep_weight(), fits) <= max_fee);
    let too_much = SatPerKw(fits.0 + 1);
    assert!(fee_for(max_sweep_weight(), too_much) > max_fee);

    // A good, deep HTLC: the reveal first asks for the fee estimate at this height.
    let mut p = SwapProgress::new();
    for input in [resumed(1_000), htlc(1, AMT, 1_009, 2)] {
        p = step(&c, &p, input).unwrap().next;
    }
    let t = step(&c, &p, block(1_010)).unwrap();
    assert_eq!(t.rule, Rule::WaitingForFeeEstimate);
    assert_eq!(
        t.actions,
        vec![Action::EstimateSweepFee {
            height: BlockHeight(1_010),
            blocks_left: 90
        }]
    );
    assert_eq!(t.next.state, SwapState::Initiated);
    let p = t.next;
    // Too expensive: no reveal, nothing leaves.
    let t = step(
        &c,
        &p,
        Input::SweepFeeEstimate {
            height: BlockHeight(1_010),
            rate: too_much,
        },
    )
    .unwrap();
    assert_eq!(
        (t.next.state, t.rule),
        (SwapState::Initiated, Rule::SweepFeeAboveCap)
    );
    assert!(t.actions.is_empty());
    // An estimate asked at an older height decides nothing: it is asked again for this one.
    let t = step(
        &c,
        &p,
        Input::SweepFeeEstimate {
            height: BlockHeight(1_009),
            rate: fits,
        },
    )
    .unwrap();
    assert_eq!(
        (t.next.state, t.rule),
        (SwapState::Initiated, Rule::WaitingForFeeEstimate)
    );
    assert_eq!(
        t.actions,
        vec![Action::EstimateSweepFee {
            height: BlockHeight(1_010),
            blocks_left: 90
        }]
    );
    // At the highest affordable estimate: reveal, sweep at once.
    let t = step(
        &c,
        &p,
        Input::SweepFeeEstimate {
            height: BlockHeight(1_010),
            rate: fits,
        },
    )
    .unwrap();
    assert_eq!(
        (t.next.state, t.rule),
        (SwapState::PreimageRevealed, Rule::Reveal)
    );
    assert!(has_sweep(&t.actions) && has_push(&t.actions));

    // Fees that never come down: the swap fails at the reveal deadline without revealing.
    let (p, t) = run_at(
        &[resumed(1_000), htlc(1, AMT, 1_009, 2), block(1_050)],
        too_much,
    );
    assert_eq!(
        (p.state, t.rule),
        (SwapState::Initiated, Rule::SweepFeeAboveCap)
    );
    let (p, _) = run_at(
        &[resumed(1_000), htlc(1, AMT, 1_009, 2), block(DEADLINE)],
        too_much,
    );
    assert_eq!(p.state, SwapState::FailedTimeout);
    assert_eq!(p.revealed_at, None);
    // Estimates after the reveal change nothing.
    let mut inputs = revealed();
    inputs.push(Input::SweepFeeEstimate {
        height: BlockHeight(1_010),
        rate: too_much,
    });
    let (p, t) = run(&inputs);
    assert_eq!(
        (p.state, t.rule),
        (SwapState::PreimageRevealed, Rule::Ignored)
    );
}

// ---------------------------------------------------------------------------------------------
// Properties over random input sequences.

fn height() -> impl Strategy<Value = u32> {
    prop_oneof![
        990u32..1_010,
        (DEADLINE - 4)..(DEADLINE + 2),
        (EXPIRY - 12)..(EXPIRY + 6),
        1_000u32..1_200,
    ]
}

fn payment_event() -> impl Strategy<Value = PaymentEvent> {
    prop_oneof![
        Just(PaymentEvent::InFlight),
        (0u64..3).prop_map(|a| PaymentEvent::Succeeded {
            amount: Sat(1_000 + a),
            routing_fee: Sat(a)
        }),
        Just(PaymentEvent::Failed {
            reason: PaymentFailureReason::Timeout
        }),
    ]
}

fn kind() -> impl Strategy<Value = PaymentKind> {
    prop_oneof![Just(PaymentKind::Swap), Just(PaymentKind::Prepay)]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => height().prop_map(resumed),
        4 => height().prop_map(block),
        3 => (kind(), payment_event()).prop_map(|(kind, event)| Input::Payment { kind, event }),
        4 => (0u8..3, (AMT.0 - 2)..(AMT.0 + 2), height(), 0u32..4)
            .prop_map(|(n, v, h, c)| htlc(n, Sat(v), h, c)),
        1 => Just(Input::HtlcReorged),
        2 => (0u8..2, height(), any::<bool>()).prop_map(|(n, h, success)| Input::HtlcSpent {
            txid: txid(n),
            height: BlockHeight(h),
            path: if success {
                SpendPath::Success { swept_value: AMT - Sat(500) }
            } else {
                SpendPath::Timeout
            },
        }),
        1 => Just(Input::SpendReorged),
        1 => (0u32..5).prop_map(|confirmations| Input::SpendConfirmations { confirmations }),
        1 => Just(Input::ServerPushAcked),
        1 => Just(Input::SweepPublishFailed { cause: SweepFailure::Rejected }),
        3 => (height(), prop_oneof![Just(253u64), 0u64..200_000])
            .prop_map(|(h, rate)| Input::SweepFeeEstimate { height: BlockHeight(h), rate: SatPerKw(rate) }),
    ]
}

/// An independent account of what the reveal rule allows, kept from the inputs alone.
#[derive(Default)]
struct Witness {
    /// The latest good HTLC report not undone by a reorg or a resume: (conf height, its tip).
    good_htlc: Option<(u32, u32)>,
    /// The latest best height the driver reported.
    last_height: Option<u32>,
}

impl Witness {
    fn observe(&mut self, input: &Input) {
        match input {
            Input::Resumed { height } => {
                self.last_height = Some(height.0);
                self.good_htlc = None;
            }
            Input::Block { height } => self.last_height = Some(height.0),
            Input::HtlcConfirmed {
                value,
                height,
                confirmations,
                ..
            } => {
                self.good_htlc = (*value >= AMT && *confirmations > 0)
                    .then(|| (height.0, height.0 + confirmations - 1));
            }
            Input::HtlcReorged => self.good_htlc = None,
            Input::Payment { .. }
            | Input::HtlcSpent { .. }
            | Input::SpendReorged
            | Input::SpendConfirmations { .. }
            | Input::ServerPushAcked
            | Input::SweepPublishFailed { .. }
            | Input::SweepFeeEstimate { .. } => {}
        }
    }

    /// Whether revealing at `at` is justified by what was seen.
    fn allows_reveal_at(&self, at: u32) -> bool {
        let Some((conf, tip)) = self.good_htlc else {
            return false;
        };
        at < DEADLINE
            && tip < DEADLINE
            && self.last_height.is_none_or(|h| h < DEADLINE)
            && at >= conf
            && at - conf + 1 >= 2
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_inputs(inputs in prop::collection::vec(input(), 1..40)) {
        let c = contract();
        let mut progress = SwapProgress::new();
        let mut witness = Witness::default();
        for input in inputs {
            let before = progress.clone();
            // A rejected input changes nothing, so the witness does not see it either.
            let Ok(t) = step(&c, &before, input.clone()) else { continue };
            witness.observe(&input);
            // Pure: the same step gives the same transition.
            prop_assert_eq!(step(&c, &before, input.clone()), Ok(t.clone()));

            // The preimage may only start leaving after a good, deep enough HTLC at a safe height.
            if !before.state.preimage_may_leave() && t.next.state.preimage_may_leave() {
                let at = t.next.revealed_at.map(|h| h.0);
                prop_assert!(
                    at.is_some_and(|at| witness.allows_reveal_at(at)),
                    "revealed at {at:?} on {input:?} without a justifying HTLC"
                );
                // ... and only on a fee estimate for that height that the cap affords: the
                // heaviest sweep at the estimate (never below the floor; no urgent factor this
                // far from the expiry) within max_miner_fee.
                let Input::SweepFeeEstimate { height, rate } = &input else {
                    return Err(TestCaseError::fail(format!("revealed on {input:?}, not on a fee estimate")));
                };
                prop_assert_eq!(Some(height.0), at);
                let needed = SatPerKw(rate.0.max(253));
                prop_assert!(fee_for(max_sweep_weight(), needed) <= c.terms().fee_limits.max_miner_fee);
            }
            // An action that lets the preimage out runs only after a state allowing it is saved.
            if t.actions.iter().any(|a| matches!(a, Action::PushPreimage | Action::PublishSweep { .. })) {
                prop_assert!(t.next.state.preimage_may_leave());
            }
            // After the reveal the only failure is the server's final timeout spend.
            if before.state.preimage_may_leave() {
                prop_assert!(t.next.state.preimage_may_leave(), "{:?} -> {:?}", before.state, t.next.state);
            }
            // Never give up: every block after the reveal publishes a sweep.
            if before.state == SwapState::PreimageRevealed && matches!(input, Input::Block { .. }) {
                prop_assert!(has_sweep(&t.actions));
            }
            // Terminal states are absorbing and silent.
            if before.state.is_terminal() {
                prop_assert_eq!(t.next.state, before.state);
                prop_assert!(t.actions.is_empty());
            }
            // Notify exactly when the state changes.
            let notified = t.actions.iter().any(|a| matches!(a, Action::Notify { .. }));
            prop_assert_eq!(notified, t.next.state != before.state);
            progress = t.next;
        }
    }

    #[test]
    fn codes_round_trip(code in any::<u16>()) {
        match SwapState::from_code(code) {
            Ok(state) => prop_assert_eq!(state.code(), code),
            Err(e) => prop_assert_eq!(e, UnknownStateCode(code)),
        }
    }
}
