//! The named misbehaviours: one name and a one-line description for each switch of
//! `docs/misbehaviour.md` the server can act out, so a person (`sluice simnet misbehave NAME`,
//! `sluice loopserver --misbehave NAME`) and the tests choose them by name.
//!
//! A name maps to a per-swap [`Behaviour`] (the swaps registered from then on get it) or to a
//! tampering of the L402 front (the next token sold). The amounts the switches need (how much
//! above the maximum fee, how much below the amount) are fixed here, large enough for any
//! client limit to catch.

use super::behaviour::{
    Behaviour, CoSign, HtlcTamper, InvoiceTamper, Publication, Push, SenderKeyTamper, Settle,
    StreamMode, TimeoutClaim,
};
use super::behaviour_in::{
    ClaimMode, ExpiryTamper, InBehaviour, InQuoteTamper, InternalKeyTamper, PayMode, ProbeMode,
    PushKeyMode,
};
use super::l402::L402Settings;
use crate::domain::Sat;

/// What a named misbehaviour switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The behaviour of every swap registered from now on.
    Swap(Behaviour),
    /// The L402 front's next challenges.
    L402(L402Tamper),
    /// The behaviour of every Loop In registered from now on.
    LoopIn(InBehaviour),
}

/// A tampering of the L402 front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L402Tamper {
    /// The token costs this much (above Loop's default client cap of 1000 sat).
    Price(Sat),
    /// Challenges no client can parse.
    MalformedChallenge,
    /// Token payments are canceled instead of settled.
    FailPayments,
}

impl L402Tamper {
    /// `settings` with this tampering applied.
    pub fn apply(self, settings: &L402Settings) -> L402Settings {
        let mut s = settings.clone();
        match self {
            L402Tamper::Price(p) => s.price = p,
            L402Tamper::MalformedChallenge => s.malformed_challenge = true,
            L402Tamper::FailPayments => s.fail_payments = true,
        }
        s
    }
}

/// One named misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Its name, lower-case words joined by `-`.
    pub name: &'static str,
    /// What the server does, in one line.
    pub description: &'static str,
    /// What it switches.
    pub switch: Switch,
}

fn swap(behaviour: Behaviour) -> Switch {
    Switch::Swap(behaviour)
}

fn loop_in(behaviour: InBehaviour) -> Switch {
    Switch::LoopIn(behaviour)
}

