//! The requests and answers of the `LightningNode` port that only the swap engine and the
//! simnet use: payments, keys, signatures, chain notifications, hold invoices.
//!
//! Pure data: no tonic, no lnd wire types. Amounts are newtypes; hashes and keys are
//! fixed-size arrays or `bitcoin` types, checked when converted from the wire.

use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use crate::domain::{BlockHeight, Msat, NodeId, Preimage, SwapHash};

/// A decoded BOLT 11 invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedInvoice {
    /// The node to pay.
    pub destination: NodeId,
    /// The payment hash.
    pub payment_hash: SwapHash,
    /// The amount asked for; zero for an invoice without an amount.
    pub amount: Msat,
    /// When the invoice was created, Unix seconds.
    pub timestamp_unix: u64,
    /// How long after `timestamp_unix` the invoice stays payable.
    pub expiry: Duration,
    /// The final hop's CLTV delta, in blocks.
    pub min_final_cltv_delta: u64,
    /// The invoice's description, if it has one in clear.
    pub description: String,
    /// The payment address (payment secret), if present.
    pub payment_addr: Option<[u8; 32]>,
    /// The route hints to private channels of the payee.
    pub route_hints: Vec<crate::domain::RouteHint>,
}

/// What to pay and within which limits (`SendPaymentV2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The BOLT 11 invoice.
    pub invoice: String,
    /// The most the routing fees may add up to.
    pub fee_limit: Msat,
    /// Channels the first hop may use; empty lets lnd choose.
    pub outgoing_chan_ids: Vec<crate::domain::ChanId>,
    /// The most HTLCs the payment may be split into; 1 forbids splitting.
    pub max_parts: u32,
    /// How long lnd keeps trying new routes before it fails the payment.
    pub timeout: Duration,
    /// The largest total CLTV the route may have, in blocks; `None` uses lnd's limit.
    pub cltv_limit: Option<u32>,
    /// The node the last hop must come from (lnd's `last_hop_pubkey`); `None` for any.
    pub last_hop: Option<crate::domain::NodeId>,
}

/// Where a payment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStatus {
    /// lnd has recorded the payment but sent no HTLC yet.
    Initiated,
    /// HTLCs are in flight.
    InFlight,
    /// The payment succeeded; the preimage proves it.
    Succeeded {
        /// The preimage the receiver revealed.
        preimage: Preimage,
    },
    /// The payment failed for good.
    Failed(PaymentFailure),
}

impl PaymentStatus {
    /// Whether the payment has reached an outcome that will not change.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded { .. } | PaymentStatus::Failed(_)
        )
    }
}

/// Why a payment failed (lnd's `PaymentFailureReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFailure {
    /// The payment timeout passed before a route succeeded.
    Timeout,
    /// No route was found within the limits.
    NoRoute,
    /// A non-recoverable error happened.
    Error,
    /// The receiver rejected the payment details (unknown hash, wrong amount or CLTV).
    IncorrectPaymentDetails,
    /// Not enough outbound balance.
    InsufficientBalance,
    /// The payment was canceled.
    Canceled,
    /// lnd reported a failure reason this version of sluice does not know.
    Unknown,
}

/// One state of a payment, as streamed by `pay` and `track_payment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentUpdate {
    /// The payment hash.
    pub hash: SwapHash,
    /// Where the payment stands.
    pub status: PaymentStatus,
    /// The amount paid to the receiver.
    pub amount: Msat,
    /// The routing fees paid so far (final once the payment succeeded).
    pub fee: Msat,
    /// How many HTLC attempts are in flight.
    pub htlcs_in_flight: u32,
}

/// What to find a route for (`QueryRoutes`): one HTLC of `amount` to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// The node the HTLC ends at.
    pub destination: NodeId,
    /// What the destination receives.
    pub amount: Msat,
    /// The final hop's CLTV delta (the invoice's), in blocks.
    pub final_cltv_delta: u32,
    /// The payee's route hints to its private channels.
    pub route_hints: Vec<crate::domain::RouteHint>,
}

