//! Absolute and relative lock times (BIP-65/68/112/113).

use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CLTV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::{Sequence, absolute};

use super::*;
use crate::simnet::chain::sign::csv_checksig_leaf;
use crate::simnet::chain::testutil::{fund, spend};
use crate::simnet::chain::*;

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
fn bip68_time_locks_count_from_the_spent_outputs_median_time() {
    let mut chain = Chain::new(ChainConfig {
        block_spacing_secs: 200,
        ..ChainConfig::default()
    })
    .unwrap();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let funded_at = chain.height();
    // Two units of 512 s, type flag set.
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    tx.input[0].sequence = Sequence::from_consensus((1 << 22) | 2);
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();

    let coin_time = chain.median_time_past(BlockHeight(funded_at.0 - 1));
    let mut accepted_at = None;
    for _ in 0..30 {
        let mtp = chain.median_time_past(chain.height());
        let result = chain.test_accept(&tx);
        if mtp > coin_time + 1024 - 1 {
            assert!(result.is_ok(), "{result:?}");
            accepted_at = Some(chain.height());
            break;
        }
        assert!(
            matches!(result, Err(RejectReason::SequenceLock { input: 0, .. })),
            "{result:?}"
        );
        chain.mine(1, &miner());
    }
    // Blocks are 200 s apart, so the median time past trails the tip by five blocks and the
    // coin's reference time is five blocks before its own: 1,024 s needs six more block times.
    assert_eq!(accepted_at, Some(BlockHeight(funded_at.0 + 5)));
}

#[test]
fn version_1_transactions_ignore_sequence_locks() {
    let mut chain = chain();
    let alice = key("alice");
    let (prev, prevout) = fund(&mut chain, &alice.p2tr(), Sat(50_000)).unwrap();
    let mut tx = spend(prev, Sat(49_000), alice.p2tr());
    tx.input[0].sequence = Sequence::from_consensus(50);
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, std::slice::from_ref(&prevout))
        .unwrap();
    assert!(matches!(
        chain.test_accept(&tx),
        Err(RejectReason::SequenceLock { .. })
    ));
    tx.version = bitcoin::transaction::Version::ONE;
    alice
        .signer
        .sign_p2tr_key(&mut tx, 0, &alice.keypair, &[prevout])
        .unwrap();
    assert!(chain.accept(tx).is_ok());
}
