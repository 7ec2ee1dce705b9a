//! The `SwapProvider` port: what the swap engine needs from a swap server, in domain types.
//!
//! The Loop client in [`super::client`] implements it over gRPC; the engine and its tests
//! only see this trait, so no wire type leaks past the provider edge.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::error::ProviderError;
use crate::domain::{BlockHeight, Sat, SwapHash};

/// The server's current limits for a Loop Out (`LoopOutTerms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopOutTerms {
    /// Smallest swap amount the server accepts.
    pub min_amount: Sat,
    /// Largest swap amount the server accepts.
    pub max_amount: Sat,
    /// Smallest allowed `expiry - current height`.
    pub min_cltv_delta: u32,
    /// Largest allowed `expiry - current height`.
    pub max_cltv_delta: u32,
}

/// The server's price for one Loop Out amount (`LoopOutQuote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopOutQuote {
    /// The node the swap invoice will pay (33-byte compressed key); checked again against the
    /// swap invoice's payee when the swap is created.
    pub swap_payment_dest: [u8; 33],
    /// Total server fee, prepayment included.
    pub swap_fee: Sat,
    /// The part of the fee paid up front ("no-show" prepayment).
    pub prepay_amount: Sat,
}

/// What sluice asks for when creating a Loop Out (`NewLoopOutSwap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLoopOutRequest {
    /// sluice's 33-byte compressed HTLC key (script key and MuSig2 key).
    pub receiver_key: [u8; 33],
    /// SHA256 of the preimage sluice generated.
    pub swap_hash: SwapHash,
    /// On-chain amount the HTLC must pay.
    pub amount: Sat,
    /// Absolute CLTV height of the HTLC's timeout branch.
    pub expiry: BlockHeight,
    /// Latest time (unix seconds) the server may publish the HTLC; negative or past means now.
    pub publication_deadline_unix_s: i64,
    /// Who asked for the swap (e.g. a policy name); filtered into the user agent.
    pub initiator: String,
}

/// The server's unvalidated answer to [`NewLoopOutRequest`]. Nothing here may be trusted
/// before [`super::validate::validate_loop_out`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLoopOutResponse {
    /// BOLT11 swap invoice (hold invoice keyed by the swap hash).
    pub swap_invoice: String,
    /// BOLT11 prepayment invoice.
    pub prepay_invoice: String,
    /// The server's HTLC key as sent. Kept as raw bytes of any length so that validation can
    /// report a wrong length as its own error.
    pub sender_key: Vec<u8>,
    /// A human-readable note from the server, for the operator.
    pub server_message: String,
}

/// The server's current limits for a Loop In (`LoopInTerms`). Unlike Loop Out there are no
/// CLTV limits: the server alone picks the expiry and the client only bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInTerms {
    /// Smallest swap amount the server accepts.
    pub min_amount: Sat,
    /// Largest swap amount the server accepts.
    pub max_amount: Sat,
}

/// Where the server should send a Loop In's payment, for the quote and the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInRoute {
    /// The HTLC value.
    pub amount: Sat,
    /// sluice's lnd node key (33 bytes), which the server pays.
    pub node: [u8; 33],
    /// The peer the payment should arrive through, if any (a request, not enforceable).
    pub last_hop: Option<[u8; 33]>,
    /// Hints to the node's private channels (the same the invoices will carry).
    pub route_hints: Vec<crate::domain::RouteHint>,
}

/// The server's price for one Loop In amount (`LoopInQuote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInQuote {
    /// The server's fee; the swap invoice will ask for `amount − swap_fee`.
    pub swap_fee: Sat,
    /// The HTLC CLTV delta the server expects to choose; sluice bounds the expiry by it.
    pub cltv_delta: i32,
}

/// What sluice asks for when creating a Loop In (`NewLoopInSwap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLoopInRequest {
    /// sluice's 33-byte script key (timeout leaf).
    pub sender_key: [u8; 33],
    /// sluice's 33-byte per-swap MuSig2 internal key.
    pub sender_internal_key: [u8; 33],
    /// SHA256 of the preimage sluice generated.
    pub swap_hash: SwapHash,
    /// The HTLC value.
    pub amount: Sat,
    /// sluice's swap invoice (normal invoice for `amount − swap_fee`, hash = swap hash).
    pub swap_invoice: String,
    /// sluice's probe invoice (hold invoice, never settled).
    pub probe_invoice: String,
    /// The peer the payment should arrive through, if any.
    pub last_hop: Option<[u8; 33]>,
    /// Who asked for the swap; filtered into the user agent.
    pub initiator: String,
}

