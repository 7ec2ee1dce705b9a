//! L402 (formerly LSAT): the swap server's pay-once token, as aperture's client interceptor
//! handles it (protocol notes §7).
//!
//! An unauthenticated call is answered with "payment required" and a `WWW-Authenticate`
//! challenge carrying a macaroon and an invoice. sluice checks the price against a cap, writes
//! the token as *pending* before paying, pays through the narrow [`L402Payer`] port (lnd in
//! production), stores the token as *paid* with the preimage, and from then on attaches
//! `macaroon = hex(macaroon + caveat "preimage=<hex>")` to every call. One mutex serialises
//! the whole purchase so parallel calls never buy two tokens.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bitcoin::hashes::{Hash, sha256};
use tonic::metadata::AsciiMetadataValue;

use super::macaroon::{Macaroon, MacaroonError};
use super::validate::{ContractError, InvoiceRole, decode_invoice};
use crate::domain::{Msat, Network, Sat};

mod store;

pub use store::{Token, TokenStore};

/// aperture's default price cap for a token.
pub const DEFAULT_MAX_COST: Sat = Sat(1000);
/// aperture's default routing-fee cap for the token payment.
pub const DEFAULT_MAX_ROUTING_FEE: Sat = Sat(10);
/// aperture's default time allowed for the token payment.
pub const DEFAULT_PAY_TIMEOUT: Duration = Duration::from_secs(60);

/// The gRPC metadata key the token travels under.
pub const MACAROON_METADATA_KEY: &str = "macaroon";

/// How much sluice is willing to pay for a token, and where it keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L402Config {
    /// Refuse a challenge whose invoice asks for more than this.
    pub max_cost: Sat,
    /// Routing-fee limit for the token payment.
    pub max_routing_fee: Sat,
    /// Time allowed for the token payment.
    pub pay_timeout: Duration,
    /// The chain sluice runs on; the challenge invoice must be for it.
    pub network: Network,
    /// Directory of `l402.token` and `l402.token.pending` (the network's data dir).
    pub token_dir: PathBuf,
}

impl L402Config {
    /// aperture's defaults (1000 sat, 10 sat, 60 s) for `network`, tokens in `token_dir`.
    pub fn new(network: Network, token_dir: impl Into<PathBuf>) -> L402Config {
        L402Config {
            max_cost: DEFAULT_MAX_COST,
            max_routing_fee: DEFAULT_MAX_ROUTING_FEE,
            pay_timeout: DEFAULT_PAY_TIMEOUT,
            network,
            token_dir: token_dir.into(),
        }
    }

    /// The caps from the daemon's `server.*` settings, for `network`, tokens in `token_dir`
    /// (the daemon passes its per-network data dir). The pay timeout stays aperture's 60 s.
    pub fn from_server_config(
        server: &crate::config::ServerConfig,
        network: Network,
        token_dir: impl Into<PathBuf>,
    ) -> L402Config {
        L402Config {
            max_cost: server.l402_max_cost,
            max_routing_fee: server.l402_max_routing_fee,
            ..L402Config::new(network, token_dir)
        }
    }
}

/// A settled payment, as the payer reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    /// The preimage released by the payee (a secret: never logged).
    pub preimage: [u8; 32],
    /// Amount paid to the payee.
    pub amount: Msat,
    /// Routing fee paid.
    pub fee: Msat,
}

impl std::fmt::Debug for PaidInvoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidInvoice")
            .field("amount", &self.amount)
            .field("fee", &self.fee)
            .finish_non_exhaustive()
    }
}

/// Why a token payment did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// The payment failed for good; no money moved.
    #[error("payment failed: {0}")]
    Failed(String),
    /// The payment is still in flight; its outcome is not known yet.
    #[error("payment still in flight")]
    InFlight,
    /// The node could not be asked (connection, timeout); try again later.
    #[error("payment node unavailable: {0}")]
    Unavailable(String),
}

/// Pays and tracks the token invoice. The lnd adapter implements it with `SendPaymentV2`
/// and `TrackPaymentV2`.
#[async_trait]
pub trait L402Payer: Send + Sync {
    /// Pays `invoice` with at most `max_fee` routing fees, giving up after `timeout`.
    async fn pay(
        &self,
        invoice: &str,
        max_fee: Sat,
        timeout: Duration,
    ) -> Result<PaidInvoice, PayError>;

    /// The outcome of an earlier payment: `Some` if it succeeded, `None` if it failed for
    /// good or never happened, [`PayError::InFlight`] while undecided.
    async fn track(&self, payment_hash: [u8; 32]) -> Result<Option<PaidInvoice>, PayError>;
}