/// A route for one HTLC, as lnd's `QueryRoutes` finds it and `SendToRouteV2` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRoute {
    /// The height the first hop's HTLC times out at.
    pub total_time_lock: u32,
    /// What the payer sends: the amount plus every hop's fee.
    pub total_amount: Msat,
    /// The fees the forwarding nodes take.
    pub total_fees: Msat,
    /// The hops, the payer's channel first.
    pub hops: Vec<RouteHop>,
}

impl PaymentRoute {
    /// What the last hop delivers to the destination.
    pub fn delivered(&self) -> Msat {
        self.hops.last().map_or(Msat(0), |h| h.amount_to_forward)
    }
}

/// One hop of a [`PaymentRoute`]: the channel to `pubkey` and what crosses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHop {
    /// The channel the HTLC crosses.
    pub chan_id: crate::domain::ChanId,
    /// The node at the far end of the channel.
    pub pubkey: NodeId,
    /// What that node passes on (or, at the last hop, receives).
    pub amount_to_forward: Msat,
    /// What that node keeps for forwarding (zero at the last hop).
    pub fee: Msat,
    /// The CLTV expiry of the HTLC the node passes on (or receives, at the last hop).
    pub expiry: u32,
    /// The multi-path record for the payee; only on the last hop.
    pub mpp: Option<MppRecord>,
}

/// A multi-path payment record: the invoice's payment address and the total of the set of
/// HTLCs this one belongs to. The payee holds the HTLCs of a set until they add up to
/// `total`, and fails them if they still do not after its MPP timeout (lnd: 120 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MppRecord {
    /// The invoice's payment address (payment secret).
    pub payment_addr: [u8; 32],
    /// What the whole set pays.
    pub total: Msat,
}

/// How one HTLC sent with `send_to_route` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HtlcOutcome {
    /// The payee settled it; the preimage proves it.
    Settled {
        /// The preimage the payee revealed.
        preimage: Preimage,
    },
    /// It failed; the code says where and why.
    Failed(HtlcFailure),
}

/// Why an HTLC failed (lnd's `Failure.FailureCode`, the ones sluice tells apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HtlcFailure {
    /// The payee does not know the hash, or the amount, CLTV or payment address is wrong,
    /// or the invoice was canceled.
    IncorrectOrUnknownPaymentDetails,
    /// The payee held it as part of a set that did not complete in time.
    MppTimeout,
    /// A hop lacked the liquidity.
    TemporaryChannelFailure,
    /// Any other code, by lnd's name for it.
    Other(String),
}

/// Names a key in lnd's wallet by family and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyLocator {
    /// The key family (BIP 43 purpose-like branch), e.g. 42 for Loop's swap keys.
    pub family: i32,
    /// The index within the family.
    pub index: i32,
}

/// A key of lnd's wallet: its public key and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDescriptor {
    /// The public key.
    pub pubkey: PublicKey,
    /// Where lnd derived it.
    pub locator: KeyLocator,
}

/// How lnd should sign one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignMethod {
    /// A segwit v0 input spending `witness_script` (P2WSH).
    WitnessV0 {
        /// The script the input's witness program commits to.
        witness_script: ScriptBuf,
    },
    /// A taproot script-path spend of the leaf `leaf_script`.
    TaprootScriptSpend {
        /// The tapleaf script being executed.
        leaf_script: ScriptBuf,
    },
}

/// One input to sign with a wallet key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInput {
    /// The index of the input in the transaction.
    pub input_index: u32,
    /// The key to sign with.
    pub key: KeyDescriptor,
    /// The output the input spends.
    pub output: TxOut,
    /// The sighash flag, as its integer value (0 is taproot's default).
    pub sighash: u32,
    /// What kind of spend this is.
    pub method: SignMethod,
}

