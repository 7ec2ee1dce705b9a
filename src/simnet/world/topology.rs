//! Building a world: its configuration, the default topology `sluiced --simnet` starts with,
//! and the funding of wallets and channels with real transactions on the chain.

use std::collections::HashMap;

use bitcoin::ScriptBuf;
use bitcoin::blockdata::script::Builder;
use bitcoin::opcodes::all::OP_CHECKMULTISIG;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::channels::{ChannelState, FeePolicy};
use super::keys::{AddressKind, FAMILY_MULTISIG, NodeKeys};
use super::musig::Sessions;
use super::{NodeState, World, WorldError};

/// What the premined mature coinbase can fund with room for fees (it holds 50 BTC).
const PREMINED_BUDGET_SAT: u64 = 40 * 100_000_000;
/// Blocks before a coinbase output may be spent.
const COINBASE_MATURITY: u32 = 100;
/// A bound on the extra blocks a topology may ask for (regtest subsidies run out anyway).
const MAX_EXTRA_COINBASES: u32 = 5_000;

/// A regtest coinbase's subsidy at `height`: 50 BTC, halving every 150 blocks.
fn regtest_subsidy_sat(height: u32) -> u64 {
    let halvings = height / 150;
    if halvings >= 64 {
        0
    } else {
        (50 * 100_000_000u64) >> halvings
    }
}
use crate::domain::{ChanId, Network, Ppm, Sat};
use crate::simnet::chain::{Chain, ChainConfig, FeeTrace, TxStatus};

/// Confirmations the funding transactions get before the world starts.
const FUNDING_CONFIRMATIONS: u32 = 6;

/// One node of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its alias, unique in the world.
    pub alias: String,
    /// The wallet's coins at start, one P2WPKH output each.
    pub wallet_utxos: Vec<Sat>,
}

/// One channel of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The opener's alias.
    pub initiator: String,
    /// The other end's alias.
    pub peer: String,
    /// The channel capacity.
    pub capacity: Sat,
    /// The opener's balance at start; the rest is the peer's.
    pub initiator_balance: Sat,
    /// The fees the opener charges to forward over this channel.
    pub initiator_policy: FeePolicy,
    /// The fees the peer charges to forward over this channel.
    pub peer_policy: FeePolicy,
    /// Whether the channel is unannounced.
    pub private: bool,
}

/// Everything a world is built from. The same configuration always builds the same world.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldConfig {
    /// Seeds keys, nonces, preimages and traffic.
    pub seed: u64,
    /// The network: regtest parameters (`Regtest` or `Simnet`).
    pub network: Network,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The channels.
    pub channels: Vec<ChannelSpec>,
    /// The fee trace the chain's estimates follow.
    pub fee_trace: FeeTrace,
    /// The simulated time at start, Unix seconds.
    pub start_unix: u64,
}

impl WorldConfig {
    /// The world `sluiced --simnet` starts with: "sluice" (the operator's node), "loop" (the
    /// swap server's node) and `peers` peers named "peer1"…, each with a channel to "sluice" of
    /// varied capacity and balance (the seed decides) and a large channel to "loop", so
    /// payments route sluice → peer → loop.
    pub fn default_topology(seed: u64, peers: usize) -> WorldConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5157_1ce0);
        let mut nodes = vec![
            NodeSpec {
                alias: "sluice".to_owned(),
                wallet_utxos: vec![Sat(20_000_000), Sat(30_000_000)],
            },
            NodeSpec {
                alias: "loop".to_owned(),
                wallet_utxos: vec![Sat(500_000_000); 4],
            },
        ];
        let mut channels = Vec::new();
        for i in 1..=peers {
            let alias = format!("peer{i}");
            nodes.push(NodeSpec {
                alias: alias.clone(),
                // Enough for a peer's on-chain needs; small enough that a 10,000-peer world fits
                // the regtest subsidy schedule.
                wallet_utxos: vec![Sat(10_000_000)],
            });
            let capacity = Sat(rng.gen_range(10..=50) * 100_000);
            let share = rng.gen_range(20..=80);
            channels.push(ChannelSpec {
                initiator: "sluice".to_owned(),
                peer: alias.clone(),
                capacity,
                initiator_balance: Sat(capacity.0 * share / 100),
                initiator_policy: FeePolicy {
                    base_msat: 1_000,
                    ppm: Ppm(rng.gen_range(1..=10) * 100),
                    cltv_delta: 80,
                },
                peer_policy: FeePolicy {
                    base_msat: 1_000,
                    ppm: Ppm(rng.gen_range(1..=10) * 50),
                    cltv_delta: 40,
                },
                private: false,
            });
            channels.push(ChannelSpec {
                initiator: alias,
                peer: "loop".to_owned(),
                capacity: Sat(16_000_000),
                initiator_balance: Sat(8_000_000),
                initiator_policy: FeePolicy {
                    base_msat: 1_000,
                    ppm: Ppm(rng.gen_range(1..=10) * 50),
                    cltv_delta: 40,
                },
                peer_policy: FeePolicy::default(),
                private: false,
            });
        }
        WorldConfig {
            seed,
            network: Network::Regtest,
            nodes,
            channels,
            fee_trace: FeeTrace::default(),
            start_unix: 1_700_000_000,
        }
    }
}

