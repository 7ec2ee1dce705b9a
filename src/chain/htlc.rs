//! Loop's on-chain HTLCs, computed locally from the swap's public facts.
//!
//! The client never trusts an address the server names: it derives the script from the swap
//! hash, both keys, the expiry and the protocol version, and only watches that pkScript.
//!
//! Roles: the *sender* funds the HTLC and may take it back after the expiry; the *receiver*
//! claims it with the preimage. In a Loop Out the sender is the swap server and the receiver
//! sluice; in a Loop In the roles are swapped, and (protocol 11) the MuSig2 internal keys are
//! four distinct keys ([`HtlcKeys`]) rather than the two script keys.
//!
//! - **v3** (protocol 11, what sluice creates): a P2TR output whose internal key is the
//!   BIP-327 MuSig2 aggregate of the two sorted 33-byte keys and whose tap tree has a success
//!   leaf (receiver signature + preimage + 1-block CSV) and a timeout leaf (sender signature +
//!   CLTV at the expiry). Protocol 10 swaps used the same leaves but a pre-BIP MuSig2 (0.4.0,
//!   x-only keys) for the internal key; their address differs and is not supported here.
//! - **v2** (protocol 5..9, read-only): a P2WSH script with both branches, so old swaps decode.

use std::fmt;
use std::str::FromStr;

use bitcoin::hashes::{Hash, hash160, ripemd160};
use bitcoin::key::TweakedPublicKey;
use bitcoin::opcodes::all::{
    OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_CSV, OP_DUP, OP_ELSE, OP_ENDIF, OP_EQUALVERIFY,
    OP_HASH160, OP_NOTIF, OP_SIZE,
};
use bitcoin::script::{Builder, Script, ScriptBuf};
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, XOnlyPublicKey, schnorr};
use bitcoin::taproot::{
    ControlBlock, LeafVersion, NodeInfo, TapLeafHash, TapNodeHash, TaprootSpendInfo,
};
use bitcoin::{Address, Witness};
use musig2::KeyAggContext;
use musig2::secp::Point;

use crate::chain::ChainError;
use crate::domain::{Network, SwapHash};

/// The input sequence a success-path spend must carry: both success paths end in `1 CSV`.
pub const SUCCESS_SEQUENCE: u32 = 1;

/// Lock-time values from here on are unix times, not heights; an expiry must stay below.
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// The HTLC formats sluice knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HtlcVersion {
    /// P2WSH, protocol versions 5..9. Read-only.
    V2,
    /// P2TR with a MuSig2 key path, protocol versions 10 and 11.
    V3,
}

impl HtlcVersion {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            HtlcVersion::V2 => "v2",
            HtlcVersion::V3 => "v3",
        }
    }
}

impl fmt::Display for HtlcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HtlcVersion {
    type Err = ChainError;
    fn from_str(s: &str) -> Result<HtlcVersion, ChainError> {
        match s {
            "v3" | "3" => Ok(HtlcVersion::V3),
            "v2" | "2" => Ok(HtlcVersion::V2),
            other => Err(ChainError::invalid(
                "--version",
                format!("`{other}` is not an HTLC version: expected v3 or v2"),
            )),
        }
    }
}

/// Whether a witness that spent an HTLC took a success path (sluice swept) rather than the
/// timeout path (the server took the funds back). v3: one element (key path) or four (success
/// leaf) is success, three is the timeout leaf. v2: four elements is the timeout branch,
/// anything else success. This is Loop's rule; it reads sizes only.
pub fn is_success_witness(version: HtlcVersion, witness: &Witness) -> bool {
    match version {
        HtlcVersion::V3 => matches!(witness.len(), 1 | 4),
        HtlcVersion::V2 => witness.len() != 4,
    }
}