/// A request to sign inputs of a transaction (`SignOutputRaw`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// The transaction being signed.
    pub tx: Transaction,
    /// The inputs to sign.
    pub inputs: Vec<SignInput>,
    /// The outputs every input of `tx` spends, in input order (taproot needs all).
    pub prev_outputs: Vec<TxOut>,
}

/// Which MuSig2 draft to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuSig2Version {
    /// The v0.4.0 draft.
    V040,
    /// BIP 327 (v1.0.0-rc2), which Loop's P2TR swaps use.
    V100Rc2,
}

/// The taproot tweak to apply to the aggregated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaprootTweak {
    /// The merkle root of the script tree; empty with `key_spend_only`.
    pub script_root: Vec<u8>,
    /// BIP 86 tweak (no script tree).
    pub key_spend_only: bool,
}

/// A request to open a MuSig2 signing session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuSig2SessionRequest {
    /// The local signing key.
    pub key: KeyLocator,
    /// Every signer's public key, including ours (x-only for v1.0.0-rc2 is 32 bytes,
    /// compressed 33 bytes otherwise).
    pub signer_pubkeys: Vec<Vec<u8>>,
    /// Other signers' public nonces already known (66 bytes each).
    pub other_nonces: Vec<[u8; 66]>,
    /// The taproot tweak, if the key is an output key.
    pub taproot_tweak: Option<TaprootTweak>,
    /// The MuSig2 draft.
    pub version: MuSig2Version,
}

/// An opened MuSig2 session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuSig2Session {
    /// The session id, for the follow-up calls.
    pub id: [u8; 32],
    /// The (tweaked) aggregate key.
    pub combined_key: Vec<u8>,
    /// The untweaked aggregate key, when a taproot tweak was applied.
    pub taproot_internal_key: Vec<u8>,
    /// Our public nonces, to send to the other signers.
    pub local_nonces: [u8; 66],
    /// Whether every signer's nonce is known.
    pub have_all_nonces: bool,
}

/// A chain confirmation watch (`RegisterConfirmationsNtfn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfRequest {
    /// The transaction, if known; without it lnd matches by script only.
    pub txid: Option<Txid>,
    /// An output script of the transaction.
    pub script: ScriptBuf,
    /// Confirmations to wait for.
    pub num_confs: u32,
    /// A height at or below the transaction's, to bound the rescan.
    pub height_hint: BlockHeight,
}

/// A confirmation event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfUpdate {
    /// The transaction reached the requested confirmations.
    Confirmed {
        /// The confirmed transaction.
        tx: Transaction,
        /// The block that holds it.
        block_hash: BlockHash,
        /// That block's height.
        block_height: BlockHeight,
        /// The transaction's index in the block.
        tx_index: u32,
    },
    /// A reorg removed the confirmation; wait for the next `Confirmed`.
    Reorg,
}

/// A spend watch (`RegisterSpendNtfn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRequest {
    /// The outpoint, if known; without it lnd matches by script only.
    pub outpoint: Option<OutPoint>,
    /// The output's script.
    pub script: ScriptBuf,
    /// A height at or below the output's creation, to bound the rescan.
    pub height_hint: BlockHeight,
}

/// A spend event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendUpdate {
    /// The output was spent.
    Spent {
        /// The outpoint that was spent.
        outpoint: OutPoint,
        /// The spending transaction.
        spending_tx: Transaction,
        /// The input of `spending_tx` that spends it.
        input_index: u32,
        /// The height the spend confirmed at.
        height: BlockHeight,
    },
    /// A reorg removed the spend.
    Reorg,
}

/// A block, as the block epoch stream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEpoch {
    /// The block hash.
    pub hash: BlockHash,
    /// The block height.
    pub height: BlockHeight,
}

