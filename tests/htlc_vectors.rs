//! HTLC vectors computed independently of `sluice::chain`, and real spends checked by
//! Bitcoin Core's script interpreter (libbitcoinconsensus).
//!
//! The independent path re-implements, step by step from BIP-327 and BIP-341, what the
//! library gets from `musig2` and `bitcoin`: KeySort, HashKeys, the "second key" rule, the
//! KeyAgg coefficients, the tap leaves and branch, the TapTweak and the bech32m address. Only
//! raw secp256k1 point arithmetic and SHA256 are shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitcoin::bech32::{Hrp, hrp, segwit};
use bitcoin::hashes::{Hash, ripemd160, sha256};
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{
    All, Message, Parity, PublicKey, Scalar, Secp256k1, SecretKey, XOnlyPublicKey,
};
use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, Txid, Witness};
use rand::{Rng, SeedableRng};
use sluice::chain::fees::{SatPerKw, SweepWitness, sweep_weight};
use sluice::chain::htlc::{HtlcV2, HtlcV3, HtlcVersion, is_success_witness};
use sluice::chain::report::{HtlcArgs, htlc_report};
use sluice::chain::sweep::{
    SweepRequest, UnsignedSweep, build_sweep, key_spend_witness, script_spend_sighash,
};
use sluice::chain::verify::verify_spend;
use sluice::domain::{BlockHeight, Network, Sat, SwapHash};

// ---------------------------------------------------------------------------------------------
// Independent BIP-327 / BIP-341 derivation.

fn tagged_hash(tag: &str, msg: &[u8]) -> [u8; 32] {
    let t = sha256::Hash::hash(tag.as_bytes()).to_byte_array();
    let mut data = Vec::with_capacity(64 + msg.len());
    data.extend_from_slice(&t);
    data.extend_from_slice(&t);
    data.extend_from_slice(msg);
    sha256::Hash::hash(&data).to_byte_array()
}

/// BIP-327 KeyAgg over KeySort(keys); returns the aggregate point Q (with its y parity).
fn bip327_key_agg(secp: &Secp256k1<All>, keys: &[PublicKey]) -> PublicKey {
    // KeySort: lexicographic on the 33-byte compressed encodings.
    let mut sorted: Vec<[u8; 33]> = keys.iter().map(PublicKey::serialize).collect();
    sorted.sort();
    key_agg_in_order(secp, &sorted)
}

/// BIP-327 KeyAgg over the keys in the order given.
fn key_agg_in_order(secp: &Secp256k1<All>, sorted: &[[u8; 33]]) -> PublicKey {
    // HashKeys: hash_KeyAgg list(pk1 || ... || pku).
    let concat: Vec<u8> = sorted.iter().flatten().copied().collect();
    let list_hash = tagged_hash("KeyAgg list", &concat);
    // GetSecondKey: the first key different from pk1, else 33 zero bytes.
    let second = sorted
        .iter()
        .find(|k| **k != sorted[0])
        .copied()
        .unwrap_or([0u8; 33]);
    let terms: Vec<PublicKey> = sorted
        .iter()
        .map(|k| {
            let p = PublicKey::from_slice(k).unwrap();
            if *k == second {
                // KeyAggCoeffInternal: the second key gets coefficient 1.
                p
            } else {
                let mut msg = list_hash.to_vec();
                msg.extend_from_slice(k);
                let a = tagged_hash("KeyAgg coefficient", &msg);
                // A hash at or above the group order has probability ~2^-128.
                p.mul_tweak(secp, &Scalar::from_be_bytes(a).unwrap())
                    .unwrap()
            }
        })
        .collect();
    let refs: Vec<&PublicKey> = terms.iter().collect();
    PublicKey::combine_keys(&refs).unwrap()
}

fn compact_size(n: usize) -> Vec<u8> {
    assert!(n < 0xfd);
    vec![n as u8]
}

fn tap_leaf(script: &[u8]) -> [u8; 32] {
    let mut msg = vec![0xc0];
    msg.extend(compact_size(script.len()));
    msg.extend_from_slice(script);
    tagged_hash("TapLeaf", &msg)
}