/// Pushes `expiry` as a minimally encoded script number (OP_1..OP_16 for small values,
/// little-endian bytes with a sign byte when needed otherwise), as both versions do.
fn push_expiry(builder: Builder, expiry: u32) -> Builder {
    builder.push_int(i64::from(expiry))
}

fn check_expiry(expiry: u32) -> Result<(), ChainError> {
    if expiry == 0 || expiry >= LOCKTIME_THRESHOLD {
        return Err(ChainError::invalid(
            "--expiry",
            format!(
                "{expiry} is not a block height: the HTLC expiry must be between 1 and {}",
                LOCKTIME_THRESHOLD - 1
            ),
        ));
    }
    Ok(())
}

/// RIPEMD160 of the swap hash, which equals HASH160 of the preimage.
fn ripemd_of_hash(hash: &SwapHash) -> [u8; 20] {
    ripemd160::Hash::hash(&hash.0).to_byte_array()
}

/// Success leaf: `<receiver x-only> CHECKSIGVERIFY SIZE 32 EQUALVERIFY HASH160 <ripemd(H)>
/// EQUALVERIFY 1 CSV`.
fn v3_success_script(receiver: &PublicKey, hash: &SwapHash) -> ScriptBuf {
    Builder::new()
        .push_x_only_key(&receiver.x_only_public_key().0)
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_HASH160)
        .push_slice(ripemd_of_hash(hash))
        .push_opcode(OP_EQUALVERIFY)
        .push_int(1)
        .push_opcode(OP_CSV)
        .into_script()
}

/// Timeout leaf: `<sender x-only> CHECKSIGVERIFY <expiry> CLTV`.
fn v3_timeout_script(sender: &PublicKey, expiry: u32) -> ScriptBuf {
    let b = Builder::new()
        .push_x_only_key(&sender.x_only_public_key().0)
        .push_opcode(OP_CHECKSIGVERIFY);
    push_expiry(b, expiry).push_opcode(OP_CLTV).into_script()
}

/// The BIP-327 key aggregation context of the two keys, sorted lexicographically by their
/// 33-byte encodings (KeySort), as lnd's MuSig2 1.0.0rc2 does for Loop.
fn sorted_key_agg(a: &PublicKey, b: &PublicKey) -> Result<KeyAggContext, ChainError> {
    let mut keys = [a.serialize(), b.serialize()];
    keys.sort();
    let points = keys
        .iter()
        .map(|k| Point::from_slice(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ChainError::invalid("HTLC key", "not a point on secp256k1"))?;
    KeyAggContext::new(points).map_err(ChainError::KeyAggregation)
}

/// The four keys of a v3 HTLC: the script keys of the two leaves and the two keys aggregated
/// into the internal key. Loop Out uses the script keys as internal keys; Loop In does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HtlcKeys {
    /// The timeout leaf's key (the party that funds the HTLC).
    pub sender: PublicKey,
    /// The success leaf's key (the party that claims with the preimage).
    pub receiver: PublicKey,
    /// The sender's half of the internal key.
    pub sender_internal: PublicKey,
    /// The receiver's half of the internal key.
    pub receiver_internal: PublicKey,
}

/// A v3 (P2TR) HTLC with everything needed to watch, sweep and explain it.
#[derive(Debug, Clone)]
pub struct HtlcV3 {
    sender: PublicKey,
    receiver: PublicKey,
    hash: SwapHash,
    expiry: u32,
    network: Network,
    success_script: ScriptBuf,
    timeout_script: ScriptBuf,
    spend_info: TaprootSpendInfo,
    /// Sorted keys, tweaked with the tap root: the context both MuSig2 signers use.
    key_agg: KeyAggContext,
}

impl HtlcV3 {
    /// Builds the HTLC for a swap. `expiry` is the absolute CLTV height of the timeout leaf.
    /// The script keys are also the MuSig2 internal keys (Loop Out).
    pub fn new(
        sender: PublicKey,
        receiver: PublicKey,
        hash: SwapHash,
        expiry: u32,
        network: Network,
    ) -> Result<HtlcV3, ChainError> {
        HtlcV3::with_internal_keys(
            HtlcKeys {
                sender,
                receiver,
                sender_internal: sender,
                receiver_internal: receiver,
            },
            hash,
            expiry,
            network,
        )
    }