impl World {
    /// Builds the world: the chain with its premined faucet, every node's keys, wallet coins
    /// paid by the faucet, and every channel's funding output (a 2-of-2 P2WSH of both nodes'
    /// multisig keys), mined and confirmed 6 times.
    pub fn new(config: WorldConfig) -> Result<World, WorldError> {
        if !matches!(config.network, Network::Regtest | Network::Simnet) {
            return Err(WorldError::Config(format!(
                "network {} is not simulated: use regtest or simnet",
                config.network
            )));
        }
        let start = u32::try_from(config.start_unix)
            .map_err(|_| WorldError::Config("start_unix must fit in 32 bits".to_owned()))?;
        let chain = Chain::new(ChainConfig {
            genesis_time: start,
            block_spacing_secs: 0,
            fee_trace: config.fee_trace.clone(),
            ..ChainConfig::default()
        })?;
        let mut world = World::empty(config.seed, chain, config.network, config.start_unix);
        let mut by_alias = HashMap::new();
        for spec in &config.nodes {
            if by_alias.contains_key(spec.alias.as_str()) {
                return Err(WorldError::Config(format!(
                    "node alias `{}` appears twice in nodes: aliases must be unique",
                    spec.alias
                )));
            }
            let keys = NodeKeys::new(config.seed, &spec.alias)?;
            let id = crate::domain::NodeId(keys.identity().public_key().serialize());
            by_alias.insert(spec.alias.as_str(), world.nodes.len());
            world.nodes.push(NodeState {
                alias: spec.alias.clone(),
                id,
                keys,
                invoices: HashMap::new(),
                payments: HashMap::new(),
                forwards: Vec::new(),
                sent: Vec::new(),
                received: Vec::new(),
                sessions: Sessions::default(),
                next_add_index: 1,
            });
        }
        // The chain premines one mature coinbase. A large topology needs more: mine enough
        // extra coinbases to the faucet and let them mature before funding anything.
        let total_sat: u64 = config
            .nodes
            .iter()
            .flat_map(|n| n.wallet_utxos.iter().map(|a| a.0))
            .chain(config.channels.iter().map(|c| c.capacity.0))
            .sum();
        if total_sat > PREMINED_BUDGET_SAT {
            let mut budget = PREMINED_BUDGET_SAT;
            let mut height = world.chain.height().0;
            let mut extra: u32 = 0;
            while budget < total_sat {
                height += 1;
                extra += 1;
                let subsidy = regtest_subsidy_sat(height);
                if subsidy == 0 || extra > MAX_EXTRA_COINBASES {
                    return Err(WorldError::Config(
                        "the topology needs more coins than the simnet can mine".into(),
                    ));
                }
                // Count four fifths of each coinbase, leaving room for fees.
                budget += subsidy / 5 * 4;
            }
            world.mine(extra.saturating_add(COINBASE_MATURITY));
        }
        for (idx, spec) in config.nodes.iter().enumerate() {
            for amount in &spec.wallet_utxos {
                let script = world.nodes[idx]
                    .keys
                    .next_script(AddressKind::P2wpkh, false)?;
                world.chain.faucet(script, *amount)?;
            }
        }
        let mut funding = Vec::new();
        for spec in &config.channels {
            let find = |alias: &str| {
                by_alias.get(alias).copied().ok_or_else(|| {
                    WorldError::Config(format!(
                        "channel {}–{} names unknown node `{alias}`: add it to nodes",
                        spec.initiator, spec.peer
                    ))
                })
            };
            let (a, b) = (find(&spec.initiator)?, find(&spec.peer)?);
            if a == b || spec.initiator_balance > spec.capacity {
                return Err(WorldError::Config(format!(
                    "channel {}–{}: the ends must differ and the initiator's balance must be at \
                     most the capacity",
                    spec.initiator, spec.peer
                )));
            }
            let key_a = world.nodes[a].keys.next_key(FAMILY_MULTISIG)?.pubkey;
            let key_b = world.nodes[b].keys.next_key(FAMILY_MULTISIG)?.pubkey;
            let script = funding_script(&key_a, &key_b);
            let outpoint = world.chain.faucet(script, spec.capacity)?;
            funding.push((a, b, outpoint));
        }
        world.mine(FUNDING_CONFIRMATIONS);
        for (spec, (a, b, outpoint)) in config.channels.iter().zip(funding) {
            let Some(TxStatus::Confirmed { location, .. }) = world.chain.tx(&outpoint.txid) else {
                return Err(WorldError::Config(
                    "a funding transaction did not confirm: the block was full".to_owned(),
                ));
            };
            let vout = u16::try_from(outpoint.vout)
                .map_err(|_| WorldError::Config("funding output index too large".to_owned()))?;
            let chan_id = ChanId::from_parts(location.height.0, location.index, vout);
            world.channels.push(ChannelState::new(
                chan_id,
                outpoint,
                (a, b),
                spec.capacity,
                spec.initiator_balance,
                (spec.initiator_policy, spec.peer_policy),
                spec.private,
            ));
        }
        Ok(world)
    }
}

/// The P2WSH of `2 <key> <key> 2 OP_CHECKMULTISIG` with the keys in lexicographic order (BOLT 3).
fn funding_script(
    a: &bitcoin::secp256k1::PublicKey,
    b: &bitcoin::secp256k1::PublicKey,
) -> ScriptBuf {
    let mut keys = [a.serialize(), b.serialize()];
    keys.sort();
    let witness_script = Builder::new()
        .push_int(2)
        .push_slice(keys[0])
        .push_slice(keys[1])
        .push_int(2)
        .push_opcode(OP_CHECKMULTISIG)
        .into_script();
    ScriptBuf::new_p2wsh(&witness_script.wscript_hash())
}