fn tap_branch(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut msg = lo.to_vec();
    msg.extend_from_slice(&hi);
    tagged_hash("TapBranch", &msg)
}

/// Minimal script-number push, written out by hand.
fn push_number(n: u32) -> Vec<u8> {
    if (1..=16).contains(&n) {
        return vec![0x50 + n as u8];
    }
    let mut bytes = Vec::new();
    let mut v = n;
    while v > 0 {
        bytes.push((v & 0xff) as u8);
        v >>= 8;
    }
    if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        bytes.push(0);
    }
    let mut out = vec![bytes.len() as u8];
    out.extend(bytes);
    out
}

struct Expected {
    success_script: Vec<u8>,
    timeout_script: Vec<u8>,
    success_leaf: [u8; 32],
    timeout_leaf: [u8; 32],
    root: [u8; 32],
    internal_key: [u8; 32],
    output_key: [u8; 32],
    output_parity_odd: bool,
    address: String,
}

fn expected_v3(
    secp: &Secp256k1<All>,
    sender: &PublicKey,
    receiver: &PublicKey,
    hash: &[u8; 32],
    expiry: u32,
    hrp: Hrp,
) -> Expected {
    let ripemd = ripemd160::Hash::hash(hash).to_byte_array();
    let mut success_script = vec![0x20];
    success_script.extend_from_slice(&receiver.serialize()[1..]);
    success_script.extend_from_slice(&[0xad, 0x82, 0x01, 0x20, 0x88, 0xa9, 0x14]);
    success_script.extend_from_slice(&ripemd);
    success_script.extend_from_slice(&[0x88, 0x51, 0xb2]);
    let mut timeout_script = vec![0x20];
    timeout_script.extend_from_slice(&sender.serialize()[1..]);
    timeout_script.push(0xad);
    timeout_script.extend(push_number(expiry));
    timeout_script.push(0xb1);

    let success_leaf = tap_leaf(&success_script);
    let timeout_leaf = tap_leaf(&timeout_script);
    let root = tap_branch(success_leaf, timeout_leaf);

    let agg = bip327_key_agg(secp, &[*sender, *receiver]);
    let internal_key: [u8; 32] = agg.serialize()[1..].try_into().unwrap();
    // BIP-341: Q = lift_x(x(P)) + int(hash_TapTweak(x(P) || root))·G.
    let p_even = XOnlyPublicKey::from_slice(&internal_key)
        .unwrap()
        .public_key(Parity::Even);
    let mut msg = internal_key.to_vec();
    msg.extend_from_slice(&root);
    let t = tagged_hash("TapTweak", &msg);
    let q = p_even
        .add_exp_tweak(secp, &Scalar::from_be_bytes(t).unwrap())
        .unwrap();
    let output_key: [u8; 32] = q.serialize()[1..].try_into().unwrap();
    let address = segwit::encode(hrp, segwit::VERSION_1, &output_key).unwrap();
    Expected {
        success_script,
        timeout_script,
        success_leaf,
        timeout_leaf,
        root,
        internal_key,
        output_key,
        output_parity_odd: q.serialize()[0] == 0x03,
        address,
    }
}

fn assert_matches(htlc: &HtlcV3, want: &Expected) {
    assert_eq!(htlc.success_script().as_bytes(), &want.success_script[..]);
    assert_eq!(htlc.timeout_script().as_bytes(), &want.timeout_script[..]);
    assert_eq!(htlc.success_leaf_hash().to_byte_array(), want.success_leaf);
    assert_eq!(htlc.timeout_leaf_hash().to_byte_array(), want.timeout_leaf);
    assert_eq!(htlc.merkle_root().to_byte_array(), want.root);
    assert_eq!(htlc.internal_key().serialize(), want.internal_key);
    assert_eq!(htlc.output_key().serialize(), want.output_key);
    let mut pk_script = vec![0x51, 0x20];
    pk_script.extend_from_slice(&want.output_key);
    assert_eq!(htlc.pk_script().as_bytes(), &pk_script[..]);
    assert_eq!(htlc.address().to_string(), want.address);
    // Control block of the success leaf: (0xc0 | parity(Q)) || x(P) || TapLeaf(timeout).
    let mut cb = vec![0xc0 | u8::from(want.output_parity_odd)];
    cb.extend_from_slice(&want.internal_key);
    cb.extend_from_slice(&want.timeout_leaf);
    assert_eq!(htlc.success_control_block().serialize(), cb);
}