    /// Builds an HTLC whose internal key aggregates two keys other than the script keys, as
    /// Loop In does from protocol 11 on (the client's internal key is per swap, so it can be
    /// revealed with `PushKey` without revealing its script key). The MuSig2 context then
    /// holds the internal keys.
    pub fn with_internal_keys(
        keys: HtlcKeys,
        hash: SwapHash,
        expiry: u32,
        network: Network,
    ) -> Result<HtlcV3, ChainError> {
        let HtlcKeys {
            sender,
            receiver,
            sender_internal,
            receiver_internal,
        } = keys;
        check_expiry(expiry)?;
        let success_script = v3_success_script(&receiver, &hash);
        let timeout_script = v3_timeout_script(&sender, expiry);

        let untweaked = sorted_key_agg(&sender_internal, &receiver_internal)?;
        let agg: Point = untweaked.aggregated_pubkey();
        let internal_key = XOnlyPublicKey::from_slice(&agg.serialize_xonly())
            .map_err(|_| ChainError::invalid("HTLC key", "aggregate key is not a valid point"))?;

        // Two leaves at depth one: root = TapBranch(sorted(TapLeaf(success), TapLeaf(timeout))).
        let tree = NodeInfo::combine(
            NodeInfo::new_leaf_with_ver(success_script.clone(), LeafVersion::TapScript),
            NodeInfo::new_leaf_with_ver(timeout_script.clone(), LeafVersion::TapScript),
        )?;
        let root = tree.node_hash().to_byte_array();
        let secp = Secp256k1::verification_only();
        let spend_info = TaprootSpendInfo::from_node_info(&secp, internal_key, tree);
        let key_agg = untweaked
            .with_taproot_tweak(&root)
            .map_err(ChainError::Tweak)?;

        Ok(HtlcV3 {
            sender,
            receiver,
            hash,
            expiry,
            network,
            success_script,
            timeout_script,
            spend_info,
            key_agg,
        })
    }

    /// The server's key.
    pub fn sender(&self) -> PublicKey {
        self.sender
    }

    /// sluice's key.
    pub fn receiver(&self) -> PublicKey {
        self.receiver
    }

    /// The swap hash the success leaf commits to.
    pub fn hash(&self) -> SwapHash {
        self.hash
    }

    /// The absolute CLTV height of the timeout leaf.
    pub fn expiry(&self) -> u32 {
        self.expiry
    }

    /// The network the address is encoded for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The success (receiver + preimage) tapscript.
    pub fn success_script(&self) -> &Script {
        &self.success_script
    }

    /// The timeout (sender after expiry) tapscript.
    pub fn timeout_script(&self) -> &Script {
        &self.timeout_script
    }

    /// BIP-341 TapLeaf hash of the success leaf; a script-path signature commits to it.
    pub fn success_leaf_hash(&self) -> TapLeafHash {
        TapLeafHash::from_script(&self.success_script, LeafVersion::TapScript)
    }

    /// BIP-341 TapLeaf hash of the timeout leaf.
    pub fn timeout_leaf_hash(&self) -> TapLeafHash {
        TapLeafHash::from_script(&self.timeout_script, LeafVersion::TapScript)
    }

    /// The tap tree root: TapBranch of the two leaf hashes in sorted order.
    pub fn merkle_root(&self) -> TapNodeHash {
        // A tree built from two leaves always has a root.
        self.spend_info.merkle_root().unwrap_or_else(|| {
            TapNodeHash::from_node_hashes(
                self.success_leaf_hash().into(),
                self.timeout_leaf_hash().into(),
            )
        })
    }