/// The server's unvalidated answer to [`NewLoopInRequest`]. Nothing here may be trusted before
/// [`super::validate::validate_loop_in`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLoopInResponse {
    /// The server's script key (success leaf), raw bytes as sent.
    pub receiver_key: Vec<u8>,
    /// The server's MuSig2 internal key, raw bytes as sent.
    pub receiver_internal_key: Vec<u8>,
    /// The HTLC's absolute expiry height, as sent.
    pub expiry: i32,
    /// A human-readable note from the server, for the operator.
    pub server_message: String,
}

/// One input of a sweep transaction, as the server needs it to compute sighashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPrevout {
    /// Value of the spent output.
    pub value: Sat,
    /// Script of the spent output.
    pub pk_script: Vec<u8>,
    /// Txid of the spent output, internal byte order.
    pub txid: [u8; 32],
    /// Index of the spent output.
    pub output_index: u32,
}

/// A request for the server's MuSig2 partial signature on a cooperative sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSignRequest {
    /// The swap whose HTLC is swept.
    pub swap_hash: SwapHash,
    /// The swap invoice's payment secret: the server's proof that the caller owns the swap.
    pub payment_address: [u8; 32],
    /// sluice's 66-byte public MuSig2 nonce.
    pub nonce: [u8; 66],
    /// The serialized PSBT of the whole sweep transaction.
    pub sweep_psbt: Vec<u8>,
    /// Every input's spent output, in input order.
    pub prevouts: Vec<SweepPrevout>,
}

/// The server's half of a MuSig2 signing session, length-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPartialSig {
    /// The server's 66-byte public nonce.
    pub nonce: [u8; 66],
    /// The server's 32-byte partial signature (verified by the caller when combining).
    pub partial_sig: [u8; 32],
}

/// Which off-chain payment failed, for `CancelLoopOutSwap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRoute {
    /// The prepayment.
    Prepay,
    /// The swap invoice.
    Invoice,
}

/// Why the payment failed, in lnd's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFailure {
    /// No reason given.
    None,
    /// The payment timed out.
    Timeout,
    /// No route was found.
    NoRoute,
    /// A non-recoverable error.
    Error,
    /// The destination refused the payment details.
    IncorrectPaymentDetails,
    /// Not enough outbound balance.
    InsufficientBalance,
}

/// A best-effort notice to the server that sluice gives up on a swap's payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The swap given up.
    pub swap_hash: SwapHash,
    /// The swap invoice's payment secret (ownership proof).
    pub payment_address: [u8; 32],
    /// Which payment failed.
    pub route: CancelRoute,
    /// For each failed HTLC attempt, route length minus the failure source index. The client
    /// sends values above 2 as `u32::MAX` so the server learns nothing beyond its own hops.
    pub remaining_hops: Vec<u32>,
    /// Why the payment failed.
    pub failure: PaymentFailure,
}

/// The server's view of a swap, from `SubscribeLoopOutUpdates` (informational only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ServerSwapState {
    Initiated,
    HtlcPublished,
    Success,
    FailedUnknown,
    FailedNoHtlc,
    FailedInvalidHtlcAmount,
    FailedOffChainTimeout,
    FailedTimeout,
    FailedSwapDeadline,
    FailedHtlcPublication,
    TimeoutPublished,
    UnexpectedFailure,
    HtlcConfirmed,
    ClientPrepayCancel,
    ClientInvoiceCancel,
    FailedMultipleSwapScripts,
    FailedInitialization,
    /// A value this version does not know; kept so that a newer server does not break the
    /// stream.
    Unknown(i32),
}

impl ServerSwapState {
    /// Maps the wire value (`looprpc.ServerSwapState`).
    pub fn from_code(code: i32) -> ServerSwapState {
        use ServerSwapState::*;
        const ALL: [ServerSwapState; 17] = [
            Initiated,
            HtlcPublished,
            Success,
            FailedUnknown,
            FailedNoHtlc,
            FailedInvalidHtlcAmount,
            FailedOffChainTimeout,
            FailedTimeout,
            FailedSwapDeadline,
            FailedHtlcPublication,
            TimeoutPublished,
            UnexpectedFailure,
            HtlcConfirmed,
            ClientPrepayCancel,
            ClientInvoiceCancel,
            FailedMultipleSwapScripts,
            FailedInitialization,
        ];
        usize::try_from(code)
            .ok()
            .and_then(|i| ALL.get(i).copied())
            .unwrap_or(Unknown(code))
    }
}

/// One update from the server's status stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSwapUpdate {
    /// When the server recorded the state, unix nanoseconds.
    pub timestamp_unix_ns: i64,
    /// The server's state.
    pub state: ServerSwapState,
}