fn secret(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).unwrap()
}

/// Loop's `swap/htlc_test.go` inputs: CreateKey(n) is the private key 0x00..00‖(n+1), the
/// sender uses n=1 and the receiver n=2; preimage {1,2,3,0,...}; expiry 10; mainnet.
struct LoopVector {
    sender_sk: SecretKey,
    receiver_sk: SecretKey,
    preimage: [u8; 32],
    hash: SwapHash,
    expiry: u32,
}

fn loop_vector() -> LoopVector {
    let mut preimage = [0u8; 32];
    preimage[..3].copy_from_slice(&[1, 2, 3]);
    LoopVector {
        sender_sk: secret(2),
        receiver_sk: secret(3),
        preimage,
        hash: SwapHash(sha256::Hash::hash(&preimage).to_byte_array()),
        expiry: 10,
    }
}

#[test]
fn loop_deterministic_vector_matches_the_independent_derivation() {
    let secp = Secp256k1::new();
    let v = loop_vector();
    let sender = PublicKey::from_secret_key(&secp, &v.sender_sk);
    let receiver = PublicKey::from_secret_key(&secp, &v.receiver_sk);
    let htlc = HtlcV3::new(sender, receiver, v.hash, v.expiry, Network::Mainnet).unwrap();
    let want = expected_v3(&secp, &sender, &receiver, &v.hash.0, v.expiry, hrp::BC);
    assert_matches(&htlc, &want);
    // Expiry 10 is pushed as OP_10.
    assert_eq!(&htlc.timeout_script().as_bytes()[33..], &[0xad, 0x5a, 0xb1]);
}

/// BIP-327's own KeyAgg vector (key_agg_vectors.json, first valid case: X1, X2, X3 in that
/// order) checks the independent implementation above before it is trusted.
#[test]
fn independent_key_agg_reproduces_the_bip327_vector() {
    let keys: Vec<[u8; 33]> = [
        "02F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "03DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "023590A94E768F8E1815C2F24B4D80A8E3149316C3518CE7B7AD338368D038CA66",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap().try_into().unwrap())
    .collect();
    let q = key_agg_in_order(&Secp256k1::new(), &keys);
    assert_eq!(
        hex::encode_upper(&q.serialize()[1..]),
        "90539EEDE565F5D054F32CC0C220126889ED1E5D193BAF15AEF344FE59D4610C"
    );
}

/// A key-aggregation vector published outside this project (a C MuSig2 test suite's
/// swap-in-potentiam example): KeyAgg(2·G, 3·G), which are exactly Loop's deterministic test
/// keys, already in sorted order.
const PUBLISHED_KEYAGG_2G_3G: &str =
    "02f89c20245de19bd2889af0b0b4bad84bfa99e7e181ac8e9549aeebfcbb10fb1b";

#[test]
fn key_aggregation_of_loops_test_keys_matches_a_published_vector() {
    let secp = Secp256k1::new();
    let v = loop_vector();
    let sender = PublicKey::from_secret_key(&secp, &v.sender_sk);
    let receiver = PublicKey::from_secret_key(&secp, &v.receiver_sk);
    let independent = bip327_key_agg(&secp, &[receiver, sender]);
    assert_eq!(independent.to_string(), PUBLISHED_KEYAGG_2G_3G);
    let htlc = HtlcV3::new(sender, receiver, v.hash, v.expiry, Network::Mainnet).unwrap();
    assert_eq!(
        htlc.internal_key().to_string(),
        PUBLISHED_KEYAGG_2G_3G[2..],
        "the internal key is x(KeyAgg)"
    );
}