    /// The internal key P: the untweaked MuSig2 aggregate of the sorted keys (x-only).
    pub fn internal_key(&self) -> XOnlyPublicKey {
        self.spend_info.internal_key()
    }

    /// The output key Q = P + hash_TapTweak(P || root)·G.
    pub fn output_key(&self) -> TweakedPublicKey {
        self.spend_info.output_key()
    }

    /// The pkScript to watch: `OP_1 <x(Q)>`.
    pub fn pk_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.output_key())
    }

    /// The bech32m address of the output key on the HTLC's network.
    pub fn address(&self) -> Address {
        Address::p2tr_tweaked(self.output_key(), self.network.bitcoin())
    }

    fn control_block(&self, script: &ScriptBuf) -> ControlBlock {
        let leaf = (script.clone(), LeafVersion::TapScript);
        self.spend_info.control_block(&leaf).unwrap_or_else(|| {
            // Unreachable for leaves of this tree; rebuild the 65-byte form by hand so the
            // function stays total.
            let sibling = if *script == self.success_script {
                self.timeout_leaf_hash()
            } else {
                self.success_leaf_hash()
            };
            ControlBlock {
                leaf_version: LeafVersion::TapScript,
                output_key_parity: self.spend_info.output_key_parity(),
                internal_key: self.internal_key(),
                merkle_branch: [TapNodeHash::from(sibling)].into(),
            }
        })
    }

    /// The control block proving the success leaf: parity of Q, P, and the timeout leaf hash.
    pub fn success_control_block(&self) -> ControlBlock {
        self.control_block(&self.success_script)
    }

    /// The control block proving the timeout leaf (the server's path).
    pub fn timeout_control_block(&self) -> ControlBlock {
        self.control_block(&self.timeout_script)
    }

    /// The MuSig2 context for the cooperative key-path sweep: the keys in sorted order (signer
    /// indices follow that order) and the taproot tweak by the tree root already applied, so
    /// its aggregated key is Q.
    pub fn key_agg_context(&self) -> &KeyAggContext {
        &self.key_agg
    }

    /// The witness for the success leaf: `[preimage, signature, success script, control
    /// block]`. `sig` is the receiver's BIP-340 signature over the script-path sighash.
    pub fn success_witness(
        &self,
        preimage: &[u8; 32],
        sig: &bitcoin::taproot::Signature,
    ) -> Witness {
        let mut w = Witness::new();
        w.push(preimage);
        w.push(sig.to_vec());
        w.push(self.success_script.as_bytes());
        w.push(self.success_control_block().serialize());
        w
    }

    /// The witness for the timeout leaf: `[signature, timeout script, control block]`. `sig` is
    /// the sender's BIP-340 signature over the script-path sighash of the timeout leaf; valid
    /// only in a transaction whose lock time is at least the expiry.
    pub fn timeout_witness(&self, sig: &bitcoin::taproot::Signature) -> Witness {
        let mut w = Witness::new();
        w.push(sig.to_vec());
        w.push(self.timeout_script.as_bytes());
        w.push(self.timeout_control_block().serialize());
        w
    }

    /// Whether `sig` is a valid key-path signature by Q over `sighash`: how a combined MuSig2
    /// signature is checked before it is broadcast.
    pub fn verify_key_spend(&self, sig: &schnorr::Signature, sighash: [u8; 32]) -> bool {
        let secp = Secp256k1::verification_only();
        secp.verify_schnorr(
            sig,
            &Message::from_digest(sighash),
            &self.output_key().to_x_only_public_key(),
        )
        .is_ok()
    }
}

/// A v2 (P2WSH) HTLC, for decoding and sweeping swaps made before taproot.
#[derive(Debug, Clone)]
pub struct HtlcV2 {
    sender: PublicKey,
    receiver: PublicKey,
    hash: SwapHash,
    expiry: u32,
    network: Network,
    script: ScriptBuf,
}