/// The Loop In misbehaviours, all named `loop-in-…`, in the order of `docs/misbehaviour.md`.
fn loop_in_misbehaviours() -> Vec<Misbehaviour> {
    let d = InBehaviour::default;
    vec![
        Misbehaviour {
            name: "loop-in-quote-above-first",
            description: "the first Loop In quote is honest; later ones (and so the swap) ask 5000 sat more",
            switch: loop_in(InBehaviour {
                quote: InQuoteTamper::FeeAboveFirstQuote(Sat(5_000)),
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-probe-skipped",
            description: "NewLoopInSwap answers without paying the client's probe invoice",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::Skip,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-probe-after-reply",
            description: "NewLoopInSwap answers first and pays the probe invoice two seconds later",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::AfterReply,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-error-after-probe",
            description: "NewLoopInSwap probes the client, then answers with an error",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::ErrorAfterProbe,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-swap-invoice-as-probe",
            description: "NewLoopInSwap pays the swap invoice instead of the probe invoice, then answers",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::SwapInvoiceAsProbe,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-slow-answer",
            description: "NewLoopInSwap probes the client, then answers only after 100 s (Loop gives up at 90 s)",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::SlowAnswer,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-probe-too-little",
            description: "NewLoopInSwap pays half the probe invoice as one part of a set that never completes, then answers",
            switch: loop_in(InBehaviour {
                probe: ProbeMode::TooLittle,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-receiver-key-32-bytes",
            description: "the server's success-leaf key is sent x-only, 32 bytes",
            switch: loop_in(InBehaviour {
                receiver_key: SenderKeyTamper::Short,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-receiver-key-off-curve",
            description: "the server's success-leaf key is 33 bytes that are not a curve point",
            switch: loop_in(InBehaviour {
                receiver_key: SenderKeyTamper::OffCurve,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-internal-key-missing",
            description: "the answer carries no receiver_internal_pubkey",
            switch: loop_in(InBehaviour {
                receiver_internal_key: InternalKeyTamper::Missing,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-internal-key-off-curve",
            description: "receiver_internal_pubkey is 33 bytes that are not a curve point",
            switch: loop_in(InBehaviour {
                receiver_internal_key: InternalKeyTamper::OffCurve,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-expiry-too-soon",
            description: "the HTLC expiry is 50 blocks ahead, under the client's 100-block minimum",
            switch: loop_in(InBehaviour {
                expiry: ExpiryTamper::TooSoon,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-expiry-too-far",
            description: "the HTLC expiry is 2000 blocks ahead, over the client's 1500-block maximum",
            switch: loop_in(InBehaviour {
                expiry: ExpiryTamper::TooFar,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-never-pays",
            description: "the swap invoice is never paid; the client's HTLC waits for its expiry",
            switch: loop_in(InBehaviour {
                pay: PayMode::Never,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-pays-late",
            description: "the swap invoice is paid only once the tip reaches the HTLC's expiry",
            switch: loop_in(InBehaviour {
                pay: PayMode::Late,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-pays-less",
            description: "the swap invoice gets half its amount, as one part of a set that never completes",
            switch: loop_in(InBehaviour {
                pay: PayMode::Less,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-pays-more",
            description: "the swap invoice is paid 1,000 sat more than it asks",
            switch: loop_in(InBehaviour {
                pay: PayMode::More,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-pays-despite-wrong-htlc",
            description: "the swap invoice is paid even for a wrong HTLC value or several outputs",
            switch: loop_in(InBehaviour {
                pay: PayMode::DespiteWrongHtlc,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-decoy-output",
            description: "10,000 sat to the HTLC address from the server's wallet before the client funds; the server then never pays",
            switch: loop_in(InBehaviour { decoy: true, ..d() }),
        },
        Misbehaviour {
            name: "loop-in-push-key-error",
            description: "PushKey answers with an error; the server claims by the success leaf",
            switch: loop_in(InBehaviour {
                push_key: PushKeyMode::Error,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-claim-script-path",
            description: "the server claims by the success leaf even with the client's key pushed",
            switch: loop_in(InBehaviour {
                claim: ClaimMode::ScriptPathOnly,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-never-claims",
            description: "the server pays the swap invoice but never claims the HTLC",
            switch: loop_in(InBehaviour {
                claim: ClaimMode::Never,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-claim-without-paying",
            description: "never pays; takes PushKey before paying and then claims by the key path",
            switch: loop_in(InBehaviour {
                claim: ClaimMode::WithoutPaying,
                ..d()
            }),
        },
        Misbehaviour {
            name: "loop-in-stream-close-early",
            description: "the Loop In status stream ends after its first update",
            switch: loop_in(InBehaviour {
                stream: StreamMode::CloseAfterFirst,
                ..d()
            }),
        },
    ]
}

/// Every named misbehaviour, in the order of `docs/misbehaviour.md`.
pub fn all() -> Vec<Misbehaviour> {
    let mut all = loop_out_misbehaviours();
    all.extend(loop_in_misbehaviours());
    all
}

/// The Loop Out and L402 misbehaviours.
fn loop_out_misbehaviours() -> Vec<Misbehaviour> {
    vec![
        Misbehaviour {
            name: "swap-fee-above-max",
            description: "the swap invoice asks 5000 sat more than quoted (fee over max_swap_fee)",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::SwapFeeAbove(Sat(5_000)),
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "prepay-above-max",
            description: "the prepay asks 5000 sat more and the swap invoice 5000 sat less (same total)",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::PrepayAboveSameTotal(Sat(5_000)),
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "swap-invoice-wrong-hash",
            description: "the swap invoice pays to a hash other than the swap hash",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::WrongHash,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "swap-invoice-zero-amount",
            description: "the swap invoice carries no amount",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::ZeroAmount,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "swap-invoice-other-network",
            description: "the swap invoice is for another network",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::OtherNetwork,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "swap-invoice-no-payment-secret",
            description: "the swap invoice has no payment secret",
            switch: swap(Behaviour {
                invoice: InvoiceTamper::NoPaymentSecret,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "sender-key-32-bytes",
            description: "the server's HTLC key is sent x-only, 32 bytes",
            switch: swap(Behaviour {
                sender_key: SenderKeyTamper::Short,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "sender-key-34-bytes",
            description: "the server's HTLC key is sent with a trailing byte, 34 bytes",
            switch: swap(Behaviour {
                sender_key: SenderKeyTamper::Long,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "sender-key-off-curve",
            description: "the server's HTLC key is 33 bytes that are not a curve point",
            switch: swap(Behaviour {
                sender_key: SenderKeyTamper::OffCurve,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-value-below",
            description: "the HTLC pays 1000 sat less than the swap amount",
            switch: swap(Behaviour {
                htlc: HtlcTamper::ValueBelow(Sat(1_000)),
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-wrong-script",
            description: "the HTLC pays a script with another expiry, which the client never sees",
            switch: swap(Behaviour {
                htlc: HtlcTamper::WrongScript,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-value-above",
            description: "the HTLC pays 777 sat more than the swap amount",
            switch: swap(Behaviour {
                htlc: HtlcTamper::ValueAbove(Sat(777)),
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-two-outputs",
            description: "one transaction pays the swap amount to the HTLC script twice",
            switch: swap(Behaviour {
                htlc: HtlcTamper::TwoOutputs,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-after-reveal-limit",
            description: "the HTLC is published only once the tip reaches expiry - 20",
            switch: swap(Behaviour {
                publication: Publication::AfterRevealLimit,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "htlc-never-published",
            description: "the HTLC is never published; the held payments are canceled at the expiry",
            switch: swap(Behaviour {
                publication: Publication::Never,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "cosign-error",
            description: "MuSig2SignSweep answers with an error",
            switch: swap(Behaviour {
                cosign: CoSign::Error,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "cosign-short-nonce",
            description: "MuSig2SignSweep answers with a 65-byte nonce",
            switch: swap(Behaviour {
                cosign: CoSign::ShortNonce,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "cosign-short-partial-sig",
            description: "MuSig2SignSweep answers with a 31-byte partial signature",
            switch: swap(Behaviour {
                cosign: CoSign::ShortPartialSig,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "cosign-invalid-partial-sig",
            description: "MuSig2SignSweep answers with a partial signature over another message",
            switch: swap(Behaviour {
                cosign: CoSign::InvalidPartialSig,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "push-error",
            description: "LoopOutPushPreimage answers with an error and ignores the preimage",
            switch: swap(Behaviour {
                push: Push::Error,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "never-settle",
            description: "the swap invoice is never settled; the payment stays held until its CLTV",
            switch: swap(Behaviour {
                settle: Settle::Never,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "eager-timeout-claim",
            description: "the timeout claim pays ten times the fee, to replace a pending client sweep",
            switch: swap(Behaviour {
                timeout_claim: TimeoutClaim::Eager,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "fail-swap-payment-after-confirm",
            description: "the held swap payment is canceled once the HTLC has confirmed",
            switch: swap(Behaviour {
                fail_swap_payment_after_confirm: true,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "stream-close-early",
            description: "the swap status stream ends after its first update",
            switch: swap(Behaviour {
                stream: StreamMode::CloseAfterFirst,
                ..Behaviour::default()
            }),
        },
        Misbehaviour {
            name: "l402-price-above-cap",
            description: "an L402 token costs 10000 sat, above Loop's default 1000 sat cap",
            switch: Switch::L402(L402Tamper::Price(Sat(10_000))),
        },
        Misbehaviour {
            name: "l402-payment-fails",
            description: "L402 token payments are canceled instead of settled",
            switch: Switch::L402(L402Tamper::FailPayments),
        },
        Misbehaviour {
            name: "l402-malformed-challenge",
            description: "the L402 challenge cannot be parsed",
            switch: Switch::L402(L402Tamper::MalformedChallenge),
        },
    ]
}

/// The misbehaviour called `name`, or an error listing the names.
pub fn find(name: &str) -> Result<Misbehaviour, UnknownMisbehaviour> {
    all()
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UnknownMisbehaviour(name.to_owned()))
}

/// A name no misbehaviour has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no misbehaviour is called `{0}`; `sluice simnet misbehave --list` shows the names")]
pub struct UnknownMisbehaviour(pub String);

/// An L402 misbehaviour asked of a server that serves without an L402 front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` tampers with the L402 front, and this server serves without one")]
pub struct NoL402Front(pub &'static str);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lowercase_and_every_switch_differs_from_honest() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a name is used twice");
        for m in &all {
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                m.name
            );
            assert!(!m.description.is_empty());
            assert_ne!(m.switch, Switch::Swap(Behaviour::default()), "{}", m.name);
            assert_ne!(
                m.switch,
                Switch::LoopIn(InBehaviour::default()),
                "{}",
                m.name
            );
            assert_eq!(
                m.name.starts_with("loop-in-"),
                matches!(m.switch, Switch::LoopIn(_)),
                "{}: Loop In switches, and only they, are named loop-in-…",
                m.name
            );
        }
        let switches: Vec<Switch> = all.iter().map(|m| m.switch).collect();
        for (i, s) in switches.iter().enumerate() {
            assert!(
                !switches[..i].contains(s),
                "{} repeats a switch",
                all[i].name
            );
        }
        assert!(find("htlc-value-below").is_ok());
        assert!(find("nope").unwrap_err().to_string().contains("--list"));
    }

    #[test]
    fn every_name_is_in_the_misbehaviour_document() {
        let doc = include_str!("../../docs/misbehaviour.md");
        for m in all() {
            assert!(
                doc.contains(&format!("`{}`", m.name)),
                "docs/misbehaviour.md does not name `{}`",
                m.name
            );
        }
    }
}