#[test]
fn random_keys_match_the_independent_derivation() {
    let secp = Secp256k1::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5107ce);
    let networks = [
        (Network::Mainnet, hrp::BC),
        (Network::Testnet, hrp::TB),
        (Network::Regtest, hrp::BCRT),
        (Network::Simnet, hrp::BCRT),
    ];
    for i in 0..24 {
        let s = SecretKey::new(&mut rng);
        // Every sixth case uses the same key twice: KeyAgg's "no second key" branch.
        let r = if i % 6 == 5 {
            s
        } else {
            SecretKey::new(&mut rng)
        };
        let sender = PublicKey::from_secret_key(&secp, &s);
        let receiver = PublicKey::from_secret_key(&secp, &r);
        let hash: [u8; 32] = rng.r#gen();
        let expiry = match i % 4 {
            0 => rng.gen_range(1..=16),
            1 => rng.gen_range(17..=255),
            _ => rng.gen_range(256..500_000_000),
        };
        let (network, hrp) = networks[i % networks.len()];
        let htlc = HtlcV3::new(sender, receiver, SwapHash(hash), expiry, network).unwrap();
        let want = expected_v3(&secp, &sender, &receiver, &hash, expiry, hrp);
        assert_matches(&htlc, &want);
    }
}

#[test]
fn report_for_the_loop_vector_agrees_with_the_htlc() {
    let secp = Secp256k1::new();
    let v = loop_vector();
    let sender = PublicKey::from_secret_key(&secp, &v.sender_sk);
    let receiver = PublicKey::from_secret_key(&secp, &v.receiver_sk);
    let args = HtlcArgs {
        sender_key: sender.to_string(),
        receiver_key: receiver.to_string(),
        hash: hex::encode(v.hash.0),
        expiry: v.expiry,
        network: "mainnet".into(),
        version: "v3".into(),
    };
    let report = htlc_report(&args).unwrap();
    let want = expected_v3(&secp, &sender, &receiver, &v.hash.0, v.expiry, hrp::BC);
    assert_eq!(report.address, want.address);
    assert_eq!(
        report.internal_key.as_deref(),
        Some(hex::encode(want.internal_key).as_str())
    );
    assert_eq!(
        report.output_key.as_deref(),
        Some(hex::encode(want.output_key).as_str())
    );
    assert_eq!(
        report.tap_root.as_deref(),
        Some(hex::encode(want.root).as_str())
    );
    assert_eq!(
        report.success_script.as_deref(),
        Some(hex::encode(&want.success_script).as_str())
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!("address:               {}", want.address)),
        "{text}"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        !json.contains("witness_script"),
        "v3 report has no v2 field: {json}"
    );
    assert_eq!(
        serde_json::from_str::<sluice::chain::HtlcReport>(&json).unwrap(),
        report
    );

    let v2 = htlc_report(&HtlcArgs {
        version: "v2".into(),
        ..args
    })
    .unwrap();
    assert!(v2.address.starts_with("bc1q") && v2.witness_script.is_some() && v2.tap_root.is_none());
}

#[test]
fn report_rejects_bad_input_naming_the_flag() {
    let good = HtlcArgs {
        sender_key: PublicKey::from_secret_key(&Secp256k1::new(), &secret(2)).to_string(),
        receiver_key: PublicKey::from_secret_key(&Secp256k1::new(), &secret(3)).to_string(),
        hash: "11".repeat(32),
        expiry: 800_000,
        network: "regtest".into(),
        version: "v3".into(),
    };
    assert!(htlc_report(&good).is_ok());
    // An x coordinate with no point on the curve: x = 5 has no square root of x^3 + 7.
    let off_curve = format!("02{}", "00".repeat(31) + "05");
    let cases: Vec<(HtlcArgs, &str)> = vec![
        (
            HtlcArgs {
                sender_key: "zz".into(),
                ..good.clone()
            },
            "--sender-key:",
        ),
        (
            HtlcArgs {
                sender_key: good.sender_key[2..].into(),
                ..good.clone()
            },
            "--sender-key:",
        ),
        (
            HtlcArgs {
                receiver_key: off_curve,
                ..good.clone()
            },
            "--receiver-key: not a point",
        ),
        (
            HtlcArgs {
                hash: "11".repeat(31),
                ..good.clone()
            },
            "--hash:",
        ),
        (
            HtlcArgs {
                expiry: 0,
                ..good.clone()
            },
            "--expiry:",
        ),
        (
            HtlcArgs {
                expiry: 500_000_000,
                ..good.clone()
            },
            "--expiry:",
        ),
        (
            HtlcArgs {
                network: "mainet".into(),
                ..good.clone()
            },
            "--network:",
        ),
        (
            HtlcArgs {
                version: "v4".into(),
                ..good.clone()
            },
            "--version:",
        ),
    ];
    for (args, flag) in cases {
        let err = htlc_report(&args).unwrap_err().to_string();
        assert!(err.starts_with(flag), "expected {flag} in `{err}`");
    }
}

