//! Chain tests with real, signed transactions.

use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CLTV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxOut, absolute};

use super::sign::csv_checksig_leaf;
use super::testutil::{TestKey, fund, spend};
use super::*;

fn chain() -> Chain {
    Chain::new(ChainConfig::default()).unwrap()
}

fn key(seed: &str) -> TestKey {
    TestKey::new(seed).unwrap()
}

fn miner() -> ScriptBuf {
    key("miner").p2tr()
}

fn confirmed_at(chain: &Chain, txid: &Txid) -> Option<BlockHeight> {
    match chain.tx(txid)? {
        TxStatus::Confirmed { location, .. } => Some(location.height),
        TxStatus::Mempool(_) => None,
    }
}

#[test]
fn p2wpkh_spend_is_accepted_and_confirms() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, _) = fund(&mut chain, &alice.p2wpkh(), Sat(100_000)).unwrap();
    let mut tx = spend(prev, Sat(99_000), key("bob").p2tr());
    alice
        .signer
        .sign_p2wpkh(&mut tx, 0, &alice.keypair, Amount::from_sat(100_000))
        .unwrap();

    let accepted = chain.accept(tx).unwrap();
    assert_eq!(accepted.fee, Sat(1_000));
    assert_eq!(
        chain.spender(&prev).map(|s| (s.txid, s.height)),
        Some((accepted.txid, None))
    );

    chain.mine(1, &miner());
    assert_eq!(confirmed_at(&chain, &accepted.txid), Some(chain.height()));
    let spend = chain.spender(&prev).unwrap();
    assert_eq!(
        (spend.txid, spend.height),
        (accepted.txid, Some(chain.height()))
    );
    assert!(chain.utxo(&prev).is_none());
    assert!(
        chain
            .utxo(&OutPoint {
                txid: accepted.txid,
                vout: 0
            })
            .is_some()
    );
}

#[test]
fn p2tr_key_path_spend_is_accepted() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    assert!(chain.accept(tx).is_ok());
}

#[test]
fn p2tr_script_path_spend_is_accepted() {
    let mut chain = chain();
    let alice = key("alice");
    let leaf = alice.checksig_leaf().unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_leaf(&mut tx, 0, &alice.keypair, &[prevout], &leaf)
        .unwrap();
    assert!(chain.accept(tx).is_ok());
}

