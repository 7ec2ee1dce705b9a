//! A simulated node's keys: one BIP-32 master from the world seed and the node's alias, lnd's
//! key families under `m/1017'/1'/family'/0/index`, and wallet addresses under BIP-84 (P2WPKH)
//! and BIP-86 (P2TR) accounts, as lnd's wallet derives them on regtest.

use std::collections::HashMap;

use bitcoin::bip32::{ChildNumber, Xpriv};
use bitcoin::hashes::{Hash, sha256};
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{CompressedPublicKey, ScriptBuf};

use super::WorldError;
use crate::lnd::types::{KeyDescriptor, KeyLocator};

/// lnd's BIP-43 purpose for its key families.
const KEY_FAMILY_PURPOSE: u32 = 1017;
/// The coin type lnd uses on test networks (regtest included).
const TEST_COIN_TYPE: u32 = 1;
/// lnd's key family for the node identity key.
pub const FAMILY_NODE_KEY: i32 = 6;
/// lnd's key family for channel funding (2-of-2 multisig) keys.
pub const FAMILY_MULTISIG: i32 = 0;

/// Which kind of wallet address a script is, so the wallet knows how to sign for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// BIP-84 pay-to-witness-public-key-hash.
    P2wpkh,
    /// BIP-86 key-path-only taproot.
    P2tr,
}

/// A wallet script and the key that spends it.
#[derive(Debug, Clone)]
pub struct WalletScript {
    /// How to spend it.
    pub kind: AddressKind,
    /// The key pair (untweaked for P2TR).
    pub keypair: Keypair,
}

/// The keys of one simulated node. Secrets never leave this struct except to sign.
pub struct NodeKeys {
    secp: Secp256k1<All>,
    master: Xpriv,
    identity: Keypair,
    /// The next unused index per key family.
    next_index: HashMap<i32, u32>,
    /// The next unused index per (address kind, change).
    next_address: HashMap<(u8, u32), u32>,
    /// Every wallet script handed out, with its key.
    scripts: HashMap<ScriptBuf, WalletScript>,
    /// Wallet scripts in the order they were handed out (for deterministic scans).
    order: Vec<ScriptBuf>,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("identity", &self.identity.public_key())
            .finish_non_exhaustive()
    }
}

impl NodeKeys {
    /// The keys of the node `alias` in a world seeded with `seed`: the same inputs always give
    /// the same keys, so a simnet run repeats.
    pub fn new(seed: u64, alias: &str) -> Result<NodeKeys, WorldError> {
        let secp = Secp256k1::new();
        let mut material = seed.to_be_bytes().to_vec();
        material.extend_from_slice(alias.as_bytes());
        let digest = sha256::Hash::hash(&material);
        let master = Xpriv::new_master(bitcoin::NetworkKind::Test, digest.as_byte_array())
            .map_err(|e| WorldError::Keys(e.to_string()))?;
        let identity = derive(
            &secp,
            &master,
            &family_path(FAMILY_NODE_KEY.unsigned_abs(), 0)?,
        )?;
        Ok(NodeKeys {
            secp,
            master,
            identity,
            next_index: HashMap::from([(FAMILY_NODE_KEY, 1)]),
            next_address: HashMap::new(),
            scripts: HashMap::new(),
            order: Vec::new(),
        })
    }

    /// The secp256k1 context.
    pub fn secp(&self) -> &Secp256k1<All> {
        &self.secp
    }

    /// The node's identity key pair (family 6, index 0).
    pub fn identity(&self) -> &Keypair {
        &self.identity
    }

    /// The key pair at a locator.
    pub fn keypair_at(&self, locator: KeyLocator) -> Result<Keypair, WorldError> {
        let family = u32::try_from(locator.family).map_err(|_| {
            WorldError::InvalidArgument(format!("key family {} is negative", locator.family))
        })?;
        let index = u32::try_from(locator.index).map_err(|_| {
            WorldError::InvalidArgument(format!("key index {} is negative", locator.index))
        })?;
        derive(&self.secp, &self.master, &family_path(family, index)?)
    }

    /// The descriptor (public key and locator) at a locator.
    pub fn descriptor(&self, locator: KeyLocator) -> Result<KeyDescriptor, WorldError> {
        Ok(KeyDescriptor {
            pubkey: self.keypair_at(locator)?.public_key(),
            locator,
        })
    }

    /// The next unused key of `family`, counting up from 0 per family.
    pub fn next_key(&mut self, family: i32) -> Result<KeyDescriptor, WorldError> {
        let index = self.next_index.get(&family).copied().unwrap_or(0);
        let locator = KeyLocator {
            family,
            index: i32::try_from(index).map_err(|_| {
                WorldError::InvalidArgument(format!("key family {family} is exhausted"))
            })?,
        };
        let descriptor = self.descriptor(locator)?;
        self.next_index.insert(family, index + 1);
        Ok(descriptor)
    }

