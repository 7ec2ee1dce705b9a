//! Switches for every misbehaviour a Loop Out client must survive (protocol notes §11),
//! selectable per swap. `Behaviour::default()` is the honest server.
//!
//! Each switch acts at one point of the swap's life: the quote and the `NewLoopOutSwap` answer
//! (invoices, key), the HTLC publication (value, script, timing), co-signing, settlement, the timeout
//! claim, and the status stream. The pure helpers below turn a switch into the concrete
//! amounts, keys, outputs and heights, so they are unit-tested without a node.
//!
//! What §11 lists but is not a switch here: reorgs (the world's `reorg`), server restarts
//! (stop [`LoopServer::serve`](super::LoopServer::serve) and serve again; swaps carry on),
//! client restarts and fee spikes (the client and the world's fee trace), and the L402
//! misbehaviours (price, malformed challenge, failing payments), which are server-wide
//! [`L402Settings`](super::L402Settings).

use bitcoin::secp256k1::PublicKey;

use super::terms::Quote;
use crate::domain::{BlockHeight, Sat};

/// How the server behaves for one swap. Every field defaults to the honest choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// What the two invoices look like.
    pub invoice: InvoiceTamper,
    /// What `sender_key` carries.
    pub sender_key: SenderKeyTamper,
    /// What the HTLC transaction pays.
    pub htlc: HtlcTamper,
    /// When the HTLC is published.
    pub publication: Publication,
    /// How `MuSig2SignSweep` answers.
    pub cosign: CoSign,
    /// How `LoopOutPushPreimage` answers.
    pub push: Push,
    /// Whether the swap invoice is ever settled.
    pub settle: Settle,
    /// When the server takes the HTLC back through the timeout leaf.
    pub timeout_claim: TimeoutClaim,
    /// Cancel the held swap payment once the HTLC has confirmed (the client then holds an
    /// HTLC it can still sweep with its preimage, but its payment fails).
    pub fail_swap_payment_after_confirm: bool,
    /// How long the status stream lasts.
    pub stream: StreamMode,
}

/// Invoice tampering in the `NewLoopOutSwap` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InvoiceTamper {
    /// `amt + fee - prepay` and `prepay`, as quoted.
    #[default]
    Honest,
    /// The swap invoice asks this much more than quoted (total fee over `max_swap_fee`).
    SwapFeeAbove(Sat),
    /// The prepay asks this much more and the swap invoice this much less: the total is
    /// unchanged but the prepay exceeds `max_prepay_amt`.
    PrepayAboveSameTotal(Sat),
    /// The swap invoice is keyed by a hash other than the swap hash.
    WrongHash,
    /// The swap invoice carries no amount.
    ZeroAmount,
    /// The swap invoice is for another network (mainnet for a regtest server, else regtest).
    OtherNetwork,
    /// The swap invoice has no payment secret (payment address).
    NoPaymentSecret,
    /// Quote low, invoice high: the first `LoopOutQuote` for the amount is the honest price;
    /// every later quote, and the swap invoice, ask this much more. A client that shows the
    /// first quote and then takes its limits from a second one pays more than the user
    /// confirmed.
    AboveFirstQuote(Sat),
}

impl InvoiceTamper {
    /// Whether the swap invoice is forged (not payable to the server's node): the client must
    /// refuse it, so the server never watches it.
    pub fn forges_swap_invoice(self) -> bool {
        matches!(
            self,
            InvoiceTamper::WrongHash
                | InvoiceTamper::ZeroAmount
                | InvoiceTamper::OtherNetwork
                | InvoiceTamper::NoPaymentSecret
        )
    }

    /// The swap and prepay invoice amounts for a quote.
    pub fn amounts(self, quote: &Quote) -> (Sat, Sat) {
        let swap = quote.swap_invoice_amount();
        match self {
            InvoiceTamper::SwapFeeAbove(extra) | InvoiceTamper::AboveFirstQuote(extra) => {
                (swap + extra, quote.prepay)
            }
            InvoiceTamper::PrepayAboveSameTotal(shift) => {
                let shift = Sat(shift.0.min(swap.0.saturating_sub(1)));
                (swap - shift, quote.prepay + shift)
            }
            InvoiceTamper::ZeroAmount => (Sat(0), quote.prepay),
            _ => (swap, quote.prepay),
        }
    }

    /// The swap fee `LoopOutQuote` answers for `quote` when `earlier` quotes for the same
    /// amount were answered before.
    pub fn quoted_fee(self, quote: &Quote, earlier: u32) -> Sat {
        match self {
            InvoiceTamper::AboveFirstQuote(extra) if earlier > 0 => quote.swap_fee + extra,
            _ => quote.swap_fee,
        }
    }
}