#[test]
fn bad_signatures_fail_script_verification() {
    let mut chain = chain();
    let alice = key("alice");
    let mallory = key("mallory");

    // A valid signature by the wrong key on a script path.
    let leaf = alice.checksig_leaf().unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    mallory
        .signer
        .sign_p2tr_leaf(&mut tx, 0, &mallory.keypair, &[prevout], &leaf)
        .unwrap();
    assert!(matches!(
        chain.accept(tx),
        Err(RejectReason::Script { input: 0, outpoint, .. }) if outpoint == prev
    ));

    // A key-path signature with one bit flipped.
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let mut sig = tx.input[0].witness.to_vec();
    sig[0][10] ^= 1;
    tx.input[0].witness = bitcoin::Witness::from_slice(&sig);
    let err = chain.accept(tx).unwrap_err();
    assert!(
        matches!(err, RejectReason::Script { input: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fails script verification"));

    // A P2WPKH signature committing to the wrong amount.
    let (prev, _) = fund(&mut chain, &alice.p2wpkh(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    alice
        .signer
        .sign_p2wpkh(&mut tx, 0, &alice.keypair, Amount::from_sat(50_001))
        .unwrap();
    assert!(matches!(chain.accept(tx), Err(RejectReason::Script { .. })));
}

#[test]
fn double_spend_of_a_confirmed_output_is_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut first = spend(prev, Sat(49_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(
            &mut first,
            0,
            &alice.keypair,
            std::slice::from_ref(&prevout),
        )
        .unwrap();
    let first_txid = chain.accept(first).unwrap().txid;
    chain.mine(1, &miner());

    let mut second = spend(prev, Sat(40_000), key("bob").p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut second, 0, &alice.keypair, &[prevout])
        .unwrap();
    assert_eq!(
        chain.accept(second),
        Err(RejectReason::DoubleSpend {
            outpoint: prev,
            spent_by: first_txid
        })
    );
}

#[test]
fn mempool_double_spend_must_pay_more_to_replace() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let sign = |value: u64, to: ScriptBuf| {
        let mut tx = spend(prev, Sat(value), to);
        alice
            .signer
            .sign_p2tr_key(&mut tx, 0, &alice.keypair, std::slice::from_ref(&prevout))
            .unwrap();
        tx
    };
    let first = chain.accept(sign(49_000, alice.p2wpkh())).unwrap();
    // A child of the first, evicted with it.
    let mut child = spend(
        OutPoint {
            txid: first.txid,
            vout: 0,
        },
        Sat(48_000),
        alice.p2tr(),
    );
    alice
        .signer
        .sign_p2wpkh(&mut child, 0, &alice.keypair, Amount::from_sat(49_000))
        .unwrap();
    let child = chain.accept(child).unwrap();

    // Same fee: not enough.
    let err = chain.accept(sign(49_000, key("bob").p2wpkh())).unwrap_err();
    assert!(
        matches!(err, RejectReason::InsufficientReplacementFee { outpoint, spent_by, .. }
            if outpoint == prev && spent_by == first.txid),
        "{err}"
    );
    // Paying for both evicted transactions plus its own relay: replaces them.
    let seq = chain.next_event_seq();
    let replacement = chain.accept(sign(47_000, key("bob").p2wpkh())).unwrap();
    assert_eq!(replacement.replaced, vec![first.txid, child.txid]);
    assert!(chain.mempool_entry(&first.txid).is_none());
    assert!(chain.mempool_entry(&child.txid).is_none());
    let events: Vec<ChainEvent> = chain.events_since(seq).map(|(_, e)| e.clone()).collect();
    let by = replacement.txid;
    assert_eq!(
        events,
        vec![
            ChainEvent::TxRemoved {
                txid: first.txid,
                reason: RemovalReason::Replaced { by }
            },
            ChainEvent::TxRemoved {
                txid: child.txid,
                reason: RemovalReason::Replaced { by }
            },
            ChainEvent::TxAccepted {
                txid: by,
                replaced: vec![first.txid, child.txid]
            },
        ]
    );
}

#[test]
fn csv_lock_is_enforced_by_sequence_and_by_script() {
    let mut chain = chain();
    let alice = key("alice");
    let leaf = alice
        .leaf(csv_checksig_leaf(alice.keypair.x_only_public_key().0, 10))
        .unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let funded_at = chain.height();
    let build = |sequence: u32| {
        let mut tx = spend(prev, Sat(49_000), alice.p2tr());
        tx.input[0].sequence = Sequence::from_consensus(sequence);
        alice
            .signer
            .sign_p2tr_leaf(
                &mut tx,
                0,
                &alice.keypair,
                std::slice::from_ref(&prevout),
                &leaf,
            )
            .unwrap();
        tx
    };

    // BIP-68: a 10-block relative lock, 1 confirmation so far.
    assert!(matches!(
        chain.accept(build(10)),
        Err(RejectReason::SequenceLock { input: 0, .. })
    ));
    // BIP-112: a sequence of 5 satisfies BIP-68 sooner but not the script's CSV 10.
    chain.mine(5, &miner());
    assert!(matches!(
        chain.accept(build(5)),
        Err(RejectReason::Script { .. })
    ));
    // The output confirmed at `funded_at`: the first block that may spend it is funded_at + 10.
    chain.mine(3, &miner());
    assert_eq!(chain.height().0, funded_at.0 + 8);
    assert!(matches!(
        chain.accept(build(10)),
        Err(RejectReason::SequenceLock { .. })
    ));
    chain.mine(1, &miner());
    assert!(chain.accept(build(10)).is_ok());
}

#[test]
fn cltv_lock_is_enforced_by_locktime_and_by_script() {
    let mut chain = chain();
    let alice = key("alice");
    let unlock = i64::from(chain.height().0 + 5);
    let script = Builder::new()
        .push_int(unlock)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_x_only_key(&alice.keypair.x_only_public_key().0)
        .push_opcode(OP_CHECKSIG)
        .into_script();
    let leaf = alice.leaf(script).unwrap();
    let (prev, prevout) = fund(&mut chain, &leaf.script_pubkey, Sat(50_000)).unwrap();
    let build = |lock_time: u32| {
        let mut tx = spend(prev, Sat(49_000), alice.p2tr());
        tx.lock_time = absolute::LockTime::from_consensus(lock_time);
        alice
            .signer
            .sign_p2tr_leaf(
                &mut tx,
                0,
                &alice.keypair,
                std::slice::from_ref(&prevout),
                &leaf,
            )
            .unwrap();
        tx
    };

    // BIP-65 in the script: a lock time below the script's is refused even though final.
    let err = chain.accept(build(chain.height().0)).unwrap_err();
    assert!(matches!(err, RejectReason::Script { .. }), "{err}");
    // Finality: nLockTime must be below the next block's height.
    let err = chain.accept(build(unlock as u32)).unwrap_err();
    assert!(
        matches!(err, RejectReason::NonFinalLocktime { lock_time, .. } if lock_time == unlock as u32),
        "{err}"
    );
    while chain.height().0 < unlock as u32 - 1 {
        chain.mine(1, &miner());
        assert!(matches!(
            chain.accept(build(unlock as u32)),
            Err(RejectReason::NonFinalLocktime { .. })
        ));
    }
    chain.mine(1, &miner());
    assert!(chain.accept(build(unlock as u32)).is_ok());
}

#[test]
fn time_locks_compare_to_median_time_past_not_the_clock() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mtp = chain.median_time_past(chain.height());
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    tx.lock_time = absolute::LockTime::from_consensus(mtp + 1);
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, std::slice::from_ref(&prevout))
        .unwrap();
    // The clock is far ahead of the median time past; finality still waits for the chain.
    chain.set_clock(mtp + 100_000);
    assert!(matches!(
        chain.test_accept(&tx),
        Err(RejectReason::NonFinalLocktime { .. })
    ));
    chain.mine(6, &miner());
    assert!(chain.median_time_past(chain.height()) > mtp + 1);
    assert!(chain.accept(tx).is_ok());
}

#[test]
fn fee_below_min_relay_is_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_950), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let vsize = tx.vsize() as u64;
    assert_eq!(
        chain.accept(tx),
        Err(RejectReason::FeeTooLow {
            fee: Sat(50),
            min: Sat(vsize)
        })
    );
}

#[test]
fn missing_inputs_immature_coinbase_and_dust_are_rejected() {
    let mut chain = chain();
    let alice = key("alice");
    let nowhere = OutPoint {
        txid: Txid::from_byte_array([7; 32]),
        vout: 0,
    };
    let mut tx = spend(nowhere, Sat(1_000), alice.p2tr());
    tx.input[0].witness = bitcoin::Witness::from_slice(&[[0u8; 64]]);
    assert_eq!(chain.accept(tx), Err(RejectReason::MissingInput(nowhere)));

    let hashes = chain.mine(1, &alice.p2tr());
    let coinbase = chain.block_by_hash(&hashes[0]).unwrap().1.txdata[0].clone();
    let prev = OutPoint {
        txid: coinbase.compute_txid(),
        vout: 0,
    };
    let mut tx = spend(prev, Sat(1_000_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &coinbase.output[..1])
        .unwrap();
    assert_eq!(
        chain.accept(tx.clone()),
        Err(RejectReason::ImmatureCoinbase {
            outpoint: prev,
            confirmations: 1
        })
    );
    chain.mine(98, &miner());
    assert!(matches!(
        chain.test_accept(&tx),
        Err(RejectReason::ImmatureCoinbase {
            confirmations: 99,
            ..
        })
    ));
    chain.mine(1, &miner());
    assert!(chain.accept(tx).is_ok());

    assert!(matches!(
        chain.faucet(alice.p2tr(), Sat(100)),
        Err(FaucetError::Rejected(RejectReason::Dust {
            vout: 0,
            value: Sat(100),
            min: Sat(330)
        }))
    ));
}

#[test]
fn blocks_carry_parents_before_children_with_valid_commitments() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut parent = spend(prev, Sat(49_800), alice.p2wpkh());
    alice
        .signer
        .sign_p2tr_key(&mut parent, 0, &alice.keypair, &[prevout])
        .unwrap();
    let parent = chain.accept(parent).unwrap().txid;
    // The child pays a much higher rate but must still follow its parent.
    let mut child = spend(
        OutPoint {
            txid: parent,
            vout: 0,
        },
        Sat(40_000),
        alice.p2tr(),
    );
    alice
        .signer
        .sign_p2wpkh(&mut child, 0, &alice.keypair, Amount::from_sat(49_800))
        .unwrap();
    let child = chain.accept(child).unwrap().txid;

    let hash = chain.mine(1, &miner())[0];
    let (height, block) = chain.block_by_hash(&hash).unwrap();
    assert_eq!(height, chain.height());
    let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    assert_eq!(&txids[1..], &[parent, child]);
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert!(block.header.validate_pow(block.header.target()).is_ok());
    assert_eq!(block.bip34_block_height().unwrap(), u64::from(height.0));
    let reward = block.txdata[0].output[0].value.to_sat();
    assert_eq!(reward, chain.subsidy(height).0 + 200 + 9_800);
    assert!(chain.mempool_txids().is_empty());
}

#[test]
fn reorg_returns_transactions_to_the_mempool_with_notifications() {
    let mut chain = chain();
    let alice = key("alice");
    let funding = chain.faucet(alice.p2tr(), Sat(50_000)).unwrap();
    chain.mine(1, &miner());
    let mut tx = spend(funding, Sat(49_000), alice.p2wpkh());
    let prevout = TxOut {
        value: Amount::from_sat(50_000),
        script_pubkey: alice.p2tr(),
    };
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let spend_txid = chain.accept(tx).unwrap().txid;
    let old_hashes = chain.mine(1, &miner());
    let top = chain.height();
    let below = BlockHeight(top.0 - 1);
    let old_below = chain.block_hash(below).unwrap();
    assert_eq!(confirmed_at(&chain, &funding.txid), Some(below));

    let seq = chain.next_event_seq();
    let outcome = chain.reorg(2).unwrap();
    assert_eq!(outcome.disconnected, vec![old_hashes[0], old_below]);
    assert_eq!(outcome.returned, vec![funding.txid, spend_txid]);
    assert!(outcome.dropped.is_empty());
    assert_eq!(chain.height(), BlockHeight(top.0 - 2));
    assert_eq!(chain.mempool_txids(), vec![funding.txid, spend_txid]);
    assert!(chain.spender(&funding).is_some_and(|s| s.height.is_none()));

    let events: Vec<ChainEvent> = chain.events_since(seq).map(|(_, e)| e.clone()).collect();
    let spent_by_tx = |e: &ChainEvent| {
        matches!(e, ChainEvent::SpendReverted { outpoint, spender, height }
        if *outpoint == funding && *spender == spend_txid && *height == top)
    };
    let disconnected: Vec<BlockHeight> = events
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockDisconnected { height, .. } => Some(*height),
            _ => None,
        })
        .collect();
    assert_eq!(disconnected, vec![top, below]);
    assert!(events.iter().any(spent_by_tx));
    assert!(events.contains(&ChainEvent::TxUnconfirmed {
        txid: spend_txid,
        height: top
    }));
    assert!(events.contains(&ChainEvent::TxUnconfirmed {
        txid: funding.txid,
        height: below
    }));
    let accepted: Vec<Txid> = events
        .iter()
        .filter_map(|e| match e {
            ChainEvent::TxAccepted { txid, .. } => Some(*txid),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![funding.txid, spend_txid]);

    // Mining again builds a different chain that confirms both again.
    let new_hashes = chain.mine(2, &miner());
    assert_ne!(new_hashes[0], old_below);
    assert_eq!(confirmed_at(&chain, &funding.txid), Some(below));
    assert_eq!(confirmed_at(&chain, &spend_txid), Some(below));
    assert!(chain.block_by_hash(&old_below).is_none());
    assert_eq!(chain.spender(&funding).and_then(|s| s.height), Some(below));
}

