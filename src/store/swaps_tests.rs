use bitcoin::hashes::Hash;

use super::*;
use crate::swap::{PaymentKind, SWAP_KEY_FAMILY};

fn preimage(seed: u8) -> Preimage {
    Preimage::from_bytes([seed; 32])
}

fn contract(p: &Preimage) -> LoopOutContract {
    let hash = p.swap_hash();
    LoopOutContract::new(ContractTerms {
        swap_hash: hash,
        amount: Sat(250_000),
        expiry: BlockHeight(1_100),
        initiation_height: BlockHeight(1_000),
        htlc_confirmations: 2,
        reveal_margin_blocks: 20,
        sweep_finality_confirmations: 3,
        fee_cap_lifted_within_blocks: 10,
        fee_limits: FeeLimits {
            max_swap_fee: Sat(5_000),
            max_prepay_amount: Sat(3_000),
            max_swap_routing_fee: Sat(5_010),
            max_prepay_routing_fee: Sat(70),
            max_miner_fee: Sat(50_000),
        },
        swap_invoice: InvoiceTerms {
            bolt11: "lnbcrt1swap".to_owned(),
            payment_hash: hash.0,
            amount: Sat(252_000),
        },
        prepay_invoice: InvoiceTerms {
            bolt11: "lnbcrt1prepay".to_owned(),
            payment_hash: [7; 32],
            amount: Sat(3_000),
        },
        destination: "bcrt1qdestination".to_owned(),
        outgoing_chan_set: vec![ChanId::from_parts(500, 1, 0), ChanId(42)],
        label: "rebalance, with a comma".to_owned(),
        initiator: "unit-test".to_owned(),
        protocol_version: 11,
        receiver_key_locator: KeyLocator {
            family: SWAP_KEY_FAMILY,
            index: 4,
        },
        sender_key: [2; 33],
        receiver_key: [3; 33],
        htlc_pk_script: ScriptBuf::from_bytes(vec![0x51, 0x20, 0xab]),
    })
    .unwrap()
}

fn extras() -> SwapExtras {
    SwapExtras {
        network: Network::Regtest,
        payment_address: [9; 32],
        swap_min_final_cltv_delta: 80,
        publication_deadline_unix: 1_700_001_800,
        destination_is_wallet: true,
    }
}

fn revealed_progress() -> SwapProgress {
    let mut p = SwapProgress::new();
    p.state = SwapState::PreimageRevealed;
    p.best_height = Some(BlockHeight(1_003));
    p.swap_payment = PaymentStatus::InFlight;
    p.prepay_payment = PaymentStatus::Succeeded {
        amount: Sat(3_000),
        routing_fee: Sat(2),
    };
    p.htlc = Some(HtlcOutput {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([5; 32]),
            vout: 1,
        },
        value: Sat(250_000),
        conf_height: Some(BlockHeight(1_002)),
    });
    p.revealed_at = Some(BlockHeight(1_003));
    p.sweeps_requested = 1;
    p.sweep_failures = 1;
    p.last_sweep_failure = Some(SweepFailure::FeeCapBelowRelayFee);
    p
}