// ---------------------------------------------------------------------------------------------
// Real spends, verified by libbitcoinconsensus.

const HTLC_VALUE: Sat = Sat(250_000);

fn funding_outpoint() -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([0xab; 32]),
        vout: 1,
    }
}

fn destination(secp: &Secp256k1<All>) -> ScriptBuf {
    let (xonly, _) = PublicKey::from_secret_key(secp, &secret(77)).x_only_public_key();
    ScriptBuf::new_p2tr(secp, xonly, None)
}

struct Fixture {
    secp: Secp256k1<All>,
    v: LoopVector,
    htlc: HtlcV3,
}

fn fixture() -> Fixture {
    let secp = Secp256k1::new();
    let v = loop_vector();
    let sender = PublicKey::from_secret_key(&secp, &v.sender_sk);
    let receiver = PublicKey::from_secret_key(&secp, &v.receiver_sk);
    // A realistic height so the CLTV and lock-time arithmetic is exercised.
    let htlc = HtlcV3::new(sender, receiver, v.hash, 850_000, Network::Regtest).unwrap();
    Fixture { secp, v, htlc }
}

fn unsigned(f: &Fixture, path: SweepWitness, height: u32) -> UnsignedSweep {
    build_sweep(&SweepRequest {
        htlc_outpoint: funding_outpoint(),
        htlc_value: HTLC_VALUE,
        htlc_pk_script: f.htlc.pk_script(),
        path,
        destination: destination(&f.secp),
        fee_rate: SatPerKw(2_000),
        height: BlockHeight(height),
    })
    .unwrap()
}

fn sign_success_leaf(
    f: &Fixture,
    tx: &Transaction,
    prevouts: &[bitcoin::TxOut],
) -> bitcoin::taproot::Signature {
    let sighash = script_spend_sighash(tx, prevouts, 0, f.htlc.success_leaf_hash()).unwrap();
    let keypair = Keypair::from_secret_key(&f.secp, &f.v.receiver_sk);
    bitcoin::taproot::Signature {
        signature: f
            .secp
            .sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair),
        sighash_type: TapSighashType::Default,
    }
}

#[test]
fn success_script_path_spend_is_valid_and_weighs_what_was_estimated() {
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::V3Success, 849_990);
    assert_eq!(sweep.tx.input[0].sequence, Sequence(1));
    assert_eq!(sweep.tx.version, bitcoin::transaction::Version::TWO);
    let sig = sign_success_leaf(&f, &sweep.tx, &sweep.prevouts);
    let witness = f.htlc.success_witness(&f.v.preimage, &sig);
    let prevouts = sweep.prevouts.clone();
    let estimated = sweep.weight;
    let fee = sweep.fee;
    let tx = sweep.signed(witness);
    verify_spend(&tx, &prevouts).expect("Core accepts the success spend");
    assert_eq!(tx.weight(), estimated);
    assert_eq!(
        tx.output[0].value + Amount::from_sat(fee.0),
        Amount::from_sat(HTLC_VALUE.0)
    );
    assert!(is_success_witness(HtlcVersion::V3, &tx.input[0].witness));
}

#[test]
fn success_spend_with_a_wrong_preimage_fails() {
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::V3Success, 849_990);
    let sig = sign_success_leaf(&f, &sweep.tx, &sweep.prevouts);
    let mut wrong = f.v.preimage;
    wrong[0] ^= 1;
    let prevouts = sweep.prevouts.clone();
    let tx = sweep.signed(f.htlc.success_witness(&wrong, &sig));
    assert!(verify_spend(&tx, &prevouts).is_err());
}

