//! Mining, reorgs, queries, events and fee estimates.

use bitcoin::{Amount, OutPoint, TxOut};

use super::*;
use crate::simnet::chain::testutil::{fund, spend};
use crate::simnet::chain::*;

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

    // Spend `a` back to the same script in the mempool: the wallet view drops `a`, shows the
    // unconfirmed change, and the confirmed view marks `a` spent once mined.
    let mut tx = spend(a, Sat(9_000), alice.p2wpkh());
    alice
        .signer
        .sign_p2wpkh(&mut tx, 0, &alice.keypair, Amount::from_sat(10_000))
        .unwrap();
    let change = OutPoint {
        txid: chain.accept(tx).unwrap().txid,
        vout: 0,
    };
    let unspent: Vec<(OutPoint, Option<BlockHeight>)> = chain
        .unspent_outputs_to_script(&alice.p2wpkh())
        .iter()
        .map(|o| (o.outpoint, o.height))
        .collect();
    assert_eq!(unspent, vec![(b, Some(chain.height())), (change, None)]);
    chain.mine(1, &miner());
    let outputs = chain.outputs_to_script(&alice.p2wpkh());
    assert_eq!(outputs[0].spent_by, Some(change.txid));
    assert_eq!(outputs.len(), 3);

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
    // Only a misbehaving estimator answers below the floor.
    chain.set_fee_trace(FeeTrace::BelowFloor(50));
    assert_eq!(chain.estimate_fee_sat_kw(3), 50);

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

#[test]
fn connecting_a_block_logs_confirmations_and_spends_in_order() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    let seq = chain.next_event_seq();
    let txid = chain.accept(tx).unwrap().txid;
    let hash = chain.mine(1, &miner())[0];
    let height = chain.height();
    let coinbase = chain.block_at(height).unwrap().txdata[0].compute_txid();
    let events: Vec<ChainEvent> = chain.events_since(seq).map(|(_, e)| e.clone()).collect();
    assert_eq!(
        events,
        vec![
            ChainEvent::TxAccepted {
                txid,
                replaced: vec![]
            },
            ChainEvent::BlockConnected {
                height,
                hash,
                txids: vec![coinbase, txid]
            },
            ChainEvent::TxConfirmed {
                txid: coinbase,
                height,
                block_hash: hash,
                index: 0
            },
            ChainEvent::TxConfirmed {
                txid,
                height,
                block_hash: hash,
                index: 1
            },
            ChainEvent::Spent {
                outpoint: prev,
                spender: txid,
                input_index: 0,
                height
            },
        ]
    );
}

#[test]
fn a_full_block_leaves_the_lowest_rates_in_the_mempool() {
    let config = ChainConfig {
        max_block_weight: 4_000 + 700,
        ..ChainConfig::default()
    };
    let mut chain = Chain::new(config).unwrap();
    let alice = key("alice");
    let mut txids = Vec::new();
    for fee in [500u64, 2_000] {
        let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
        let mut tx = spend(prev, Sat(50_000 - fee), alice.p2tr());
        alice
            .signer
            .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
            .unwrap();
        assert!(
            tx.weight().to_wu() > 350,
            "two spends must not fit in 700 WU"
        );
        txids.push(chain.accept(tx).unwrap().txid);
    }
    chain.mine(1, &miner());
    assert_eq!(confirmed_at(&chain, &txids[1]), Some(chain.height()));
    assert_eq!(chain.mempool_txids(), vec![txids[0]]);
    chain.mine(1, &miner());
    assert!(chain.mempool_txids().is_empty());
}

#[test]
fn the_faucet_chains_unconfirmed_change_and_runs_dry_when_immature() {
    let mut chain = chain();
    let alice = key("alice");
    let first = chain.faucet(alice.p2wpkh(), Sat(1_000_000)).unwrap();
    let second = chain.faucet(alice.p2wpkh(), Sat(2_000_000)).unwrap();
    // The premine leaves two mature coinbases; the third payment must spend unconfirmed change.
    let third = chain.faucet(alice.p2wpkh(), Sat(3_000_000)).unwrap();
    assert_eq!(
        chain.mempool_txids(),
        vec![first.txid, second.txid, third.txid]
    );
    let parent_of_third = match chain.tx(&third.txid).unwrap() {
        TxStatus::Mempool(entry) => entry.tx.input[0].previous_output.txid,
        TxStatus::Confirmed { .. } => panic!("not mined yet"),
    };
    assert!([first.txid, second.txid].contains(&parent_of_third));
    chain.mine(1, &miner());
    let paid: Vec<Sat> = chain
        .outputs_to_script(&alice.p2wpkh())
        .iter()
        .map(|o| o.value)
        .collect();
    assert_eq!(paid, vec![Sat(1_000_000), Sat(2_000_000), Sat(3_000_000)]);

    let mut empty = Chain::new(ChainConfig {
        premine_blocks: COINBASE_MATURITY - 1,
        ..ChainConfig::default()
    })
    .unwrap();
    assert!(matches!(
        empty.faucet(alice.p2tr(), Sat(10_000)),
        Err(FaucetError::NoCoins { .. })
    ));
    let faucet = empty.faucet_script().clone();
    empty.mine(1, &faucet);
    assert!(empty.faucet(alice.p2tr(), Sat(10_000)).is_ok());
}