impl HtlcV2 {
    /// Builds the v2 witness script:
    /// `<receiver> CHECKSIG NOTIF DUP HASH160 <HASH160(sender)> EQUALVERIFY CHECKSIGVERIFY
    /// <expiry> CLTV ELSE SIZE 32 EQUALVERIFY HASH160 <ripemd(H)> EQUALVERIFY 1 CSV ENDIF`.
    pub fn new(
        sender: PublicKey,
        receiver: PublicKey,
        hash: SwapHash,
        expiry: u32,
        network: Network,
    ) -> Result<HtlcV2, ChainError> {
        check_expiry(expiry)?;
        let b = Builder::new()
            .push_slice(receiver.serialize())
            .push_opcode(OP_CHECKSIG)
            .push_opcode(OP_NOTIF)
            .push_opcode(OP_DUP)
            .push_opcode(OP_HASH160)
            .push_slice(hash160::Hash::hash(&sender.serialize()).to_byte_array())
            .push_opcode(OP_EQUALVERIFY)
            .push_opcode(OP_CHECKSIGVERIFY);
        let script = push_expiry(b, expiry)
            .push_opcode(OP_CLTV)
            .push_opcode(OP_ELSE)
            .push_opcode(OP_SIZE)
            .push_int(32)
            .push_opcode(OP_EQUALVERIFY)
            .push_opcode(OP_HASH160)
            .push_slice(ripemd_of_hash(&hash))
            .push_opcode(OP_EQUALVERIFY)
            .push_int(1)
            .push_opcode(OP_CSV)
            .push_opcode(OP_ENDIF)
            .into_script();
        Ok(HtlcV2 {
            sender,
            receiver,
            hash,
            expiry,
            network,
            script,
        })
    }

    /// The server's key.
    pub fn sender(&self) -> PublicKey {
        self.sender
    }

    /// The client's key.
    pub fn receiver(&self) -> PublicKey {
        self.receiver
    }

    /// The swap hash.
    pub fn hash(&self) -> SwapHash {
        self.hash
    }

    /// The absolute CLTV height of the timeout branch.
    pub fn expiry(&self) -> u32 {
        self.expiry
    }

    /// The network the address is encoded for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The witness script (both branches).
    pub fn witness_script(&self) -> &Script {
        &self.script
    }