#[test]
fn success_spend_with_sequence_zero_fails_the_csv() {
    let f = fixture();
    let mut sweep = unsigned(&f, SweepWitness::V3Success, 849_990);
    sweep.tx.input[0].sequence = Sequence::ZERO;
    // Signed correctly over the modified transaction: only the CSV can reject it.
    let sig = sign_success_leaf(&f, &sweep.tx, &sweep.prevouts);
    let prevouts = sweep.prevouts.clone();
    let tx = sweep.signed(f.htlc.success_witness(&f.v.preimage, &sig));
    assert!(verify_spend(&tx, &prevouts).is_err());
}

#[test]
fn success_spend_signed_by_the_wrong_key_fails() {
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::V3Success, 849_990);
    let sighash = sweep
        .script_spend_sighash(f.htlc.success_leaf_hash())
        .unwrap();
    let keypair = Keypair::from_secret_key(&f.secp, &f.v.sender_sk);
    let sig = bitcoin::taproot::Signature {
        signature: f
            .secp
            .sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair),
        sighash_type: TapSighashType::Default,
    };
    let prevouts = sweep.prevouts.clone();
    let tx = sweep.signed(f.htlc.success_witness(&f.v.preimage, &sig));
    assert!(verify_spend(&tx, &prevouts).is_err());
}

/// Both MuSig2 partial signatures made locally with `musig2`, over the tweaked context.
fn musig_sign(f: &Fixture, sighash: [u8; 32]) -> bitcoin::secp256k1::schnorr::Signature {
    use musig2::{FirstRound, LiftedSignature, PartialSignature, SecNonceSpices};
    let ctx = f.htlc.key_agg_context().clone();
    let scalar = |sk: &SecretKey| musig2::secp::Scalar::from_slice(&sk.secret_bytes()).unwrap();
    let point = |sk: &SecretKey| {
        musig2::secp::Point::from_slice(&PublicKey::from_secret_key(&f.secp, sk).serialize())
            .unwrap()
    };
    let (s_sk, r_sk) = (scalar(&f.v.sender_sk), scalar(&f.v.receiver_sk));
    let s_idx = ctx.pubkey_index(point(&f.v.sender_sk)).unwrap();
    let r_idx = ctx.pubkey_index(point(&f.v.receiver_sk)).unwrap();
    let mut server = FirstRound::new(
        ctx.clone(),
        [1u8; 32],
        s_idx,
        SecNonceSpices::new()
            .with_seckey(s_sk)
            .with_message(&sighash),
    )
    .unwrap();
    let mut client = FirstRound::new(
        ctx,
        [2u8; 32],
        r_idx,
        SecNonceSpices::new()
            .with_seckey(r_sk)
            .with_message(&sighash),
    )
    .unwrap();
    // Nonces travel as 66-byte encodings, as on the wire.
    let server_nonce = server.our_public_nonce().serialize();
    let client_nonce = client.our_public_nonce().serialize();
    assert_eq!(server_nonce.len(), 66);
    client
        .receive_nonce(s_idx, musig2::PubNonce::from_bytes(&server_nonce).unwrap())
        .unwrap();
    server
        .receive_nonce(r_idx, musig2::PubNonce::from_bytes(&client_nonce).unwrap())
        .unwrap();
    let server = server.finalize(s_sk, sighash).unwrap();
    let mut client = client.finalize(r_sk, sighash).unwrap();
    let partial: PartialSignature = server.our_signature();
    assert_eq!(partial.serialize().len(), 32);
    client.receive_signature(s_idx, partial).unwrap();
    let sig: LiftedSignature = client.finalize().unwrap();
    bitcoin::secp256k1::schnorr::Signature::from_slice(&sig.serialize()).unwrap()
}

