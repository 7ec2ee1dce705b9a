//! Switches for every Loop In misbehaviour a client must survive (Loop In protocol notes §11),
//! selectable per swap. `InBehaviour::default()` is the honest server.
//!
//! Each switch acts at one point of the swap's life: the quote, the probe of the client's
//! probe invoice, the `NewLoopInSwap` answer (keys, expiry), the payment of the swap invoice,
//! `PushKey`, the claim of the HTLC, and the status stream. The pure helpers turn a switch
//! into the concrete fee, key bytes and heights, so they are unit-tested without a node.
//!
//! Paying less or more than an invoice asks (and probing with too little) goes out as one
//! HTLC sent by hand with a multi-path record (`lnd::pay_part`): lnd's `SendPaymentV2` pays an
//! invoice that names an amount for exactly that amount.
//!
//! What §11 lists but is not a switch here, and why: a stream EOF or restart (`stream-close-after-first`, or stop and
//! serve again); decoy outputs to the HTLC address (the client funds the HTLC, so a decoy is
//! an external payment: the world's `pay_to`, or the server's own `decoy`).

use bitcoin::secp256k1::PublicKey;

use super::behaviour::{SenderKeyTamper, StreamMode};
use super::terms::InQuote;
use crate::domain::{Msat, Sat};

/// How the server behaves for one Loop In. Every field defaults to the honest choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InBehaviour {
    /// What `LoopInQuote` answers.
    pub quote: InQuoteTamper,
    /// Whether and when the client's probe invoice is paid.
    pub probe: ProbeMode,
    /// What `receiver_key` carries.
    pub receiver_key: SenderKeyTamper,
    /// What `receiver_internal_pubkey` carries.
    pub receiver_internal_key: InternalKeyTamper,
    /// The expiry in the answer.
    pub expiry: ExpiryTamper,
    /// Whether and when the swap invoice is paid.
    pub pay: PayMode,
    /// How `PushKey` answers.
    pub push_key: PushKeyMode,
    /// How the HTLC is claimed once paid.
    pub claim: ClaimMode,
    /// How long the status stream lasts.
    pub stream: StreamMode,
    /// Pays [`DECOY_VALUE`] to the HTLC's address from the server's wallet before answering
    /// `NewLoopInSwap`, so another output to the script is in the mempool before the client
    /// funds (§11 row 14). The server's own watch then takes the decoy for the HTLC and never
    /// pays: a client that follows its own funding transaction takes its HTLC back at the
    /// expiry; one that takes the first output to the script sweeps the decoy instead and
    /// leaves its HTLC unswept.
    pub decoy: bool,
}

/// What the decoy output pays to the HTLC's address.
pub const DECOY_VALUE: Sat = Sat(10_000);

/// The fee `LoopInQuote` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InQuoteTamper {
    /// The terms' fee.
    #[default]
    Honest,
    /// The first quote for an amount is honest; every later one asks this much more. Loop's
    /// client takes `max_swap_fee` from the quote it showed and re-quotes inside `LoopIn`, so
    /// it must abort with "swap fee too high" before making any invoice.
    FeeAboveFirstQuote(Sat),
}

impl InQuoteTamper {
    /// The fee answered for `quote` when `earlier` quotes for the same amount came before.
    pub fn quoted_fee(self, quote: &InQuote, earlier: u32) -> Sat {
        match self {
            InQuoteTamper::FeeAboveFirstQuote(extra) if earlier > 0 => quote.swap_fee + extra,
            _ => quote.swap_fee,
        }
    }
}

/// Whether and when the server pays the client's probe invoice during `NewLoopInSwap`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProbeMode {
    /// Pays it, sees the client cancel it (the proof the amount reaches the client), then
    /// answers.
    #[default]
    Honest,
    /// Never pays it and answers at once: the client sees no probe and must abort.
    Skip,
    /// Answers first and pays it only afterwards: the client must abort.
    AfterReply,
    /// Probes honestly, then answers with an error instead of the swap.
    ErrorAfterProbe,
    /// Pays the *swap* invoice as if it were the probe, then answers: the client is paid
    /// before any HTLC exists (the server's loss) and, having seen no probe, must abort.
    SwapInvoiceAsProbe,
    /// Probes honestly, then waits [`SLOW_ANSWER`] before answering: beyond Loop's 90 s, so
    /// the client must give up, nothing stored or funded.
    SlowAnswer,
    /// Pays half the probe invoice as one part of a multi-path set of its full amount, waits
    /// [`PROBE_PART_WAIT`], then answers: the client's node holds the part but the hold
    /// invoice never reaches "accepted", so the client sees no probe and must abort.
    TooLittle,
}