/// A hold invoice to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInvoiceRequest {
    /// The payment hash; lnd does not learn the preimage until settling.
    pub hash: SwapHash,
    /// The amount.
    pub amount: Msat,
    /// A description.
    pub memo: String,
    /// How long the invoice stays payable.
    pub expiry: Duration,
    /// The final CLTV delta, in blocks.
    pub cltv_expiry: u64,
    /// Route hints to put in the invoice.
    pub route_hints: Vec<crate::domain::RouteHint>,
    /// Whether lnd should add route hints of its own for private channels.
    pub private: bool,
}

/// What paying some outputs from the wallet would cost (`Lightning.EstimateFee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFeeEstimate {
    /// The whole transaction's fee with the wallet's coin selection.
    pub fee: crate::domain::Sat,
    /// The rate it was computed at.
    pub rate: bitcoin::FeeRate,
}

/// One unspent output of the wallet (`ListUnspent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletUtxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it holds.
    pub amount: crate::domain::Sat,
    /// Its confirmations (0 while in the mempool).
    pub confirmations: u32,
}

/// A normal invoice to create with a preimage the caller chose (lnd's `AddInvoice` with
/// `r_preimage`): lnd settles it by itself as soon as a full payment arrives, which reveals the
/// preimage to the payer. The Loop In swap invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRequest {
    /// The preimage; the payment hash is its SHA256.
    pub preimage: Preimage,
    /// The amount.
    pub amount: Msat,
    /// A description.
    pub memo: String,
    /// How long the invoice stays payable.
    pub expiry: Duration,
    /// Route hints to put in the invoice.
    pub route_hints: Vec<crate::domain::RouteHint>,
    /// Whether lnd should add route hints of its own for private channels.
    pub private: bool,
}

/// A created invoice (hold or normal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInvoice {
    /// The BOLT 11 string to hand to the payer.
    pub payment_request: String,
    /// lnd's add index for the invoice.
    pub add_index: u64,
}

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceState {
    /// Not paid yet.
    Open,
    /// HTLCs paying it are locked in, waiting for settle or cancel (hold invoices).
    Accepted,
    /// Settled.
    Settled,
    /// Canceled.
    Canceled,
}

/// One state of an invoice, as streamed by `subscribe_single_invoice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceUpdate {
    /// The invoice's payment hash.
    pub hash: SwapHash,
    /// Its state.
    pub state: InvoiceState,
    /// The invoice amount.
    pub amount: Msat,
    /// What the accepted or settled HTLCs pay.
    pub amount_paid: Msat,
}

/// The lnd build (`GetVersion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// The semantic version string, e.g. "0.21.2-beta".
    pub version: String,
    /// Major, minor and patch numbers.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// The commit the build was made from.
    pub commit_hash: String,
    /// Build tags; sluice needs `signrpc`, `walletrpc`, `chainrpc`, `invoicesrpc`, `routerrpc`.
    pub build_tags: Vec<String>,
}

/// How the wallet chooses the coins it spends (lnd's `CoinSelectionStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CoinSelection {
    /// The node's configured strategy (lnd's `coin-selection-strategy`).
    #[default]
    NodeDefault,
    /// The largest coins first.
    Largest,
    /// Coins in random order.
    Random,
}

/// Outputs for the wallet to pay in one transaction, which it then publishes
/// (`WalletKit.SendOutputs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutputsRequest {
    /// The outputs, in the order the transaction pays them (the wallet may add change after
    /// them). At least one.
    pub outputs: Vec<TxOut>,
    /// The fee rate of the transaction.
    pub fee_rate: bitcoin::FeeRate,
    /// The wallet label of the transaction (at most 500 characters).
    pub label: String,
    /// The confirmations each coin spent must have; 0 allows unconfirmed coins.
    pub min_confs: u32,
    /// The coin selection.
    pub coin_selection: CoinSelection,
}

/// The most characters lnd accepts in a transaction label.
pub const MAX_LABEL_CHARS: usize = 500;