/// The payer for a swap server without an L402 front: it never pays, so a payment challenge
/// fails the call with an error saying no token was expected.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverPay;

#[async_trait]
impl L402Payer for NeverPay {
    async fn pay(&self, _: &str, _: Sat, _: Duration) -> Result<PaidInvoice, PayError> {
        Err(PayError::Failed(
            "the swap server asked for an L402 token, but this client pays for none".to_owned(),
        ))
    }

    async fn track(&self, _: [u8; 32]) -> Result<Option<PaidInvoice>, PayError> {
        Ok(None)
    }
}

/// Why a token could not be obtained or used.
#[derive(Debug, thiserror::Error)]
pub enum L402Error {
    /// The server's challenge is not usable; the reason names what is wrong.
    #[error("malformed L402 challenge from the swap server: {0}")]
    MalformedChallenge(String),
    /// The challenge invoice is not acceptable (decode, network, no amount).
    #[error(transparent)]
    Invoice(ContractError),
    /// The token costs more than the configured cap; nothing was paid.
    #[error(
        "the swap server asks {price} for an L402 token, above the cap of {max}; raise \
         `server.l402_max_cost_sat` (--server-l402-max-cost-sat) to accept it"
    )]
    PriceTooHigh {
        /// The invoice amount.
        price: Sat,
        /// The configured cap.
        max: Sat,
    },
    /// The payment failed or could not be made.
    #[error("paying for the L402 token: {0}")]
    Payment(#[source] PayError),
    /// A payment for an earlier token is still undecided; retry once it settles or fails.
    #[error("the payment for the pending L402 token {path} is still in flight; retry later")]
    PaymentInFlight {
        /// The pending token file.
        path: PathBuf,
    },
    /// The payer reported a preimage that does not hash to the invoice's payment hash.
    #[error("the L402 payment returned a preimage that does not match the invoice")]
    WrongPreimage,
    /// The server still demands payment although a paid token was attached.
    #[error(
        "the swap server refused the paid L402 token in {path}; if the server was reset, move \
         that file away so a new token can be bought"
    )]
    PaidTokenRejected {
        /// The paid token file.
        path: PathBuf,
    },
    /// Storing a token would replace a different paid token.
    #[error("refusing to replace the paid L402 token in {path} with a different one")]
    PaidTokenExists {
        /// The paid token file.
        path: PathBuf,
    },
    /// A token file could not be read or written.
    #[error("L402 token file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A token file exists but is not a token.
    #[error("L402 token file {path} is corrupt ({reason}); move it away to buy a new token")]
    CorruptTokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The server's offer: a macaroon to be completed by paying the invoice.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The macaroon minted for this token.
    pub macaroon: Macaroon,
    /// The BOLT11 invoice whose preimage completes it.
    pub invoice: String,
}

/// Parses one `WWW-Authenticate` value of the form
/// `LSAT|L402 macaroon="<base64>", invoice="<bolt11>"`. Returns `None` if it is not one.
fn parse_challenge_value(value: &str) -> Option<(&str, &str)> {
    let value = value.trim();
    let rest = value
        .strip_prefix("L402")
        .or_else(|| value.strip_prefix("LSAT"))?;
    let rest = rest.strip_prefix(' ')?.trim_start();
    let rest = rest.strip_prefix("macaroon=\"")?;
    let (macaroon, rest) = rest.split_once('"')?;
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let rest = rest.strip_prefix("invoice=\"")?;
    let (invoice, _) = rest.split_once('"')?;
    Some((macaroon, invoice))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Extracts the first well-formed challenge from a status's `www-authenticate` values.
pub fn parse_challenge(status: &tonic::Status) -> Result<Challenge, L402Error> {
    let mut seen = 0usize;
    for value in status.metadata().get_all("www-authenticate").iter() {
        seen += 1;
        let Ok(text) = value.to_str() else { continue };
        let Some((mac_b64, invoice)) = parse_challenge_value(text) else {
            continue;
        };
        let bytes = decode_base64(mac_b64).ok_or_else(|| {
            L402Error::MalformedChallenge("the macaroon is not valid base64".to_owned())
        })?;
        let macaroon = Macaroon::from_binary(&bytes)
            .map_err(|e: MacaroonError| L402Error::MalformedChallenge(e.to_string()))?;
        if invoice.is_empty() {
            return Err(L402Error::MalformedChallenge(
                "the invoice is empty".to_owned(),
            ));
        }
        return Ok(Challenge {
            macaroon,
            invoice: invoice.to_owned(),
        });
    }
    Err(L402Error::MalformedChallenge(if seen == 0 {
        "\"payment required\" without a WWW-Authenticate header".to_owned()
    } else {
        format!(
            "none of the {seen} WWW-Authenticate values has the form \
             `L402 macaroon=\"<base64>\", invoice=\"<bolt11>\"`"
        )
    }))
}

/// The payment hash inside an aperture identifier (`version u16 = 0 || hash || token id`),
/// if the identifier has that shape.
fn identifier_payment_hash(id: &[u8]) -> Option<[u8; 32]> {
    if id.len() == 66 && id[..2] == [0, 0] {
        id[2..34].try_into().ok()
    } else {
        None
    }
}

/// The credentials attached to a call: which token, and the metadata value.
#[derive(Clone)]
pub struct Credentials {
    /// The token's payment hash; identifies it when the server refuses it.
    pub token_id: [u8; 32],
    /// `hex(macaroon + "preimage=<hex>")`, the `macaroon` metadata value.
    pub header: AsciiMetadataValue,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token_id", &hex::encode(self.token_id))
            .finish_non_exhaustive()
    }
}

