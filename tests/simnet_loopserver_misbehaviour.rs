//! The reference Loop server's misbehaviour switches (protocol notes §11), each seen from the
//! client's side: tampered answers its validation refuses, tampered or late HTLCs, a held
//! payment failed after confirmation, bad co-signatures, an eager timeout claim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod simnet_loopserver_harness;

use simnet_loopserver_harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_chain_tampering_pays_what_the_switch_says() {
    let sim = sim(13).await;
    let amount = Sat(150_000);

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::ValueBelow(Sat(1_000)),
        ..Behaviour::default()
    });
    let short = sim.start_swap(amount, 4).await;
    let _payments = sim.fund_swap(&short).await;
    let (_, value) = eventually("short HTLC", || sim.htlc_output(&short.htlc)).await;
    assert_eq!(value, Sat(149_000));

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::TwoOutputs,
        ..Behaviour::default()
    });
    let twice = sim.start_swap(amount, 5).await;
    let _payments = sim.fund_swap(&twice).await;
    let outputs = eventually("two HTLC outputs", || {
        let outs = lock(&sim.world)
            .chain()
            .outputs_to_script(&twice.htlc.pk_script());
        (outs.len() == 2).then_some(outs)
    })
    .await;
    assert!(outputs.iter().all(|o| o.value == amount));
    assert_eq!(
        outputs[0].outpoint.txid, outputs[1].outpoint.txid,
        "one transaction from the wallet pays both outputs"
    );
    let vouts: Vec<u32> = sim
        .server
        .htlc_outpoints(twice.preimage.hash())
        .unwrap()
        .iter()
        .map(|o| o.vout)
        .collect();
    assert_eq!(
        vouts,
        [0, 1],
        "the server reports both, the first one first"
    );

    sim.server.set_behaviour_for_next_swap(Behaviour {
        htlc: HtlcTamper::WrongScript,
        ..Behaviour::default()
    });
    let elsewhere = sim.start_swap(amount, 6).await;
    let hash = elsewhere.preimage.hash();
    let _payments = sim.fund_swap(&elsewhere).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(
        sim.htlc_output(&elsewhere.htlc).is_none(),
        "the client's script is never paid"
    );
    assert_eq!(sim.server.htlc_outpoints(hash).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_publishes_releases_both_payments_at_expiry() {
    let sim = sim(14).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        publication: Publication::Never,
        timeout_claim: TimeoutClaim::Never,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 7).await;
    let hash = swap.preimage.hash();
    let swap_payment = sim.pay(&swap.swap_invoice).await;
    let prepay_payment = sim.pay(&swap.prepay_invoice).await;
    sim.mine(5);
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    sim.mine_to(swap.expiry);
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Failed(_)
    ));
    assert!(matches!(
        final_status(prepay_payment).await,
        PaymentStatus::Failed(_)
    ));
    assert!(sim.server.htlc_outpoints(hash).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invoice_and_key_tampering_is_caught_by_the_clients_validation() {
    use sluice::loopserver::behaviour::{InvoiceTamper as I, SenderKeyTamper as K};
    use sluice::provider::validate::ContractError as E;
    let sim = sim(17).await;
    type Expect = fn(&E) -> bool;
    let cases: Vec<(Behaviour, Expect)> = vec![
        (
            Behaviour {
                invoice: I::SwapFeeAbove(Sat(1)),
                ..Behaviour::default()
            },
            |e| matches!(e, E::SwapFeeTooHigh { .. }),
        ),
        (
            Behaviour {
                invoice: I::PrepayAboveSameTotal(Sat(10)),
                ..Behaviour::default()
            },
            |e| matches!(e, E::PrepayTooHigh { .. }),
        ),
        (
            Behaviour {
                invoice: I::WrongHash,
                ..Behaviour::default()
            },
            |e| matches!(e, E::WrongPaymentHash { .. }),
        ),
        (
            Behaviour {
                invoice: I::ZeroAmount,
                ..Behaviour::default()
            },
            |e| matches!(e, E::NoAmount { .. }),
        ),
        (
            Behaviour {
                invoice: I::OtherNetwork,
                ..Behaviour::default()
            },
            |e| matches!(e, E::WrongNetwork { .. }),
        ),
        (
            Behaviour {
                invoice: I::NoPaymentSecret,
                ..Behaviour::default()
            },
            |e| matches!(e, E::InvoiceDecode { .. } | E::NoPaymentSecret),
        ),
        (
            Behaviour {
                sender_key: K::Short,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyLength(32)),
        ),
        (
            Behaviour {
                sender_key: K::Long,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyLength(34)),
        ),
        (
            Behaviour {
                sender_key: K::OffCurve,
                ..Behaviour::default()
            },
            |e| matches!(e, E::SenderKeyNotOnCurve),
        ),
    ];
    assert!(
        sim.validate_new_swap(Sat(100_000), 20).await.is_ok(),
        "honest answer passes"
    );
    for (i, (behaviour, expected)) in cases.into_iter().enumerate() {
        sim.server.set_behaviour_for_next_swap(behaviour);
        let err = sim
            .validate_new_swap(Sat(100_000), 21 + i as u8)
            .await
            .expect_err("tampered answer refused");
        assert!(expected(&err), "{behaviour:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_publication_waits_for_the_reveal_limit() {
    let sim = sim(18).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        publication: Publication::AfterRevealLimit,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 9).await;
    let hash = swap.preimage.hash();
    let _swap_payment = sim.pay(&swap.swap_invoice).await;
    let _prepay = sim.pay(&swap.prepay_invoice).await;
    sim.mine_to(swap.expiry - 21);
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    sim.mine(1);
    let confirmed_at = eventually("late HTLC", || {
        lock(&sim.world)
            .chain()
            .outputs_to_script(&swap.htlc.pk_script())
            .first()
            .map(|o| o.height)
    })
    .await;
    assert!(
        confirmed_at.0 > swap.expiry - 20,
        "too late for the client to reveal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_the_swap_payment_after_confirmation_and_closing_the_stream_early() {
    use sluice::loopserver::behaviour::StreamMode;
    let sim = sim(19).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        fail_swap_payment_after_confirm: true,
        stream: StreamMode::CloseAfterFirst,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 10).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Failed(_)
    ));
    let first = updates.next().await.unwrap().unwrap();
    assert_eq!(first.state, ServerSwapState::Initiated);
    assert!(
        tokio::time::timeout(DEADLINE, updates.next())
            .await
            .unwrap()
            .is_none(),
        "EOF after the first update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_timeout_claim_replaces_a_pending_client_sweep() {
    let sim = sim(21).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        timeout_claim: TimeoutClaim::Never,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 12).await;
    let hash = swap.preimage.hash();
    let _payments = sim.fund_swap(&swap).await;
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;

    // At the expiry the client's cheap sweep is still waiting in the mempool...
    sim.mine_to(swap.expiry);
    let sweep = sim.script_path_sweep(&swap, outpoint, value, SatPerKw(300));
    sim.sluice
        .publish_transaction(&sweep, "sweep")
        .await
        .unwrap();
    // ...when the server turns eager: its claim outbids and replaces it.
    sim.server
        .set_swap_behaviour(
            hash,
            Behaviour {
                timeout_claim: TimeoutClaim::Eager,
                ..Behaviour::default()
            },
        )
        .unwrap();
    sim.wait_state(hash, Wire::ServerTimeoutPublished).await;
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerFailedTimeout).await;
    let spender = lock(&sim.world).chain().spender(&outpoint).unwrap();
    assert_ne!(
        spender.txid,
        sweep.compute_txid(),
        "the client's sweep was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_settles_and_cosigns_badly_still_loses_the_htlc_to_the_script_path() {
    use sluice::loopserver::behaviour::{CoSign, Settle};
    let sim = sim(22).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        settle: Settle::Never,
        cosign: CoSign::InvalidPartialSig,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(100_000), 13).await;
    let hash = swap.preimage.hash();
    let (_swap_payment, _prepay) = sim.fund_swap(&swap).await;
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;
    sim.client.push_preimage(&swap.preimage.0).await.unwrap();
    assert!(sim.server.knows_preimage(hash).unwrap());

    // The co-signature is well-formed but does not combine into a valid signature.
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: outpoint,
        htlc_value: value,
        htlc_pk_script: swap.htlc.pk_script(),
        path: SweepWitness::KeyPath,
        destination: ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key()),
        fee_rate: SatPerKw(2_000),
        height: sim.height(),
    })
    .unwrap();
    let session = CoopSession::start(
        &swap.htlc,
        &swap.receiver,
        sweep.key_spend_sighash().unwrap(),
        [43; 32],
    )
    .unwrap();
    let answer = sim
        .client
        .musig2_sign_sweep(&SweepSignRequest {
            swap_hash: hash,
            payment_address: swap.contract.payment_address,
            nonce: session.public_nonce(),
            sweep_psbt: sweep.psbt().unwrap().serialize(),
            prevouts: vec![SweepPrevout {
                value,
                pk_script: swap.htlc.pk_script().to_bytes(),
                txid: outpoint.txid.to_byte_array(),
                output_index: outpoint.vout,
            }],
        })
        .await
        .unwrap();
    assert!(session.finish(&answer.nonce, &answer.partial_sig).is_err());

    // The script path needs nobody; the server records the outcome without ever settling.
    let tx = sim.script_path_sweep(&swap, outpoint, value, SatPerKw(2_000));
    sim.sluice.publish_transaction(&tx, "sweep").await.unwrap();
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    let status = sim
        .sluice
        .track_payment(hash)
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(
        !status.status.is_final(),
        "the swap payment is still held: {status:?}"
    );
}