/// How long `ProbeMode::SlowAnswer` waits after the probe before it answers.
pub const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_secs(100);

/// How long `ProbeMode::TooLittle` waits after sending its part before it answers, so the
/// part is held at the client's node when the client looks.
pub const PROBE_PART_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ProbeMode {
    /// The part `ProbeMode::TooLittle` sends of a probe invoice of `invoice_amount`.
    pub fn too_little(invoice_amount: Sat) -> PartPayment {
        let whole = invoice_amount.to_msat();
        PartPayment {
            amount: Msat(whole.0 / 2),
            set_total: whole,
        }
    }
}

/// Tampering with `receiver_internal_pubkey`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InternalKeyTamper {
    /// The 33-byte compressed key.
    #[default]
    Honest,
    /// Left empty (the client must refuse: protocol 11 requires it).
    Missing,
    /// 33 bytes that are not a curve point.
    OffCurve,
}

impl InternalKeyTamper {
    /// The bytes sent as `receiver_internal_pubkey`.
    pub fn encode(self, key: &PublicKey) -> Vec<u8> {
        match self {
            InternalKeyTamper::Honest => key.serialize().to_vec(),
            InternalKeyTamper::Missing => Vec::new(),
            InternalKeyTamper::OffCurve => SenderKeyTamper::OffCurve.encode(key),
        }
    }
}

/// The expiry the server answers with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExpiryTamper {
    /// `height + loop_in_cltv_delta`.
    #[default]
    Honest,
    /// `height + 50`: under the client's 100-block minimum.
    TooSoon,
    /// `height + 2000`: over the client's 1500-block maximum (a long lock-up of its coins).
    TooFar,
}

impl ExpiryTamper {
    /// The expiry answered at `height` for an honest `cltv_delta`.
    pub fn expiry(self, height: u32, cltv_delta: u32) -> u32 {
        let delta = match self {
            ExpiryTamper::Honest => cltv_delta,
            ExpiryTamper::TooSoon => 50,
            ExpiryTamper::TooFar => 2_000,
        };
        height.saturating_add(delta)
    }
}

/// Blocks before the expiry from which an honest server no longer pays: it needs the time to
/// claim the HTLC before the client's timeout path opens.
pub const PAY_MARGIN_BLOCKS: u32 = 10;

/// Whether and when the server pays the swap invoice once the HTLC has confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PayMode {
    /// At once, while more than [`PAY_MARGIN_BLOCKS`] remain before the expiry, and only for
    /// exactly one output of exactly the amount.
    #[default]
    Honest,
    /// Never: the client must take its HTLC back through the timeout leaf at the expiry.
    Never,
    /// Only once the tip reaches the expiry (after the client's deadline, while its timeout
    /// sweep may be in the mempool): either spend may win, both are safe for the client.
    Late,
    /// Pays even when the HTLC has the wrong value or several outputs (the server's loss):
    /// the client must still time the HTLC out.
    DespiteWrongHtlc,
    /// Pays half the invoice as one part of a multi-path set of its full amount, and never the
    /// rest: the client's node holds the part and never settles (it fails at the MPP timeout
    /// or when the client cancels the invoice); the client times its HTLC out.
    Less,
    /// Pays [`OVERPAYMENT`] more than the invoice asks, in one HTLC: the client's node settles
    /// it and the client succeeds, its server cost smaller by that much.
    More,
}

/// What `PayMode::More` pays above the invoice's amount.
pub const OVERPAYMENT: Sat = Sat(1_000);

/// One HTLC paying an invoice other than exactly: what it carries and the total of the
/// multi-path set it claims to belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPayment {
    /// What the HTLC delivers.
    pub amount: Msat,
    /// The multi-path record's total.
    pub set_total: Msat,
}

impl PayMode {
    /// How this mode pays an invoice of `invoice_amount`: `None` for a plain payment of
    /// exactly the amount.
    pub fn part(self, invoice_amount: Sat) -> Option<PartPayment> {
        let whole = invoice_amount.to_msat();
        match self {
            PayMode::Less => Some(PartPayment {
                amount: Msat(whole.0 / 2),
                set_total: whole,
            }),
            PayMode::More => {
                let more = (invoice_amount + OVERPAYMENT).to_msat();
                Some(PartPayment {
                    amount: more,
                    set_total: more,
                })
            }
            PayMode::Honest | PayMode::Never | PayMode::Late | PayMode::DespiteWrongHtlc => None,
        }
    }
}