/// Holds the paid token and buys one when the server asks.
pub struct L402Auth {
    config: L402Config,
    store: TokenStore,
    payer: Arc<dyn L402Payer>,
    current: Mutex<Option<Credentials>>,
    buying: tokio::sync::Mutex<()>,
}

impl L402Auth {
    /// Loads the paid token from `config.token_dir`, if there is one.
    pub fn new(config: L402Config, payer: Arc<dyn L402Payer>) -> Result<L402Auth, L402Error> {
        let store = TokenStore::new(&config.token_dir);
        let current = match store.load_paid()? {
            Some(token) => token.credentials(),
            None => None,
        };
        Ok(L402Auth {
            config,
            store,
            payer,
            current: Mutex::new(current),
            buying: tokio::sync::Mutex::new(()),
        })
    }

    /// The token store, for inspection (`sluice` shows the token id).
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The credentials to attach to the next call, if a token is paid.
    pub fn credentials(&self) -> Option<Credentials> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    fn set_current(&self, creds: Option<Credentials>) {
        if let Ok(mut current) = self.current.lock() {
            *current = creds;
        }
    }

    /// Handles a "payment required" answer to a call made with `used` (the token attached to
    /// it, if any). On `Ok` the caller retries once with [`Self::credentials`].
    ///
    /// If another call bought a token meanwhile, it is simply used. A pending token from an
    /// earlier attempt is tracked first: paid ⇒ completed and used; failed ⇒ dropped and a new
    /// token bought; undecided ⇒ error, nothing new is paid.
    pub async fn on_challenge(
        &self,
        status: &tonic::Status,
        used: Option<[u8; 32]>,
    ) -> Result<(), L402Error> {
        let _buying = self.buying.lock().await;
        if let Some(current) = self.credentials() {
            if Some(current.token_id) != used {
                return Ok(());
            }
            return Err(L402Error::PaidTokenRejected {
                path: self.store.paid_path(),
            });
        }
        if let Some(pending) = self.store.load_pending()? {
            match self.payer.track(pending.payment_hash).await {
                Ok(Some(paid)) => return self.complete(pending, &paid),
                Ok(None) => {
                    tracing::info!(
                        token_id = %hex::encode(pending.payment_hash),
                        "L402 payment of the pending token failed; buying a new token"
                    );
                    self.store.remove_pending()?;
                }
                Err(PayError::InFlight) => {
                    return Err(L402Error::PaymentInFlight {
                        path: self.store.pending_path(),
                    });
                }
                Err(e) => return Err(L402Error::Payment(e)),
            }
        }
        self.buy(parse_challenge(status)?).await
    }

