//! Simnet chain throughput: how fast the chain accepts and fully validates taproot
//! script-path spends (the issue asks for at least 1,000 per second per core), and how fast it
//! mines them into a block. Run with `cargo bench --bench simnet_chain`; figures go in
//! `docs/benchmarks.md`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use divan::Bencher;
use divan::counter::ItemsCount;
use sluice::simnet::chain::{Chain, ChainConfig, testutil};

fn main() {
    divan::main();
}

/// Spends per sample: each a distinct confirmed output, pre-signed before timing.
const SPENDS: usize = 1_000;

fn setup() -> (Chain, Vec<bitcoin::Transaction>) {
    let mut chain = Chain::new(ChainConfig::default()).expect("chain");
    let spends = testutil::script_path_spends(&mut chain, SPENDS).expect("setup spends");
    (chain, spends)
}

/// `Chain::accept` on 1,000 one-input taproot script-path spends (`<key> OP_CHECKSIG` leaf):
/// UTXO lookups, amount, lock time, sequence and fee checks, and libbitcoinconsensus with
/// all spent outputs. Throughput is reported per spend.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn accept_taproot_script_path_spends(bencher: Bencher) {
    let (chain, spends) = setup();
    bencher
        .counter(ItemsCount::new(SPENDS))
        .with_inputs(|| (chain.clone(), spends.clone()))
        .bench_local_values(|(mut chain, spends)| {
            for tx in spends {
                chain.accept(tx).expect("a valid spend");
            }
            chain
        });
}

/// `Chain::mine` of one block carrying 1,000 accepted spends: selection, coinbase, witness
/// commitment, merkle root, proof of work and UTXO/index updates.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn mine_block_of_script_path_spends(bencher: Bencher) {
    let (mut chain, spends) = setup();
    for tx in spends {
        chain.accept(tx).expect("a valid spend");
    }
    let miner = chain.faucet_script().clone();
    bencher
        .counter(ItemsCount::new(SPENDS))
        .with_inputs(|| chain.clone())
        .bench_local_values(|mut chain| {
            chain.mine(1, &miner);
            chain
        });
}
