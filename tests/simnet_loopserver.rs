//! The simnet Loop server against the real client pieces, over loopback gRPC, in a simulated
//! world: the honest protocol end to end (cooperative sweep, preimage from the chain, timeout
//! claim, cancel, L402, restart). Every transaction is checked by the chain's script
//! interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod simnet_loopserver_harness;

use simnet_loopserver_harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_swap_ends_in_a_cosigned_key_path_sweep() {
    let sim = sim(7).await;
    let amount = Sat(250_000);
    let swap = sim.start_swap(amount, 1).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();

    let swap_payment = sim.pay(&swap.swap_invoice).await;
    let prepay_payment = sim.pay(&swap.prepay_invoice).await;

    // Both held ⇒ the HTLC goes out, paying exactly `amt` to the script the client computed.
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    assert!(
        matches!(
            final_status(prepay_payment).await,
            PaymentStatus::Succeeded { .. }
        ),
        "the prepay settles once the HTLC is published"
    );
    sim.mine(1);
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;
    assert_eq!(value, amount);
    assert_eq!(sim.server.htlc_outpoints(hash).unwrap(), vec![outpoint]);
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;

    // The preimage push settles the swap invoice.
    sim.client.push_preimage(&swap.preimage.0).await.unwrap();
    match final_status(swap_payment).await {
        PaymentStatus::Succeeded { preimage } => assert_eq!(preimage, swap.preimage),
        other => panic!("swap payment: {other:?}"),
    }

    // Cooperative sweep: the server's nonce and partial signature complete a key-path spend.
    let dest = ScriptBuf::new_p2tr_tweaked(swap.htlc.output_key());
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: outpoint,
        htlc_value: value,
        htlc_pk_script: swap.htlc.pk_script(),
        path: SweepWitness::KeyPath,
        destination: dest,
        fee_rate: SatPerKw(2_000),
        height: sim.height(),
    })
    .unwrap();
    let sighash = sweep.key_spend_sighash().unwrap();
    let session = CoopSession::start(&swap.htlc, &swap.receiver, sighash, [42; 32]).unwrap();
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
    let sig = session.finish(&answer.nonce, &answer.partial_sig).unwrap();
    let tx = sweep.signed(key_spend_witness(&sig));
    sim.sluice.publish_transaction(&tx, "sweep").await.unwrap();
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerSuccess).await;

    // The status stream replays every state and ends with EOF after the final one.
    let mut seen = Vec::new();
    while let Some(u) = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
    {
        seen.push(u.unwrap().state);
    }
    assert_eq!(seen.first(), Some(&ServerSwapState::Initiated));
    assert_eq!(seen.last(), Some(&ServerSwapState::Success));
    assert!(seen.contains(&ServerSwapState::HtlcPublished));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preimage_is_learned_from_a_script_path_sweep_when_the_push_fails() {
    let sim = sim(12).await;
    sim.server.set_behaviour_for_next_swap(Behaviour {
        push: sluice::loopserver::behaviour::Push::Error,
        ..Behaviour::default()
    });
    let swap = sim.start_swap(Sat(120_000), 3).await;
    let hash = swap.preimage.hash();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    let (outpoint, value) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;

    let err = sim
        .client
        .push_preimage(&swap.preimage.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refuses"), "{err}");
    assert!(!sim.server.knows_preimage(hash).unwrap());

    // The client sweeps alone through the success leaf; the server reads the preimage there.
    let tx = sim.script_path_sweep(&swap, outpoint, value, SatPerKw(2_000));
    sim.sluice.publish_transaction(&tx, "sweep").await.unwrap();
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerSuccess).await;
    assert!(sim.server.knows_preimage(hash).unwrap());
    assert!(matches!(
        final_status(swap_payment).await,
        PaymentStatus::Succeeded { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrevealed_htlc_is_claimed_back_through_the_timeout_leaf_after_expiry() {
    let sim = sim(11).await;
    let swap = sim.start_swap(Sat(100_000), 2).await;
    let hash = swap.preimage.hash();
    let (swap_payment, _prepay) = sim.fund_swap(&swap).await;
    let (outpoint, _) = eventually("HTLC confirmed", || sim.htlc_output(&swap.htlc)).await;

    // One block short of the expiry the claim is not allowed yet.
    sim.mine_to(swap.expiry - 1);
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    assert!(!sim.states(hash).contains(&Wire::ServerTimeoutPublished));

    sim.mine_to(swap.expiry);
    sim.wait_state(hash, Wire::ServerTimeoutPublished).await;
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerFailedTimeout).await;
    assert_eq!(
        sim.states(hash),
        vec![
            Wire::ServerInitiated,
            Wire::ServerHtlcPublished,
            Wire::ServerHtlcConfirmed,
            Wire::ServerTimeoutPublished,
            Wire::ServerFailedTimeout
        ]
    );
    let spender = lock(&sim.world)
        .chain()
        .spender(&outpoint)
        .expect("HTLC spent");
    let tx = lock(&sim.world)
        .chain()
        .tx(&spender.txid)
        .and_then(|s| match s {
            sluice::simnet::chain::TxStatus::Confirmed { tx, .. } => Some(tx.clone()),
            sluice::simnet::chain::TxStatus::Mempool(_) => None,
        })
        .expect("the claim confirmed");
    assert_eq!(tx.input[0].witness.len(), 3, "a timeout-leaf witness");
    assert!(
        matches!(final_status(swap_payment).await, PaymentStatus::Failed(_)),
        "the held swap payment is released"
    );
    assert!(!sim.server.knows_preimage(hash).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_needs_the_payment_address_and_ends_the_stream() {
    let sim = sim(15).await;
    let swap = sim.start_swap(Sat(100_000), 8).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    let mut req = sluice::provider::port::CancelRequest {
        swap_hash: hash,
        payment_address: [0; 32],
        route: sluice::provider::port::CancelRoute::Invoice,
        remaining_hops: vec![],
        failure: sluice::provider::port::PaymentFailure::NoRoute,
    };
    assert!(sim.client.cancel_loop_out(&req).await.is_err());
    assert_eq!(sim.states(hash), vec![Wire::ServerInitiated]);
    req.payment_address = swap.contract.payment_address;
    sim.client.cancel_loop_out(&req).await.unwrap();
    sim.wait_state(hash, Wire::ServerClientInvoiceCancel).await;
    let mut seen = Vec::new();
    while let Some(u) = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap()
    {
        seen.push(u.unwrap().state);
    }
    assert_eq!(
        seen,
        vec![
            ServerSwapState::Initiated,
            ServerSwapState::ClientInvoiceCancel
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l402_price_above_the_clients_cap_is_refused() {
    let sim = sim(16).await;
    sim.server.set_l402(Some(sluice::loopserver::L402Settings {
        price: Sat(5_000),
        ..Default::default()
    }));
    let err = sim.client.loop_out_terms().await.unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    sim.server.set_l402(Some(sluice::loopserver::L402Settings {
        malformed_challenge: true,
        ..Default::default()
    }));
    let err = sim.client.loop_out_terms().await.unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");

    // A token payment that fails leaves no token; the next challenge is paid again.
    sim.server.set_l402(Some(sluice::loopserver::L402Settings {
        fail_payments: true,
        ..Default::default()
    }));
    assert!(sim.client.loop_out_terms().await.is_err());
    sim.server
        .set_l402(Some(sluice::loopserver::L402Settings::default()));
    sim.client.loop_out_terms().await.unwrap();
    sim.server.set_l402(None);
    assert!(
        sim.client.loop_out_terms().await.is_ok(),
        "no front, no token needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_ends_open_streams_and_carries_on_with_the_swap() {
    let mut sim = sim(20).await;
    let swap = sim.start_swap(Sat(100_000), 11).await;
    let hash = swap.preimage.hash();
    let mut updates = sim.client.subscribe_loop_out_updates(hash).await.unwrap();
    assert_eq!(
        updates.next().await.unwrap().unwrap().state,
        ServerSwapState::Initiated
    );

    // Stop serving: the open stream ends.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    drop(std::mem::replace(&mut sim.stop, stop));
    let end = tokio::time::timeout(DEADLINE, updates.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "no more updates after a restart: {end:?}"
    );

    // Serve again on a new port; the swap goes on and a fresh client reuses its token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sim.server.serve(listener, async {
        let _ = stopped.await;
    }));
    let client = LoopServerClient::connect(
        &addr.to_string(),
        ServerTls::Insecure,
        Duration::from_secs(10),
        L402Config::new(Network::Regtest, sim.tokens.path()),
        Arc::new(NodePayer(Arc::new(sim.sluice.clone()))),
    )
    .unwrap();
    let _payments = sim.fund_swap(&swap).await;
    client.push_preimage(&swap.preimage.0).await.unwrap();
    eventually("preimage known", || {
        sim.server.knows_preimage(hash).unwrap().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_version_expiry_key_and_hash() {
    use sluice::provider::wire;
    use sluice::provider::wire::swap_server_client::SwapServerClient;
    let sim = sim(23).await;
    sim.server.set_l402(None);
    let mut raw = SwapServerClient::connect(format!("http://{}", sim.addr))
        .await
        .unwrap();
    let height = i32::try_from(sim.height().0).unwrap();
    let receiver =
        PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[9; 32]).unwrap());
    let good = wire::ServerLoopOutRequest {
        receiver_key: receiver.serialize().to_vec(),
        swap_hash: Preimage([9; 32]).hash().0.to_vec(),
        amt: 100_000,
        swap_publication_deadline: 0,
        protocol_version: wire::ProtocolVersion::Musig2 as i32,
        expiry: height + 40,
        user_agent: "test/0.1".into(),
    };
    let shared = raw.clone();
    let refused = |r: wire::ServerLoopOutRequest| {
        let mut raw = shared.clone();
        async move { raw.new_loop_out_swap(r).await.unwrap_err() }
    };
    let old = refused(wire::ServerLoopOutRequest {
        protocol_version: wire::ProtocolVersion::HtlcV3 as i32,
        ..good.clone()
    })
    .await;
    assert_eq!(old.code(), tonic::Code::InvalidArgument, "{old:?}");
    for expiry in [height + 29, height + 401] {
        let e = refused(wire::ServerLoopOutRequest {
            expiry,
            ..good.clone()
        })
        .await;
        assert!(e.message().contains("expiry"), "{e:?}");
    }
    let e = refused(wire::ServerLoopOutRequest {
        receiver_key: receiver.x_only_public_key().0.serialize().to_vec(),
        ..good.clone()
    })
    .await;
    assert!(e.message().contains("receiver_key"), "{e:?}");
    let e = refused(wire::ServerLoopOutRequest {
        amt: 1,
        ..good.clone()
    })
    .await;
    assert!(e.message().contains("terms"), "{e:?}");

    raw.new_loop_out_swap(good.clone()).await.unwrap();
    let again = refused(good).await;
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
}

/// The preimage audit the fault campaign relies on can fail: a preimage the server learns while
/// the HTLC is only in the mempool is recorded as learned without a valid confirmed HTLC, and
/// one learned after the confirmation as learned with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preimage_audit_names_a_preimage_the_server_learned_before_the_htlc_confirmed() {
    use sluice::simnet::audit::PreimageAudit;
    let sim = sim(11).await;
    let mut audit = PreimageAudit::default();
    let early = sim.start_swap(Sat(250_000), 1).await;
    let _swap_payment = sim.pay(&early.swap_invoice).await;
    let _prepay_payment = sim.pay(&early.prepay_invoice).await;
    let hash = early.preimage.hash();
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    audit.observe(&sim.server, &lock(&sim.world));
    assert!(audit.learned().is_empty(), "{:?}", audit.learned());

    // Revealed with the HTLC unconfirmed: what a client must never do.
    sim.client.push_preimage(&early.preimage.0).await.unwrap();
    eventually("the server knows the preimage", || {
        sim.server.knows_preimage(hash).unwrap().then_some(())
    })
    .await;
    audit.observe(&sim.server, &lock(&sim.world));
    let learned = audit.learned()[&hash];
    assert!(!learned.valid_htlc_confirmed, "{learned:?}");
    assert_eq!(learned.height, sim.height());

    // The HTLC confirming afterwards does not rewrite what was learned, and when.
    sim.mine(1);
    eventually("HTLC confirmed", || sim.htlc_output(&early.htlc)).await;
    audit.observe(&sim.server, &lock(&sim.world));
    assert_eq!(audit.learned()[&hash], learned);

    // A second swap revealed after its HTLC confirmed is recorded as valid.
    let on_time = sim.start_swap(Sat(260_000), 2).await;
    let _swap_payment = sim.pay(&on_time.swap_invoice).await;
    let _prepay_payment = sim.pay(&on_time.prepay_invoice).await;
    let hash = on_time.preimage.hash();
    sim.wait_state(hash, Wire::ServerHtlcPublished).await;
    sim.mine(1);
    sim.wait_state(hash, Wire::ServerHtlcConfirmed).await;
    sim.client.push_preimage(&on_time.preimage.0).await.unwrap();
    eventually("the server knows the second preimage", || {
        sim.server.knows_preimage(hash).unwrap().then_some(())
    })
    .await;
    audit.observe(&sim.server, &lock(&sim.world));
    assert!(audit.learned()[&hash].valid_htlc_confirmed);
}