#[test]
fn cooperative_key_path_spend_with_a_musig2_aggregate_is_valid() {
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::KeyPath, 849_990);
    assert_eq!(sweep.tx.input[0].sequence, Sequence::ZERO);
    let sighash = sweep.key_spend_sighash().unwrap();
    let sig = musig_sign(&f, sighash);
    assert!(f.htlc.verify_key_spend(&sig, sighash));
    let prevouts = sweep.prevouts.clone();
    let estimated = sweep.weight;
    let tx = sweep.signed(key_spend_witness(&sig));
    verify_spend(&tx, &prevouts).expect("Core accepts the key-path spend");
    assert_eq!(tx.weight(), estimated);
    assert!(is_success_witness(HtlcVersion::V3, &tx.input[0].witness));
}

#[test]
fn key_path_signed_by_one_party_alone_fails() {
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::KeyPath, 849_990);
    let sighash = sweep.key_spend_sighash().unwrap();
    let keypair = Keypair::from_secret_key(&f.secp, &f.v.receiver_sk);
    let sig = f
        .secp
        .sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair);
    assert!(!f.htlc.verify_key_spend(&sig, sighash));
    let prevouts = sweep.prevouts.clone();
    let tx = sweep.signed(key_spend_witness(&sig));
    assert!(verify_spend(&tx, &prevouts).is_err());
}

#[test]
fn timeout_leaf_opens_for_the_server_only_at_the_expiry() {
    let f = fixture();
    let spend_at = |height: u32| -> Result<(), sluice::chain::ChainError> {
        let sweep = unsigned(&f, SweepWitness::V3Success, height);
        let sighash =
            script_spend_sighash(&sweep.tx, &sweep.prevouts, 0, f.htlc.timeout_leaf_hash())
                .unwrap();
        let keypair = Keypair::from_secret_key(&f.secp, &f.v.sender_sk);
        let sig = f
            .secp
            .sign_schnorr_no_aux_rand(&Message::from_digest(sighash), &keypair);
        let mut w = Witness::new();
        w.push(sig.as_ref());
        w.push(f.htlc.timeout_script().as_bytes());
        w.push(f.htlc.timeout_control_block().serialize());
        assert!(!is_success_witness(HtlcVersion::V3, &w));
        let prevouts = sweep.prevouts.clone();
        verify_spend(&sweep.signed(w), &prevouts)
    };
    assert!(spend_at(849_999).is_err(), "one block early");
    spend_at(850_000).expect("at the expiry");
}

#[test]
fn v2_success_spend_is_valid() {
    let f = fixture();
    let htlc = HtlcV2::new(
        f.htlc.sender(),
        f.htlc.receiver(),
        f.v.hash,
        850_000,
        Network::Regtest,
    )
    .unwrap();
    let kind = SweepWitness::V2Success {
        script_len: htlc.witness_script().len(),
    };
    let sweep = build_sweep(&SweepRequest {
        htlc_outpoint: funding_outpoint(),
        htlc_value: HTLC_VALUE,
        htlc_pk_script: htlc.pk_script(),
        path: kind,
        destination: destination(&f.secp),
        fee_rate: SatPerKw(1_000),
        height: BlockHeight(849_990),
    })
    .unwrap();
    let sighash = sweep.v2_sighash(htlc.witness_script()).unwrap();
    let sig = bitcoin::ecdsa::Signature {
        signature: f
            .secp
            .sign_ecdsa(&Message::from_digest(sighash), &f.v.receiver_sk),
        sighash_type: EcdsaSighashType::All,
    };
    let prevouts = sweep.prevouts.clone();
    let estimated = sweep.weight;
    let good = sweep
        .clone()
        .signed(htlc.success_witness(&f.v.preimage, &sig));
    verify_spend(&good, &prevouts).expect("Core accepts the v2 success spend");
    assert!(good.weight() <= estimated && good.weight().to_wu() + 2 >= estimated.to_wu());
    assert!(is_success_witness(HtlcVersion::V2, &good.input[0].witness));
    let bad = sweep.signed(htlc.success_witness(&[0u8; 32], &sig));
    assert!(verify_spend(&bad, &prevouts).is_err());
}