impl PayMode {
    /// Whether the server pays at `height` for an HTLC expiring at `expiry`.
    pub fn pays_at(self, height: u32, expiry: u32) -> bool {
        match self {
            PayMode::Honest | PayMode::DespiteWrongHtlc | PayMode::Less | PayMode::More => {
                height.saturating_add(PAY_MARGIN_BLOCKS) < expiry
            }
            PayMode::Never => false,
            PayMode::Late => height >= expiry,
        }
    }
}

/// How `PushKey` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushKeyMode {
    /// Accepts a key that matches the client's internal key, once the invoice is paid.
    #[default]
    Accept,
    /// Always answers with an error (the client retries every block; its funds are safe).
    Error,
}

/// Blocks the server waits after paying for the client's internal key before it claims by
/// the success leaf instead: the client pushes on settlement and retries every block, so a
/// push that fails once still arrives in time.
pub const KEY_WAIT_BLOCKS: u32 = 3;

/// How the server claims the HTLC once it has paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClaimMode {
    /// By the key path with the pushed key, or by the success leaf with the preimage if no key
    /// came within [`KEY_WAIT_BLOCKS`].
    #[default]
    Honest,
    /// By the success leaf only, ignoring a pushed key (4 witness elements on chain).
    ScriptPathOnly,
    /// Never: the client, whose invoice is settled, must not sweep and ends in success at the
    /// expiry.
    Never,
    /// Never pays; accepts `PushKey` before paying and, with the key, claims the HTLC by the
    /// key path at once. Only a client that pushes its key before its invoice settled loses
    /// anything (its HTLC); a correct one keeps its key and times the HTLC out.
    WithoutPaying,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    #[test]
    fn the_quote_rises_only_after_the_first() {
        let q = InQuote {
            amount: Sat(100_000),
            swap_fee: Sat(150),
            cltv_delta: 200,
        };
        let bait = InQuoteTamper::FeeAboveFirstQuote(Sat(5_000));
        assert_eq!(bait.quoted_fee(&q, 0), Sat(150));
        assert_eq!(bait.quoted_fee(&q, 1), Sat(5_150));
        assert_eq!(InQuoteTamper::Honest.quoted_fee(&q, 3), Sat(150));
    }

    #[test]
    fn keys_and_expiries_take_the_promised_shapes() {
        let secp = Secp256k1::new();
        let key = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[7; 32]).unwrap());
        assert_eq!(
            PublicKey::from_slice(&InternalKeyTamper::Honest.encode(&key)).unwrap(),
            key
        );
        assert!(InternalKeyTamper::Missing.encode(&key).is_empty());
        let off = InternalKeyTamper::OffCurve.encode(&key);
        assert_eq!(off.len(), 33);
        assert!(PublicKey::from_slice(&off).is_err());

        assert_eq!(ExpiryTamper::Honest.expiry(1_000, 200), 1_200);
        assert!(ExpiryTamper::TooSoon.expiry(1_000, 200) < 1_100);
        assert!(ExpiryTamper::TooFar.expiry(1_000, 200) > 2_500);
    }

    #[test]
    fn less_and_more_pay_half_a_set_and_one_overpaying_htlc() {
        let invoice = Sat(99_000);
        assert_eq!(
            PayMode::Less.part(invoice),
            Some(PartPayment {
                amount: Msat(49_500_000),
                set_total: Msat(99_000_000),
            })
        );
        assert_eq!(
            PayMode::More.part(invoice),
            Some(PartPayment {
                amount: Msat(100_000_000),
                set_total: Msat(100_000_000),
            })
        );
        assert_eq!(PayMode::Honest.part(invoice), None);
        assert_eq!(PayMode::Late.part(invoice), None);
        let probe = ProbeMode::too_little(invoice);
        assert!(probe.amount < probe.set_total);
        assert!(PayMode::Less.pays_at(1_000, 1_200) && PayMode::More.pays_at(1_000, 1_200));
    }

    #[test]
    fn payment_timing_follows_the_switch() {
        let expiry = 1_200;
        assert!(PayMode::Honest.pays_at(1_000, expiry));
        assert!(PayMode::Honest.pays_at(expiry - PAY_MARGIN_BLOCKS - 1, expiry));
        assert!(!PayMode::Honest.pays_at(expiry - PAY_MARGIN_BLOCKS, expiry));
        assert!(!PayMode::Never.pays_at(expiry + 10, expiry));
        assert!(!PayMode::Late.pays_at(expiry - 1, expiry));
        assert!(PayMode::Late.pays_at(expiry, expiry));
        assert!(PayMode::DespiteWrongHtlc.pays_at(1_000, expiry));
    }
}