fn succeeded_progress() -> SwapProgress {
    let mut p = revealed_progress();
    p.state = SwapState::Succeeded;
    p.swap_payment = PaymentStatus::Succeeded {
        amount: Sat(252_000),
        routing_fee: Sat(11),
    };
    p.spend = Some(HtlcSpend {
        txid: Txid::from_byte_array([6; 32]),
        height: BlockHeight(1_004),
        confirmations: 3,
        path: SpendPath::Success {
            swept_value: Sat(249_400),
        },
    });
    p.preimage_push_acked = true;
    p
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sluice.db")).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_created_swap_round_trips_with_its_preimage() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let c = contract(&p);
    store
        .create_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();

    let loaded = store.load_swap(p.swap_hash()).await.unwrap().unwrap();
    assert_eq!(loaded.record.contract, c);
    assert_eq!(loaded.record.extras, extras());
    assert_eq!(loaded.record.progress, SwapProgress::new());
    assert_eq!(loaded.preimage, p);
    assert_eq!(loaded.record.created_at_unix, 100);
    assert!(
        store
            .load_swap(preimage(2).swap_hash())
            .await
            .unwrap()
            .is_none()
    );
    // A second swap with the same hash is refused and changes nothing.
    assert!(
        store
            .create_swap(&c, &p, &extras(), &revealed_progress(), 101)
            .await
            .is_err()
    );
    assert_eq!(store.swap_history(p.swap_hash()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn progress_is_appended_in_order_with_costs() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let c = contract(&p);
    let hash = p.swap_hash();
    store
        .create_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    let revealed = revealed_progress();
    store
        .save_progress(hash, &revealed, revealed.costs(), 110)
        .await
        .unwrap();
    let done = succeeded_progress();
    store
        .save_progress(hash, &done, done.costs(), 120)
        .await
        .unwrap();

    let history = store.swap_history(hash).await.unwrap();
    let states: Vec<_> = history.iter().map(|u| u.progress.state).collect();
    assert_eq!(
        states,
        [
            SwapState::Initiated,
            SwapState::PreimageRevealed,
            SwapState::Succeeded
        ]
    );
    assert_eq!(history[1].progress, revealed);
    assert_eq!(
        history
            .iter()
            .map(|u| u.updated_at_unix)
            .collect::<Vec<_>>(),
        [100, 110, 120]
    );
    let loaded = store.load_swap(hash).await.unwrap().unwrap().record;
    assert_eq!(loaded.progress, done);
    assert_eq!(loaded.updated_at_unix, 120);
    // 252 000 + 3 000 paid for 250 000 received; 600 on chain; 13 routing.
    assert_eq!(
        loaded.costs,
        SwapCosts {
            server_sat: 5_000,
            onchain: Sat(600),
            offchain: Sat(13),
        }
    );
}

#[tokio::test]
async fn the_state_entry_time_moves_only_when_the_state_changes() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let hash = p.swap_hash();
    store
        .create_swap(&contract(&p), &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    let since = |store: &Store| {
        let store = store.clone();
        async move {
            let r = store.load_swap(hash).await.unwrap().unwrap().record;
            (r.state_since_unix, r.updated_at_unix)
        }
    };
    assert_eq!(since(&store).await, (100, 100));
    let mut revealed = revealed_progress();
    store
        .save_progress(hash, &revealed, revealed.costs(), 110)
        .await
        .unwrap();
    // Blocks while the sweep waits: steps saved in the same state.
    for (height, at) in [(1_004, 130), (1_005, 150)] {
        revealed.best_height = Some(BlockHeight(height));
        store
            .save_progress(hash, &revealed, revealed.costs(), at)
            .await
            .unwrap();
    }
    assert_eq!(since(&store).await, (110, 150));
    let done = succeeded_progress();
    store
        .save_progress(hash, &done, done.costs(), 170)
        .await
        .unwrap();
    assert_eq!(since(&store).await, (170, 170));
    let listed = store.list_swaps(SwapFilter::default()).await.unwrap();
    assert_eq!(listed[0].state_since_unix, 170);
}

#[tokio::test]
async fn the_migration_finds_the_state_entry_time_of_existing_swaps_in_their_history() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let hash = p.swap_hash();
    store
        .create_swap(&contract(&p), &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    let mut revealed = revealed_progress();
    for (height, at) in [(1_003, 110), (1_004, 130), (1_005, 150)] {
        revealed.best_height = Some(BlockHeight(height));
        store
            .save_progress(hash, &revealed, revealed.costs(), at)
            .await
            .unwrap();
    }
    // A swap that never left its first state.
    let q = preimage(2);
    store
        .create_swap(&contract(&q), &q, &extras(), &SwapProgress::new(), 120)
        .await
        .unwrap();
    // As a database written before the column existed, then the migration's backfill.
    sqlx::query("UPDATE swaps SET state_since_unix = NULL")
        .execute(&store.pool)
        .await
        .unwrap();
    let migration = include_str!("../../migrations/0008_state_since.sql");
    let backfill: Vec<String> = migration
        .split(';')
        .map(|stmt| {
            stmt.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|sql| sql.trim_start().starts_with("UPDATE swaps"))
        .collect();
    assert_eq!(backfill.len(), 1, "the migration backfills swaps once");
    for sql in backfill {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&store.pool)
            .await
            .unwrap();
    }
    let at = |h| {
        let store = store.clone();
        async move {
            store
                .load_swap(h)
                .await
                .unwrap()
                .unwrap()
                .record
                .state_since_unix
        }
    };
    assert_eq!(at(hash).await, 110);
    assert_eq!(at(q.swap_hash()).await, 120);
}

#[tokio::test]
async fn unfinished_and_filtered_listings_follow_the_newest_state() {
    let (_dir, store) = open().await;
    let (a, b, x) = (preimage(1), preimage(2), preimage(3));
    for (i, p) in [&a, &b, &x].into_iter().enumerate() {
        store
            .create_swap(
                &contract(p),
                p,
                &extras(),
                &SwapProgress::new(),
                100 + i as i64,
            )
            .await
            .unwrap();
    }
    let done = succeeded_progress();
    store
        .save_progress(b.swap_hash(), &done, done.costs(), 200)
        .await
        .unwrap();
    let revealed = revealed_progress();
    store
        .save_progress(x.swap_hash(), &revealed, SwapCosts::default(), 200)
        .await
        .unwrap();

    let open_swaps = store.load_unfinished().await.unwrap();
    let hashes: Vec<_> = open_swaps
        .iter()
        .map(|s| s.record.contract.terms().swap_hash)
        .collect();
    assert_eq!(hashes, [a.swap_hash(), x.swap_hash()]);
    assert_eq!(open_swaps[1].preimage, x);

    let all = store.list_swaps(SwapFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0].contract.terms().swap_hash,
        x.swap_hash(),
        "newest first"
    );
    let succeeded = store
        .list_swaps(SwapFilter {
            state: Some(SwapState::Succeeded),
            ..SwapFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0].contract.terms().swap_hash, b.swap_hash());
    let none = store
        .list_swaps(SwapFilter {
            state: Some(SwapState::Succeeded),
            unfinished_only: true,
            limit: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let one = store
        .list_swaps(SwapFilter {
            limit: Some(1),
            ..SwapFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

#[tokio::test]
async fn an_uncommitted_creation_leaves_nothing_behind() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let c = contract(&p);
    {
        let mut tx = store.begin().await.unwrap();
        tx.insert_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
            .await
            .unwrap();
        // The process dies here: the transaction is dropped without a commit.
    }
    assert_eq!(
        store.committed_transactions(),
        0,
        "a rollback is not a commit"
    );
    assert!(store.load_swap(p.swap_hash()).await.unwrap().is_none());
    assert!(store.load_unfinished().await.unwrap().is_empty());
    // The same swap can then be created for real.
    store
        .create_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    assert!(store.load_swap(p.swap_hash()).await.unwrap().is_some());
    assert_eq!(
        store.clone().committed_transactions(),
        1,
        "counted across clones"
    );
}

#[tokio::test]
async fn a_failed_append_keeps_the_previous_progress_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store = Store::open(&path).await.unwrap();
    let p = preimage(1);
    let c = contract(&p);
    store
        .create_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    // The disk refuses the history row after the state column was already updated inside the
    // transaction: neither write may survive.
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON swap_updates \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let revealed = revealed_progress();
    assert!(
        store
            .save_progress(p.swap_hash(), &revealed, SwapCosts::default(), 110)
            .await
            .is_err()
    );
    store.close().await;

    let store = Store::open(&path).await.unwrap();
    let loaded = store.load_swap(p.swap_hash()).await.unwrap().unwrap();
    assert_eq!(loaded.record.progress.state, SwapState::Initiated);
    assert_eq!(loaded.record.updated_at_unix, 100);
    assert_eq!(store.load_unfinished().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn progress_of_an_unknown_swap_is_refused() {
    let (_dir, store) = open().await;
    let err = store
        .save_progress(
            preimage(1).swap_hash(),
            &SwapProgress::new(),
            SwapCosts::default(),
            1,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("saving swap progress"), "{err}");
}

#[test]
fn every_progress_field_survives_the_json_layout() {
    let mut p = succeeded_progress();
    p.prepay_payment = PaymentStatus::Failed {
        reason: PaymentFailureReason::IncorrectPaymentDetails,
    };
    for progress in [SwapProgress::new(), revealed_progress(), p] {
        let json = serde_json::to_string(&ProgressJson::from(&progress)).unwrap();
        let back: SwapProgress = serde_json::from_str::<ProgressJson>(&json)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(back, progress, "{json}");
    }
    // A timeout spend has no swept value.
    let mut t = revealed_progress();
    t.state = SwapState::FailedSweepTimeout;
    t.spend = Some(HtlcSpend {
        txid: Txid::from_byte_array([1; 32]),
        height: BlockHeight(1_101),
        confirmations: 3,
        path: SpendPath::Timeout,
    });
    let json = serde_json::to_string(&ProgressJson::from(&t)).unwrap();
    let back: SwapProgress = serde_json::from_str::<ProgressJson>(&json)
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(back, t);
    assert!(matches!(
        back.payment(PaymentKind::Swap),
        PaymentStatus::InFlight
    ));
}

#[tokio::test]
async fn a_finished_swap_with_a_payment_in_flight_is_still_resumed() {
    let (_dir, store) = open().await;
    let p = preimage(1);
    let c = contract(&p);
    let hash = p.swap_hash();
    store
        .create_swap(&c, &p, &extras(), &SwapProgress::new(), 100)
        .await
        .unwrap();
    let mut timed_out = SwapProgress::new();
    timed_out.state = SwapState::FailedTimeout;
    timed_out.prepay_payment = PaymentStatus::Succeeded {
        amount: Sat(3_000),
        routing_fee: Sat(1),
    };
    timed_out.swap_payment = PaymentStatus::InFlight;
    store
        .save_progress(hash, &timed_out, timed_out.costs(), 110)
        .await
        .unwrap();
    assert_eq!(store.load_unfinished().await.unwrap().len(), 1);
    // Listing by "unfinished" means the state, not the payments.
    let open_states = store
        .list_swaps(SwapFilter {
            unfinished_only: true,
            ..SwapFilter::default()
        })
        .await
        .unwrap();
    assert!(open_states.is_empty());

    timed_out.swap_payment = PaymentStatus::Failed {
        reason: PaymentFailureReason::Canceled,
    };
    store
        .save_progress(hash, &timed_out, timed_out.costs(), 120)
        .await
        .unwrap();
    assert!(store.load_unfinished().await.unwrap().is_empty());
}