#[test]
fn fee_is_clamped_and_dust_is_refused() {
    let f = fixture();
    let base = SweepRequest {
        htlc_outpoint: funding_outpoint(),
        htlc_value: Sat(10_000),
        htlc_pk_script: f.htlc.pk_script(),
        path: SweepWitness::V3Success,
        destination: destination(&f.secp),
        fee_rate: SatPerKw(1_000_000),
        height: BlockHeight(849_990),
    };
    // 607 wu at 1000 sat/vB would be 607 000 sat; the clamp leaves 20 % of 10 000.
    let sweep = build_sweep(&base).unwrap();
    assert!(sweep.fee_clamped);
    assert_eq!(sweep.fee, Sat(2_000));
    assert_eq!(sweep.tx.output[0].value, Amount::from_sat(8_000));
    assert_eq!(
        sweep.weight,
        sweep_weight(SweepWitness::V3Success, &base.destination)
    );

    let dust = build_sweep(&SweepRequest {
        htlc_value: Sat(300),
        fee_rate: SatPerKw(253),
        ..base
    });
    assert!(
        matches!(dust, Err(sluice::chain::ChainError::Dust { .. })),
        "{dust:?}"
    );
}

#[test]
fn coop_session_and_cosign_produce_a_valid_key_path_spend() {
    use sluice::chain::musig::{CoopSession, cosign};
    let f = fixture();
    let sweep = unsigned(&f, SweepWitness::KeyPath, 849_990);
    let sighash = sweep.key_spend_sighash().unwrap();
    let client = CoopSession::start(&f.htlc, &f.v.receiver_sk, sighash, [11; 32]).unwrap();
    // The server recomputes the sighash from the PSBT, as MuSig2SignSweep does.
    let psbt = sweep.psbt().unwrap();
    let prevouts: Vec<_> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    let server_sighash =
        sluice::chain::sweep::key_spend_sighash(&psbt.unsigned_tx, &prevouts, 0).unwrap();
    let (nonce, partial) = cosign(
        &f.htlc,
        &f.v.sender_sk,
        server_sighash,
        &client.public_nonce(),
        [12; 32],
    )
    .unwrap();
    let sig = client.finish(&nonce, &partial).unwrap();
    let tx = sweep.signed(key_spend_witness(&sig));
    verify_spend(&tx, &prevouts).expect("Core accepts the cooperative spend");
}

/// The `sluice htlc` command itself, run as a binary with no daemon, prints what the
/// independent derivation computes for Loop's deterministic inputs and for a random case.
#[test]
fn sluice_htlc_command_prints_the_independently_derived_vector() {
    let secp = Secp256k1::new();
    let v = loop_vector();
    let mut cases = vec![(v.sender_sk, v.receiver_sk, v.hash.0, v.expiry)];
    cases.push((secret(77), secret(91), [0xab; 32], 850_000));
    for (sender_sk, receiver_sk, hash, expiry) in cases {
        let sender = PublicKey::from_secret_key(&secp, &sender_sk);
        let receiver = PublicKey::from_secret_key(&secp, &receiver_sk);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--json", "htlc", "--network", "mainnet"])
            .args(["--sender-key", &hex::encode(sender.serialize())])
            .args(["--receiver-key", &hex::encode(receiver.serialize())])
            .args(["--hash", &hex::encode(hash)])
            .args(["--expiry", &expiry.to_string()])
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = expected_v3(&secp, &sender, &receiver, &hash, expiry, hrp::BC);
        assert_eq!(report["success_script"], hex::encode(&want.success_script));
        assert_eq!(report["timeout_script"], hex::encode(&want.timeout_script));
        assert_eq!(report["success_leaf_hash"], hex::encode(want.success_leaf));
        assert_eq!(report["timeout_leaf_hash"], hex::encode(want.timeout_leaf));
        assert_eq!(report["tap_root"], hex::encode(want.root));
        assert_eq!(report["internal_key"], hex::encode(want.internal_key));
        assert_eq!(report["output_key"], hex::encode(want.output_key));
        assert_eq!(report["address"], want.address);
    }
}

#[test]
fn sluice_htlc_command_names_the_bad_flag_and_exits_64() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["htlc", "--sender-key", "02ab", "--receiver-key", "02ab"])
        .args(["--hash", &"00".repeat(32), "--expiry", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--sender-key"), "{stderr}");
}