/// Tampering with the server's HTLC key in the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SenderKeyTamper {
    /// The 33-byte compressed key.
    #[default]
    Honest,
    /// The 32-byte x-only key.
    Short,
    /// The compressed key with a trailing zero byte (34 bytes).
    Long,
    /// 33 bytes that are not a point on secp256k1.
    OffCurve,
}

impl SenderKeyTamper {
    /// The bytes sent as `sender_key`.
    pub fn encode(self, key: &PublicKey) -> Vec<u8> {
        let compressed = key.serialize();
        match self {
            SenderKeyTamper::Honest => compressed.to_vec(),
            SenderKeyTamper::Short => compressed[1..].to_vec(),
            SenderKeyTamper::Long => {
                let mut v = compressed.to_vec();
                v.push(0);
                v
            }
            SenderKeyTamper::OffCurve => off_curve_key(),
        }
    }
}

/// The first even-prefixed 33-byte string (x counting up from 0) that is not a curve point.
fn off_curve_key() -> Vec<u8> {
    let mut bytes = [0u8; 33];
    bytes[0] = 0x02;
    for x in 0u8..=255 {
        bytes[32] = x;
        if PublicKey::from_slice(&bytes).is_err() {
            break;
        }
    }
    bytes.to_vec()
}

/// What the HTLC transaction pays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HtlcTamper {
    /// Exactly `amt` to the HTLC script.
    #[default]
    Honest,
    /// This much less than `amt` (the client must not reveal).
    ValueBelow(Sat),
    /// This much more than `amt` (the client accepts it).
    ValueAbove(Sat),
    /// `amt` to another script (the expiry one block later): the client never sees it.
    WrongScript,
    /// Two outputs of `amt` each to the script (the client uses the first).
    TwoOutputs,
    /// Two outputs to the script, the first this much under `amt`, the second `amt` (the client
    /// uses the first, so it must not reveal).
    TwoOutputsSmallerFirst(Sat),
}

impl HtlcTamper {
    /// The values of the outputs to pay to the (honest or, for `WrongScript`, the other)
    /// HTLC script.
    pub fn output_values(self, amount: Sat) -> Vec<Sat> {
        match self {
            HtlcTamper::Honest | HtlcTamper::WrongScript => vec![amount],
            HtlcTamper::ValueBelow(less) => vec![amount.saturating_sub(less)],
            HtlcTamper::ValueAbove(more) => vec![amount + more],
            HtlcTamper::TwoOutputs => vec![amount, amount],
            HtlcTamper::TwoOutputsSmallerFirst(less) => vec![amount.saturating_sub(less), amount],
        }
    }

    /// The expiry of the script actually funded.
    pub fn funded_expiry(self, expiry: u32) -> u32 {
        match self {
            HtlcTamper::WrongScript => expiry.saturating_add(1),
            _ => expiry,
        }
    }
}

/// The client's reveal margin: it refuses to reveal once `height > expiry - 20`.
pub const REVEAL_MARGIN_BLOCKS: u32 = 20;

/// When the HTLC is published once both payments are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Publication {
    /// At once.
    #[default]
    AsSoonAsPaid,
    /// Only once the tip reaches `expiry - 20`, so the HTLC confirms too late to reveal.
    AfterRevealLimit,
    /// Never (the payments stay held until the timeout cancels them).
    Never,
}

impl Publication {
    /// The tip height from which the HTLC may be published; `None` for never.
    pub fn earliest_height(self, expiry: u32) -> Option<BlockHeight> {
        match self {
            Publication::AsSoonAsPaid => Some(BlockHeight(0)),
            Publication::AfterRevealLimit => {
                Some(BlockHeight(expiry.saturating_sub(REVEAL_MARGIN_BLOCKS)))
            }
            Publication::Never => None,
        }
    }
}

/// How `MuSig2SignSweep` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CoSign {
    /// A valid nonce and partial signature.
    #[default]
    Honest,
    /// An error status.
    Error,
    /// A 65-byte nonce.
    ShortNonce,
    /// A 31-byte partial signature.
    ShortPartialSig,
    /// Right lengths, but a partial signature over another message: the combined signature
    /// fails verification.
    InvalidPartialSig,
}

/// How `LoopOutPushPreimage` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Push {
    /// Accepts the preimage and settles (unless `Settle::Never`).
    #[default]
    Accept,
    /// Answers with an error and ignores the preimage (the server can still learn it from a
    /// script-path sweep on chain).
    Error,
}

/// Whether the swap invoice is ever settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Settle {
    /// As soon as the preimage is known (push or chain).
    #[default]
    OnPreimage,
    /// Never: the client's payment stays in flight until its CLTV runs out.
    Never,
}