    /// A fresh wallet script of `kind` (`change` selects the internal chain), remembered so
    /// the wallet finds and signs its outputs.
    pub fn next_script(
        &mut self,
        kind: AddressKind,
        change: bool,
    ) -> Result<ScriptBuf, WorldError> {
        let (purpose, kind_tag) = match kind {
            AddressKind::P2wpkh => (84, 0u8),
            AddressKind::P2tr => (86, 1u8),
        };
        let branch = u32::from(change);
        let index = self
            .next_address
            .get(&(kind_tag, branch))
            .copied()
            .unwrap_or(0);
        let path = [
            hardened(purpose)?,
            hardened(TEST_COIN_TYPE)?,
            hardened(0)?,
            normal(branch)?,
            normal(index)?,
        ];
        let keypair = derive(&self.secp, &self.master, &path)?;
        let script = match kind {
            AddressKind::P2wpkh => {
                ScriptBuf::new_p2wpkh(&CompressedPublicKey(keypair.public_key()).wpubkey_hash())
            }
            AddressKind::P2tr => {
                ScriptBuf::new_p2tr(&self.secp, keypair.x_only_public_key().0, None)
            }
        };
        self.next_address.insert((kind_tag, branch), index + 1);
        self.scripts
            .insert(script.clone(), WalletScript { kind, keypair });
        self.order.push(script.clone());
        Ok(script)
    }

    /// The wallet's key for `script`, if the wallet handed it out.
    pub fn wallet_script(&self, script: &ScriptBuf) -> Option<&WalletScript> {
        self.scripts.get(script)
    }

    /// Every wallet script, oldest first.
    pub fn wallet_scripts(&self) -> &[ScriptBuf] {
        &self.order
    }

    /// The secret key of `pubkey` if it is one of the keys this node derived from a family
    /// (searching each family up to the next unused index).
    pub fn secret_for(&self, pubkey: &PublicKey) -> Option<SecretKey> {
        for (&family, &next) in &self.next_index {
            for index in 0..next {
                let Ok(index) = i32::try_from(index) else {
                    break;
                };
                if let Ok(kp) = self.keypair_at(KeyLocator { family, index })
                    && kp.public_key() == *pubkey
                {
                    return Some(kp.secret_key());
                }
            }
        }
        None
    }
}

fn family_path(family: u32, index: u32) -> Result<[ChildNumber; 5], WorldError> {
    Ok([
        hardened(KEY_FAMILY_PURPOSE)?,
        hardened(TEST_COIN_TYPE)?,
        hardened(family)?,
        normal(0)?,
        normal(index)?,
    ])
}

fn derive(
    secp: &Secp256k1<All>,
    master: &Xpriv,
    path: &[ChildNumber],
) -> Result<Keypair, WorldError> {
    let xpriv = master
        .derive_priv(secp, &path)
        .map_err(|e| WorldError::Keys(e.to_string()))?;
    Ok(Keypair::from_secret_key(secp, &xpriv.private_key))
}

fn hardened(index: u32) -> Result<ChildNumber, WorldError> {
    ChildNumber::from_hardened_idx(index).map_err(|e| WorldError::Keys(e.to_string()))
}

fn normal(index: u32) -> Result<ChildNumber, WorldError> {
    ChildNumber::from_normal_idx(index).map_err(|e| WorldError::Keys(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_repeat_per_seed_and_alias_and_families_count_separately() {
        let mut a = NodeKeys::new(7, "sluice").unwrap();
        let b = NodeKeys::new(7, "sluice").unwrap();
        let c = NodeKeys::new(8, "sluice").unwrap();
        assert_eq!(a.identity().public_key(), b.identity().public_key());
        assert_ne!(a.identity().public_key(), c.identity().public_key());
        let k0 = a.next_key(42).unwrap();
        let k1 = a.next_key(42).unwrap();
        let other = a.next_key(99).unwrap();
        assert_eq!(
            (k0.locator.index, k1.locator.index, other.locator.index),
            (0, 1, 0)
        );
        assert_ne!(k0.pubkey, k1.pubkey);
        let again = a
            .descriptor(KeyLocator {
                family: 42,
                index: 1,
            })
            .unwrap();
        assert_eq!(again, k1);
        assert_eq!(
            a.secret_for(&k1.pubkey).map(|s| s.public_key(a.secp())),
            Some(k1.pubkey)
        );
    }
}