#[test]
fn reorg_drops_spends_of_coinbases_that_become_immature() {
    let mut chain = Chain::new(ChainConfig {
        premine_blocks: 0,
        ..ChainConfig::default()
    })
    .unwrap();
    let alice = key("alice");
    let hash = chain.mine(1, &alice.p2tr())[0];
    let coinbase = chain.block_by_hash(&hash).unwrap().1.txdata[0].clone();
    chain.mine(100, &miner());
    let prev = OutPoint {
        txid: coinbase.compute_txid(),
        vout: 0,
    };
    let mut tx = spend(prev, Sat(1_000_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &coinbase.output[..1])
        .unwrap();
    let txid = chain.accept(tx).unwrap().txid;
    chain.mine(1, &miner());
    assert!(confirmed_at(&chain, &txid).is_some());

    let outcome = chain.reorg(3).unwrap();
    assert!(outcome.returned.is_empty());
    assert!(matches!(outcome.dropped.as_slice(),
        [(t, RejectReason::ImmatureCoinbase { outpoint, .. })] if *t == txid && *outpoint == prev));
    assert!(chain.tx(&txid).is_none());
    assert!(chain.utxo(&prev).is_some());
    assert_eq!(
        chain.reorg(200),
        Err(ChainError::ReorgTooDeep {
            depth: 200,
            height: chain.height()
        })
    );
}

#[test]
fn queries_by_script_and_event_cursor() {
    let mut chain = chain();
    let alice = key("alice");
    let start = chain.next_event_seq();
    let (a, _) = fund(&mut chain, &alice.p2wpkh(), Sat(10_000)).unwrap();
    let (b, _) = fund(&mut chain, &alice.p2wpkh(), Sat(20_000)).unwrap();
    let outputs = chain.outputs_to_script(&alice.p2wpkh());
    assert_eq!(
        outputs
            .iter()
            .map(|o| (o.outpoint, o.value))
            .collect::<Vec<_>>(),
        vec![(a, Sat(10_000)), (b, Sat(20_000))]
    );
    assert_eq!(outputs[1].height, chain.height());

    let seqs: Vec<u64> = chain.events_since(start).map(|(s, _)| s).collect();
    assert_eq!(seqs.first(), Some(&start));
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let mid = start + 3;
    chain.prune_events(mid);
    assert_eq!(chain.events_since(start).next().map(|(s, _)| s), Some(mid));
    assert_eq!(chain.events_since(chain.next_event_seq()).count(), 0);
}

#[test]
fn fee_estimates_follow_the_trace_and_never_rise_with_the_target() {
    let mut chain = chain();
    let tip = chain.height();
    assert_eq!(chain.estimate_fee_sat_kw(1), 2_500);
    chain.set_fee_rate(100);
    assert_eq!(chain.estimate_fee_sat_kw(3), FEE_FLOOR_SAT_KW);

    chain.set_fee_trace(FeeTrace::Spike {
        base_sat_kw: 1_000,
        at_height: BlockHeight(tip.0 + 1),
        rate_sat_kw: 20_000,
        duration_blocks: 3,
    });
    assert_eq!(chain.estimate_fee_sat_kw(1), 20_000);
    assert_eq!(chain.estimate_fee_sat_kw(3), 20_000);
    assert_eq!(chain.estimate_fee_sat_kw(4), 1_000);
    chain.mine(3, &miner());
    assert_eq!(chain.estimate_fee_sat_kw(1), 1_000);

    let diurnal = FeeTrace::Diurnal {
        base_sat_kw: 5_000,
        amplitude_sat_kw: 4_000,
        period_blocks: 144,
    };
    for height in [0u32, 37, 100, 500] {
        let estimates: Vec<u64> = (1..=200)
            .map(|t| diurnal.estimate(t, BlockHeight(height)))
            .collect();
        assert!(
            estimates.windows(2).all(|w| w[1] <= w[0]),
            "rising at {height}"
        );
        assert!(estimates.iter().all(|&e| (1_000..=9_000).contains(&e)));
        assert!(estimates[0] > estimates[199]);
    }
}