/// When the server takes the HTLC back through the timeout leaf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeoutClaim {
    /// Once the tip reaches the expiry and no spend of the HTLC has confirmed, at the
    /// ordinary fee rate.
    #[default]
    AfterExpiry,
    /// Also once allowed, but at ten times the fee rate, so it replaces a client sweep still
    /// in the mempool.
    Eager,
    /// Never.
    Never,
}

impl TimeoutClaim {
    /// The factor applied to the fee estimate of the timeout claim; `None` for never.
    pub fn fee_factor(self) -> Option<u64> {
        match self {
            TimeoutClaim::AfterExpiry => Some(1),
            TimeoutClaim::Eager => Some(10),
            TimeoutClaim::Never => None,
        }
    }
}

/// How long the status stream lasts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamMode {
    /// Until the swap reaches a final state, then EOF.
    #[default]
    UntilDone,
    /// EOF after the first update.
    CloseAfterFirst,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn quote() -> Quote {
        Quote {
            amount: Sat(100_000),
            swap_fee: Sat(1_500),
            prepay: Sat(1_000),
        }
    }

    #[test]
    fn invoice_amounts_follow_the_switch() {
        let q = quote();
        assert_eq!(
            InvoiceTamper::Honest.amounts(&q),
            (Sat(100_500), Sat(1_000))
        );
        assert_eq!(
            InvoiceTamper::SwapFeeAbove(Sat(1)).amounts(&q),
            (Sat(100_501), Sat(1_000))
        );
        let (swap, prepay) = InvoiceTamper::PrepayAboveSameTotal(Sat(300)).amounts(&q);
        assert_eq!((swap, prepay), (Sat(100_200), Sat(1_300)));
        assert_eq!(swap + prepay, Sat(101_500), "total unchanged");
        assert_eq!(InvoiceTamper::ZeroAmount.amounts(&q).0, Sat(0));
        let bait = InvoiceTamper::AboveFirstQuote(Sat(40_000));
        assert_eq!(bait.amounts(&q), (Sat(140_500), Sat(1_000)));
        assert_eq!(
            bait.quoted_fee(&q, 0),
            Sat(1_500),
            "the first quote is the honest one"
        );
        assert_eq!(bait.quoted_fee(&q, 1), Sat(41_500));
        assert_eq!(InvoiceTamper::Honest.quoted_fee(&q, 5), Sat(1_500));
        assert!(!bait.forges_swap_invoice());
        assert!(InvoiceTamper::OtherNetwork.forges_swap_invoice());
        assert!(!InvoiceTamper::SwapFeeAbove(Sat(1)).forges_swap_invoice());
    }

    #[test]
    fn sender_key_tampering_gives_the_promised_shapes() {
        let secp = Secp256k1::new();
        let key = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[7; 32]).unwrap());
        let honest = SenderKeyTamper::Honest.encode(&key);
        assert_eq!(PublicKey::from_slice(&honest).unwrap(), key);
        assert_eq!(SenderKeyTamper::Short.encode(&key).len(), 32);
        assert_eq!(SenderKeyTamper::Long.encode(&key).len(), 34);
        let off = SenderKeyTamper::OffCurve.encode(&key);
        assert_eq!(off.len(), 33);
        assert!(PublicKey::from_slice(&off).is_err(), "must not be a point");
    }

    #[test]
    fn htlc_outputs_and_publication_follow_the_switch() {
        let amt = Sat(50_000);
        assert_eq!(HtlcTamper::Honest.output_values(amt), vec![amt]);
        assert_eq!(
            HtlcTamper::ValueBelow(Sat(1)).output_values(amt),
            vec![Sat(49_999)]
        );
        assert_eq!(
            HtlcTamper::ValueAbove(Sat(7)).output_values(amt),
            vec![Sat(50_007)]
        );
        assert_eq!(HtlcTamper::TwoOutputs.output_values(amt), vec![amt, amt]);
        assert_eq!(HtlcTamper::WrongScript.funded_expiry(900), 901);
        assert_eq!(HtlcTamper::Honest.funded_expiry(900), 900);

        assert_eq!(
            Publication::AsSoonAsPaid.earliest_height(900),
            Some(BlockHeight(0))
        );
        // Published at tip 880, the HTLC confirms at 881 > 900 - 20: too late to reveal.
        assert_eq!(
            Publication::AfterRevealLimit.earliest_height(900),
            Some(BlockHeight(880))
        );
        assert_eq!(Publication::Never.earliest_height(900), None);
        assert_eq!(TimeoutClaim::Never.fee_factor(), None);
        assert!(TimeoutClaim::Eager.fee_factor() > TimeoutClaim::AfterExpiry.fee_factor());
    }
}