    /// `OP_0 <SHA256(script)>`.
    pub fn pk_script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&self.script.wscript_hash())
    }

    /// The bech32 P2WSH address on the HTLC's network.
    pub fn address(&self) -> Address {
        Address::p2wsh(&self.script, self.network.bitcoin())
    }

    /// The success witness `[preimage, DER signature || SIGHASH_ALL, script]`.
    pub fn success_witness(&self, preimage: &[u8; 32], sig: &bitcoin::ecdsa::Signature) -> Witness {
        let mut w = Witness::new();
        w.push(preimage);
        w.push(sig.to_vec());
        w.push(self.script.as_bytes());
        w
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;

    fn key(n: u8) -> PublicKey {
        let mut b = [0u8; 32];
        b[31] = n;
        let sk = SecretKey::from_slice(&b).unwrap();
        PublicKey::from_secret_key(&Secp256k1::new(), &sk)
    }

    #[test]
    fn expiry_is_pushed_minimally() {
        let h = SwapHash([7; 32]);
        let s = v3_timeout_script(&key(2), 850_000);
        // 0x20 <32> ad, then 03 50 f8 0c, then b1.
        assert_eq!(&s.as_bytes()[34..], &[0x03, 0x50, 0xf8, 0x0c, 0xb1]);
        let s = v3_timeout_script(&key(2), 10);
        assert_eq!(&s.as_bytes()[34..], &[0x5a, 0xb1], "10 is OP_10");
        // 128 needs a sign byte: 02 80 00.
        let s = v3_timeout_script(&key(2), 128);
        assert_eq!(&s.as_bytes()[34..], &[0x02, 0x80, 0x00, 0xb1]);
        let v2 = HtlcV2::new(key(2), key(3), h, 850_000, Network::Mainnet).unwrap();
        // Counting the byte listing of the v2 script: 97 bytes with a 3-byte height.
        assert_eq!(
            v2.witness_script().len(),
            97,
            "v2 script with a 3-byte height"
        );
    }

    #[test]
    fn success_leaf_has_the_expected_layout() {
        let h = SwapHash([9; 32]);
        let s = v3_success_script(&key(3), &h);
        let b = s.as_bytes();
        assert_eq!(b.len(), 63);
        assert_eq!(b[0], 0x20);
        assert_eq!(&b[1..33], &key(3).x_only_public_key().0.serialize());
        assert_eq!(&b[33..38], &[0xad, 0x82, 0x01, 0x20, 0x88]);
        assert_eq!(b[38], 0xa9);
        assert_eq!(b[39], 0x14);
        assert_eq!(&b[40..60], &ripemd_of_hash(&h));
        assert_eq!(&b[60..], &[0x88, 0x51, 0xb2]);
    }

    #[test]
    fn bad_expiry_is_rejected_with_the_flag_name() {
        let err = HtlcV3::new(key(2), key(3), SwapHash([0; 32]), 0, Network::Regtest)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--expiry:"), "{err}");
        assert!(
            HtlcV2::new(
                key(2),
                key(3),
                SwapHash([0; 32]),
                LOCKTIME_THRESHOLD,
                Network::Regtest
            )
            .is_err()
        );
    }

    #[test]
    fn distinct_internal_keys_change_only_the_internal_key() {
        let h = SwapHash([6; 32]);
        let plain = HtlcV3::new(key(2), key(3), h, 700, Network::Regtest).unwrap();
        let keys = HtlcKeys {
            sender: key(2),
            receiver: key(3),
            sender_internal: key(4),
            receiver_internal: key(5),
        };
        let four = HtlcV3::with_internal_keys(keys, h, 700, Network::Regtest).unwrap();
        assert_eq!(four.success_script(), plain.success_script());
        assert_eq!(four.timeout_script(), plain.timeout_script());
        assert_ne!(four.pk_script(), plain.pk_script());
        let p: Point = sorted_key_agg(&key(5), &key(4))
            .unwrap()
            .aggregated_pubkey();
        assert_eq!(four.internal_key().serialize(), p.serialize_xonly());
        let q: Point = four.key_agg_context().aggregated_pubkey();
        assert_eq!(q.serialize_xonly(), four.output_key().serialize());
    }

    #[test]
    fn key_order_does_not_change_the_internal_key() {
        let h = SwapHash([1; 32]);
        let a = HtlcV3::new(key(2), key(3), h, 100, Network::Regtest).unwrap();
        let b = sorted_key_agg(&key(3), &key(2)).unwrap();
        let p: Point = b.aggregated_pubkey();
        assert_eq!(a.internal_key().serialize(), p.serialize_xonly());
    }

    #[test]
    fn musig_tweak_equals_the_bip341_output_key() {
        let h = SwapHash([5; 32]);
        for (s, r) in [(2, 3), (3, 2), (7, 200), (201, 9)] {
            let htlc = HtlcV3::new(key(s), key(r), h, 1000, Network::Regtest).unwrap();
            let q: Point = htlc.key_agg_context().aggregated_pubkey();
            assert_eq!(q.serialize_xonly(), htlc.output_key().serialize());
        }
    }

    #[test]
    fn control_blocks_commit_to_the_output_key() {
        let htlc = HtlcV3::new(key(2), key(3), SwapHash([3; 32]), 500, Network::Mainnet).unwrap();
        let secp = Secp256k1::verification_only();
        let q = htlc.output_key().to_x_only_public_key();
        assert!(htlc.success_control_block().verify_taproot_commitment(
            &secp,
            q,
            htlc.success_script()
        ));
        assert!(htlc.timeout_control_block().verify_taproot_commitment(
            &secp,
            q,
            htlc.timeout_script()
        ));
        assert!(!htlc.success_control_block().verify_taproot_commitment(
            &secp,
            q,
            htlc.timeout_script()
        ));
        assert_eq!(htlc.success_control_block().serialize().len(), 65);
        assert!(htlc.address().to_string().starts_with("bc1p"));
    }

    #[test]
    fn success_witness_classification() {
        let one = Witness::from_slice(&[[0u8; 64]]);
        let three = Witness::from_slice(&[vec![0u8; 64], vec![1], vec![2]]);
        let four = Witness::from_slice(&[vec![0u8; 32], vec![1], vec![2], vec![3]]);
        assert!(is_success_witness(HtlcVersion::V3, &one));
        assert!(is_success_witness(HtlcVersion::V3, &four));
        assert!(!is_success_witness(HtlcVersion::V3, &three));
        assert!(is_success_witness(HtlcVersion::V2, &three));
        assert!(!is_success_witness(HtlcVersion::V2, &four));
    }

    fn secret(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n;
        SecretKey::from_slice(&b).unwrap()
    }

    fn loop_in_htlc(expiry: u32) -> HtlcV3 {
        HtlcV3::with_internal_keys(
            HtlcKeys {
                sender: key(1),
                receiver: key(2),
                sender_internal: key(3),
                receiver_internal: key(4),
            },
            SwapHash([7; 32]),
            expiry,
            Network::Regtest,
        )
        .unwrap()
    }

    /// The Loop In client's own way back: the timeout leaf signed with the sender's key, at a
    /// lock time of at least the expiry, accepted by Bitcoin Core's interpreter; one block
    /// earlier it is refused.
    #[test]
    fn loop_in_timeout_sweep_passes_consensus_only_from_the_expiry() {
        use crate::chain::fees::{SatPerKw, SweepWitness};
        use crate::chain::sweep::{SweepRequest, build_sweep};
        use crate::chain::verify::verify_spend;
        use crate::domain::{BlockHeight, Sat};

        let expiry = 900;
        let htlc = loop_in_htlc(expiry);
        let sweep_at = |height: u32| {
            let unsigned = build_sweep(&SweepRequest {
                htlc_outpoint: bitcoin::OutPoint {
                    txid: bitcoin::Txid::from_byte_array([5; 32]),
                    vout: 1,
                },
                htlc_value: Sat(100_000),
                htlc_pk_script: htlc.pk_script(),
                path: SweepWitness::V3Timeout {
                    script_len: htlc.timeout_script().len(),
                },
                destination: ScriptBuf::from_bytes([vec![0x00, 0x14], vec![3; 20]].concat()),
                fee_rate: SatPerKw(1_000),
                height: BlockHeight(height),
            })
            .unwrap();
            let sighash = unsigned
                .script_spend_sighash(htlc.timeout_leaf_hash())
                .unwrap();
            let secp = Secp256k1::new();
            let keypair = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &secret(1));
            let sig = secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair);
            let witness = htlc.timeout_witness(&bitcoin::taproot::Signature {
                signature: sig,
                sighash_type: bitcoin::TapSighashType::Default,
            });
            let prevouts = unsigned.prevouts.clone();
            let weight = unsigned.weight;
            let tx = unsigned.signed(witness);
            assert_eq!(tx.weight(), weight, "the timeout weight is exact");
            (tx, prevouts)
        };
        let (tx, prevouts) = sweep_at(expiry);
        verify_spend(&tx, &prevouts).unwrap();
        assert!(!is_success_witness(HtlcVersion::V3, &tx.input[0].witness));
        let (early, prevouts) = sweep_at(expiry - 1);
        assert!(verify_spend(&early, &prevouts).is_err());
    }
}