/// A stream of server updates; ends when the server has nothing more to say.
pub type SwapUpdateStream = BoxStream<'static, Result<ServerSwapUpdate, ProviderError>>;

/// A Loop swap server (Loop Out and Loop In). Every method sends protocol version 11 and
/// handles L402 itself.
///
/// Retrying: an error with [`ProviderError::is_transient`] may succeed later, but whether a
/// repeat is *harmless* depends on the method, stated on each.
#[async_trait]
pub trait SwapProvider: Send + Sync {
    /// Current amount and CLTV limits. Read-only: safe to repeat.
    async fn loop_out_terms(&self) -> Result<LoopOutTerms, ProviderError>;

    /// The price for `amount` with the HTLC expiring at `expiry` and published by
    /// `publication_deadline_unix_s`. Read-only: safe to repeat.
    async fn loop_out_quote(
        &self,
        amount: Sat,
        expiry: BlockHeight,
        publication_deadline_unix_s: i64,
    ) -> Result<LoopOutQuote, ProviderError>;

    /// Creates a swap on the server. **Not idempotent**: a repeat with the same swap hash is
    /// refused by the server, and a repeat after a lost answer leaves an orphan swap there. On
    /// a transient error, start over with a fresh preimage rather than repeating.
    async fn new_loop_out(
        &self,
        req: &NewLoopOutRequest,
    ) -> Result<NewLoopOutResponse, ProviderError>;

    /// Hands the preimage to the server so it settles the swap invoice (the server finds the
    /// swap by hashing it). Safe to repeat, and meant to be repeated every block until the swap
    /// payment settles. The preimage is a secret: it is never logged.
    async fn push_preimage(&self, preimage: &[u8; 32]) -> Result<(), ProviderError>;

    /// Asks the server for its MuSig2 nonce and partial signature on a sweep. Each call opens
    /// a new signing session on the server: repeat with a fresh nonce, never reuse one.
    async fn musig2_sign_sweep(
        &self,
        req: &SweepSignRequest,
    ) -> Result<SweepPartialSig, ProviderError>;

    /// Tells the server sluice gives up on a swap's payment. Best effort; safe to repeat.
    async fn cancel_loop_out(&self, req: &CancelRequest) -> Result<(), ProviderError>;

    /// Subscribes to the server's view of a swap. Safe to repeat; informational only, nothing
    /// in the swap's state machine may depend on it.
    async fn subscribe_loop_out_updates(
        &self,
        swap_hash: SwapHash,
    ) -> Result<SwapUpdateStream, ProviderError>;

    /// Current Loop In amount limits. Read-only: safe to repeat.
    async fn loop_in_terms(&self) -> Result<LoopInTerms, ProviderError>;

    /// Asks the server to probe the route to sluice's node for `route.amount` (best effort:
    /// Loop ignores every error of it, and so should the caller). Safe to repeat.
    async fn probe(&self, route: &LoopInRoute) -> Result<(), ProviderError>;

    /// The price of a Loop In of `route.amount` (0 asks for the maximum). Read-only: safe to
    /// repeat.
    async fn loop_in_quote(&self, route: &LoopInRoute) -> Result<LoopInQuote, ProviderError>;

    /// Creates a Loop In on the server, which pays the probe invoice before it answers. **Not
    /// idempotent**: on any error start over with a fresh preimage and keys.
    async fn new_loop_in(&self, req: &NewLoopInRequest)
    -> Result<NewLoopInResponse, ProviderError>;

    /// Reveals sluice's internal private key of a paid Loop In, so the server can claim the
    /// HTLC by its key path alone. Safe to repeat, and repeated every block until it succeeds.
    /// Call it only once the swap invoice is settled; the key is a secret, never logged.
    async fn push_key(
        &self,
        swap_hash: SwapHash,
        internal_key: &[u8; 32],
    ) -> Result<(), ProviderError>;

    /// Subscribes to the server's view of a Loop In. Informational only.
    async fn subscribe_loop_in_updates(
        &self,
        swap_hash: SwapHash,
    ) -> Result<SwapUpdateStream, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_states_map_by_wire_code() {
        assert_eq!(ServerSwapState::from_code(0), ServerSwapState::Initiated);
        assert_eq!(
            ServerSwapState::from_code(12),
            ServerSwapState::HtlcConfirmed
        );
        assert_eq!(
            ServerSwapState::from_code(16),
            ServerSwapState::FailedInitialization
        );
        assert_eq!(ServerSwapState::from_code(17), ServerSwapState::Unknown(17));
        assert_eq!(ServerSwapState::from_code(-1), ServerSwapState::Unknown(-1));
    }
}