    async fn buy(&self, challenge: Challenge) -> Result<(), L402Error> {
        let (invoice, price) = decode_invoice(
            &challenge.invoice,
            self.config.network,
            InvoiceRole::L402Token,
        )
        .map_err(L402Error::Invoice)?;
        if price > self.config.max_cost {
            return Err(L402Error::PriceTooHigh {
                price,
                max: self.config.max_cost,
            });
        }
        let payment_hash = invoice.payment_hash().to_byte_array();
        if let Some(id_hash) = identifier_payment_hash(challenge.macaroon.id())
            && id_hash != payment_hash
        {
            return Err(L402Error::MalformedChallenge(
                "the macaroon is for another payment hash than the invoice".to_owned(),
            ));
        }
        let token = Token::pending(challenge.macaroon, payment_hash);
        self.store.save_pending(&token)?;
        tracing::info!(
            token_id = %hex::encode(payment_hash),
            price_sat = price.0,
            "buying an L402 token from the swap server"
        );
        // The payer is told the timeout; the outer bound only guards against one that
        // ignores it. The pending file stays, so the outcome is tracked on the next challenge.
        let slack = Duration::from_secs(5);
        let paid = tokio::time::timeout(
            self.config.pay_timeout.saturating_add(slack),
            self.payer.pay(
                &challenge.invoice,
                self.config.max_routing_fee,
                self.config.pay_timeout,
            ),
        )
        .await
        .map_err(|_| L402Error::PaymentInFlight {
            path: self.store.pending_path(),
        })?
        .map_err(L402Error::Payment)?;
        self.complete(token, &paid)
    }

    fn complete(&self, mut token: Token, paid: &PaidInvoice) -> Result<(), L402Error> {
        if sha256::Hash::hash(&paid.preimage).to_byte_array() != token.payment_hash {
            return Err(L402Error::WrongPreimage);
        }
        token.preimage = Some(paid.preimage);
        token.amount_paid = paid.amount;
        token.routing_fee = paid.fee;
        self.store.save_paid(&token)?;
        self.store.remove_pending()?;
        self.set_current(token.credentials());
        Ok(())
    }
}

/// The paths of a token directory's two files.
pub fn token_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("l402.token"), dir.join("l402.token.pending"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_pay_refuses_every_invoice_and_knows_no_payment() {
        let err = NeverPay
            .pay("lnbcrt1...", Sat(10), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pays for none"), "{err}");
        assert!(NeverPay.track([1; 32]).await.unwrap().is_none());
    }

    fn status_with(values: &[&str]) -> tonic::Status {
        let mut status = tonic::Status::internal("payment required");
        for v in values {
            status
                .metadata_mut()
                .append("www-authenticate", v.parse().unwrap());
        }
        status
    }

    #[test]
    fn challenge_values_parse_in_both_schemes() {
        assert_eq!(
            parse_challenge_value(r#"LSAT macaroon="AgE=", invoice="lnbcrt1""#),
            Some(("AgE=", "lnbcrt1"))
        );
        assert_eq!(
            parse_challenge_value(r#"L402 macaroon="AgE=",invoice="lnbcrt1""#),
            Some(("AgE=", "lnbcrt1"))
        );
        assert_eq!(parse_challenge_value(r#"Basic realm="x""#), None);
        assert_eq!(parse_challenge_value(r#"L402 macaroon="AgE=""#), None);
        assert_eq!(
            parse_challenge_value(r#"L402macaroon="a", invoice="b""#),
            None
        );
    }

    #[test]
    fn the_first_matching_value_wins() {
        let mac = Macaroon::new(b"k", b"id", "");
        let b64 = base64::engine::general_purpose::STANDARD.encode(mac.to_binary());
        let status = status_with(&[
            "Basic realm=\"loop\"",
            &format!("LSAT macaroon=\"{b64}\", invoice=\"lnbcrt-first\""),
            &format!("L402 macaroon=\"{b64}\", invoice=\"lnbcrt-second\""),
        ]);
        let c = parse_challenge(&status).unwrap();
        assert_eq!(c.invoice, "lnbcrt-first");
        assert_eq!(c.macaroon, mac);
    }

    #[test]
    fn malformed_challenges_say_what_is_wrong() {
        let err = parse_challenge(&status_with(&[])).unwrap_err().to_string();
        assert!(err.contains("without a WWW-Authenticate"), "{err}");
        let err = parse_challenge(&status_with(&["L402 nonsense"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of the 1 WWW-Authenticate"), "{err}");
        let err = parse_challenge(&status_with(&[r#"L402 macaroon="!!", invoice="x""#]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("base64"), "{err}");
        let err = parse_challenge(&status_with(&[r#"L402 macaroon="AQ==", invoice="x""#]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("version byte"), "{err}");
    }

    #[test]
    fn identifier_hash_is_read_only_from_aperture_identifiers() {
        let mut id = vec![0u8, 0];
        id.extend_from_slice(&[7; 32]);
        id.extend_from_slice(&[9; 32]);
        assert_eq!(identifier_payment_hash(&id), Some([7; 32]));
        id[1] = 1;
        assert_eq!(identifier_payment_hash(&id), None);
        assert_eq!(identifier_payment_hash(b"short"), None);
    }
}
