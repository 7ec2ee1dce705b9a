//! [`LoopServerClient`]: the [`SwapProvider`] port over gRPC to a Loop swap server.
//!
//! Every request carries protocol version 11 (MuSig2) and, where the protocol has the field,
//! the `sluice/<version>` user agent. Every call has its own timeout, and every call (unary
//! or stream creation) goes through the L402 flow: attach the paid token if there is one; on
//! "payment required" buy a token ([`L402Auth::on_challenge`]) and retry exactly once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::error::{ErrorKind, ProviderError, classify_status, is_payment_required};
use super::l402::{Credentials, L402Auth, L402Config, L402Error, L402Payer, MACAROON_METADATA_KEY};
use super::port::{
    CancelRequest, CancelRoute, LoopInQuote, LoopInRoute, LoopInTerms, LoopOutQuote, LoopOutTerms,
    NewLoopInRequest, NewLoopInResponse, NewLoopOutRequest, NewLoopOutResponse, PaymentFailure,
    ServerSwapState, ServerSwapUpdate, SwapProvider, SwapUpdateStream, SweepPartialSig,
    SweepSignRequest,
};
use super::wire;
use super::wire::swap_server_client::SwapServerClient;
use crate::domain::{BlockHeight, RpcObserver, Sat, SwapHash};

/// The protocol version sluice speaks: P2TR HTLCs with BIP-327 MuSig2.
pub const PROTOCOL_VERSION: wire::ProtocolVersion = wire::ProtocolVersion::Musig2;

/// loopd's per-call timeout; the L402 payment gets its own allowance on top.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// loopd's limit for the `Probe` call (`probeTimeout`): the server routes a payment meanwhile.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(180);

/// How to secure the connection when [`LoopServerClient::connect`] builds the channel.
///
/// A pinned certificate is not listed here: build the channel with
/// `crate::tls::pinned_channel_lazy` and pass it to [`LoopServerClient::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// TLS verified against the operating system's root certificates (the real Loop server).
    System,
    /// Plaintext HTTP/2; refused unless the host is a loopback address (tests, simnet).
    Insecure,
}

/// Why a channel to the swap server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `host:port`.
    #[error(
        "server.address {address:?}: {reason}; expected host:port, e.g. \
         swap.lightning.today:11010"
    )]
    Address {
        /// The configured address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plaintext was asked for a non-loopback host.
    #[error(
        "server.address {address:?}: `server.tls: insecure` (plaintext) is only allowed to a \
         loopback host (localhost, 127.0.0.1, ::1); use TLS for anything else"
    )]
    InsecureNotLoopback {
        /// The configured address.
        address: String,
    },
    /// tonic refused the endpoint or TLS settings.
    #[error("server.address {address:?}: {source}")]
    Transport {
        /// The configured address.
        address: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The L402 token store could not be read.
    #[error(transparent)]
    L402(#[from] L402Error),
}

/// The user agent sent with terms, quote and new-swap requests: `sluice/<version>`, plus
/// `/initiator=<initiator>` when one is given. The initiator is filtered to `[0-9A-Za-z-. ]`
/// and cut to 150 characters as loopd does (protocol notes §0); it goes after a `/` so the
/// `Agent-Name/semver(/extra)` shape the server expects is kept.
pub fn user_agent(initiator: &str) -> String {
    let cleaned: String = initiator
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ' '))
        .take(150)
        .collect();
    if cleaned.is_empty() {
        format!("sluice/{}", crate::VERSION)
    } else {
        format!("sluice/{}/initiator={cleaned}", crate::VERSION)
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host:port` (IPv6 hosts in brackets), checking the port is a number.
fn split_host_port(address: &str) -> Result<(&str, u16), ConnectError> {
    let bad = |reason: &str| ConnectError::Address {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    if address.contains("://") {
        return Err(bad(
            "leave out the scheme; TLS is chosen by the TLS setting",
        ));
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port is not a number"))?;
    Ok((host, port))
}

/// The Loop swap-server client.
#[derive(Clone)]
pub struct LoopServerClient {
    client: SwapServerClient<Channel>,
    call_timeout: Duration,
    auth: Arc<L402Auth>,
    observer: Option<RpcObserver>,
}

impl LoopServerClient {
    /// Builds a lazy channel to `address` (`host:port`) and the client over it. Nothing is
    /// dialled until the first call.
    pub fn connect(
        address: &str,
        tls: ServerTls,
        call_timeout: Duration,
        l402: L402Config,
        payer: Arc<dyn L402Payer>,
    ) -> Result<LoopServerClient, ConnectError> {
        let (host, _port) = split_host_port(address)?;
        let transport = |source| ConnectError::Transport {
            address: address.to_owned(),
            source,
        };
        let endpoint = match tls {
            ServerTls::System => Endpoint::from_shared(format!("https://{address}"))
                .map_err(transport)?
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(transport)?,
            ServerTls::Insecure => {
                if !is_loopback(host) {
                    return Err(ConnectError::InsecureNotLoopback {
                        address: address.to_owned(),
                    });
                }
                Endpoint::from_shared(format!("http://{address}")).map_err(transport)?
            }
        };
        let channel = endpoint.connect_timeout(call_timeout).connect_lazy();
        LoopServerClient::new(channel, call_timeout, l402, payer)
    }

    /// The client over an existing channel (e.g. a pinned-certificate channel from
    /// `crate::tls`). Loads the paid L402 token, if any.
    pub fn new(
        channel: Channel,
        call_timeout: Duration,
        l402: L402Config,
        payer: Arc<dyn L402Payer>,
    ) -> Result<LoopServerClient, ConnectError> {
        Ok(LoopServerClient {
            client: SwapServerClient::new(channel),
            call_timeout,
            auth: Arc::new(L402Auth::new(l402, payer)?),
            observer: None,
        })
    }

    /// Reports every call attempt's latency and outcome to `observer` (the daemon's metrics).
    pub fn with_observer(mut self, observer: RpcObserver) -> LoopServerClient {
        self.observer = Some(observer);
        self
    }

    /// The L402 state, e.g. to show the token id.
    pub fn l402(&self) -> &L402Auth {
        &self.auth
    }

    async fn attempt<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        timeout: Duration,
        req: Req,
        creds: Option<&Credentials>,
        call: &F,
    ) -> Result<Result<Resp, tonic::Status>, ProviderError>
    where
        F: Fn(SwapServerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(req);
        request.set_timeout(timeout);
        if let Some(creds) = creds {
            request
                .metadata_mut()
                .insert(MACAROON_METADATA_KEY, creds.header.clone());
        }
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(timeout, call(self.client.clone(), request)).await;
        if let Some(observe) = &self.observer {
            let outcome = match &answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(classify_status(status.code(), status.message()).label()),
                Err(_) => Err(ErrorKind::Transient.label()),
            };
            observe(method, started.elapsed(), outcome);
        }
        match answer {
            Ok(result) => Ok(result.map(tonic::Response::into_inner)),
            Err(_) => Err(ProviderError::new(
                ErrorKind::Transient,
                method,
                format!("no answer within {} s", timeout.as_secs_f64()),
            )),
        }
    }

    /// One call with the L402 flow: attach, and on a challenge buy a token and retry once.
    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        req: Req,
        call: F,
    ) -> Result<Resp, ProviderError>
    where
        Req: Clone,
        F: Fn(SwapServerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.call_within(method, self.call_timeout, req, call).await
    }

    /// [`Self::call`] with its own per-attempt timeout (`Probe` has three minutes).
    async fn call_within<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        timeout: Duration,
        req: Req,
        call: F,
    ) -> Result<Resp, ProviderError>
    where
        Req: Clone,
        F: Fn(SwapServerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let creds = self.auth.credentials();
        let status = match self
            .attempt(method, timeout, req.clone(), creds.as_ref(), &call)
            .await?
        {
            Ok(resp) => return Ok(resp),
            Err(status) => status,
        };
        if !is_payment_required(status.code(), status.message()) {
            return Err(ProviderError::from_status(method, status));
        }
        self.auth
            .on_challenge(&status, creds.map(|c| c.token_id))
            .await
            .map_err(|e| l402_error(method, e))?;
        let creds = self.auth.credentials();
        match self
            .attempt(method, timeout, req, creds.as_ref(), &call)
            .await?
        {
            Ok(resp) => Ok(resp),
            Err(status) => Err(ProviderError::from_status(method, status)),
        }
    }
}

/// Maps an L402 failure to the provider error kinds.
fn l402_error(method: &'static str, err: L402Error) -> ProviderError {
    let kind = match &err {
        L402Error::PriceTooHigh { .. } => ErrorKind::PriceTooHigh,
        L402Error::MalformedChallenge(_) | L402Error::Invoice(_) | L402Error::WrongPreimage => {
            ErrorKind::InvalidResponse
        }
        L402Error::Payment(super::l402::PayError::Failed(_))
        | L402Error::PaidTokenRejected { .. } => ErrorKind::PaymentRequired,
        L402Error::Payment(_) | L402Error::PaymentInFlight { .. } => ErrorKind::Transient,
        L402Error::PaidTokenExists { .. }
        | L402Error::Io { .. }
        | L402Error::CorruptTokenFile { .. } => ErrorKind::Local,
    };
    ProviderError::new(kind, method, err)
}

fn u32_field(method: &'static str, field: &str, v: i32) -> Result<u32, ProviderError> {
    u32::try_from(v)
        .map_err(|_| ProviderError::invalid(method, format!("{field} is negative ({v})")))
}

fn sat_field(method: &'static str, field: &str, v: i64) -> Result<Sat, ProviderError> {
    u64::try_from(v)
        .map(Sat)
        .map_err(|_| ProviderError::invalid(method, format!("{field} is negative ({v})")))
}

fn expiry_field(method: &'static str, expiry: BlockHeight) -> Result<i32, ProviderError> {
    i32::try_from(expiry.0).map_err(|_| {
        ProviderError::new(
            ErrorKind::Permanent,
            method,
            format!("expiry height {expiry} does not fit the protocol's int32"),
        )
    })
}

/// Remaining-hop counts above 2 are sent as `u32::MAX`: the server learns nothing about the
/// route beyond its own two hops.
fn privacy_capped(hops: u32) -> u32 {
    if hops > 2 { u32::MAX } else { hops }
}

#[async_trait]
impl SwapProvider for LoopServerClient {
    async fn loop_out_terms(&self) -> Result<LoopOutTerms, ProviderError> {
        const M: &str = "LoopOutTerms";
        let req = wire::ServerLoopOutTermsRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            user_agent: user_agent(""),
        };
        let t = self
            .call(M, req, |mut c, r| async move { c.loop_out_terms(r).await })
            .await?;
        let terms = LoopOutTerms {
            min_amount: Sat(t.min_swap_amount),
            max_amount: Sat(t.max_swap_amount),
            min_cltv_delta: u32_field(M, "min_cltv_delta", t.min_cltv_delta)?,
            max_cltv_delta: u32_field(M, "max_cltv_delta", t.max_cltv_delta)?,
        };
        if terms.min_amount > terms.max_amount || terms.min_cltv_delta > terms.max_cltv_delta {
            return Err(ProviderError::invalid(
                M,
                format!("terms have min above max: {terms:?}"),
            ));
        }
        Ok(terms)
    }

    async fn loop_out_quote(
        &self,
        amount: Sat,
        expiry: BlockHeight,
        publication_deadline_unix_s: i64,
    ) -> Result<LoopOutQuote, ProviderError> {
        const M: &str = "LoopOutQuote";
        let req = wire::ServerLoopOutQuoteRequest {
            amt: amount.0,
            swap_publication_deadline: publication_deadline_unix_s,
            protocol_version: PROTOCOL_VERSION as i32,
            expiry: expiry_field(M, expiry)?,
            user_agent: user_agent(""),
        };
        let q = self
            .call(M, req, |mut c, r| async move { c.loop_out_quote(r).await })
            .await?;
        let dest = hex::decode(&q.swap_payment_dest)
            .ok()
            .and_then(|b| <[u8; 33]>::try_from(b).ok())
            .ok_or_else(|| ProviderError::invalid(M, "swap_payment_dest is not 33 bytes of hex"))?;
        Ok(LoopOutQuote {
            swap_payment_dest: dest,
            swap_fee: sat_field(M, "swap_fee", q.swap_fee)?,
            prepay_amount: Sat(q.prepay_amt),
        })
    }

    async fn new_loop_out(
        &self,
        req: &NewLoopOutRequest,
    ) -> Result<NewLoopOutResponse, ProviderError> {
        const M: &str = "NewLoopOutSwap";
        let wire_req = wire::ServerLoopOutRequest {
            receiver_key: req.receiver_key.to_vec(),
            swap_hash: req.swap_hash.0.to_vec(),
            amt: req.amount.0,
            swap_publication_deadline: req.publication_deadline_unix_s,
            protocol_version: PROTOCOL_VERSION as i32,
            expiry: expiry_field(M, req.expiry)?,
            user_agent: user_agent(&req.initiator),
        };
        let r = self
            .call(M, wire_req, |mut c, r| async move {
                c.new_loop_out_swap(r).await
            })
            .await?;
        Ok(NewLoopOutResponse {
            swap_invoice: r.swap_invoice,
            prepay_invoice: r.prepay_invoice,
            sender_key: r.sender_key,
            server_message: r.server_message,
        })
    }

    async fn push_preimage(&self, preimage: &[u8; 32]) -> Result<(), ProviderError> {
        let req = wire::ServerLoopOutPushPreimageRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            preimage: preimage.to_vec(),
        };
        self.call("LoopOutPushPreimage", req, |mut c, r| async move {
            c.loop_out_push_preimage(r).await
        })
        .await?;
        Ok(())
    }

    async fn musig2_sign_sweep(
        &self,
        req: &SweepSignRequest,
    ) -> Result<SweepPartialSig, ProviderError> {
        const M: &str = "MuSig2SignSweep";
        let wire_req = wire::MuSig2SignSweepReq {
            protocol_version: PROTOCOL_VERSION as i32,
            swap_hash: req.swap_hash.0.to_vec(),
            payment_address: req.payment_address.to_vec(),
            nonce: req.nonce.to_vec(),
            sweep_tx_psbt: req.sweep_psbt.clone(),
            prevout_info: req
                .prevouts
                .iter()
                .map(|p| wire::PrevoutInfo {
                    value: p.value.0,
                    pk_script: p.pk_script.clone(),
                    txid_bytes: p.txid.to_vec(),
                    output_index: p.output_index,
                })
                .collect(),
        };
        let r = self
            .call(M, wire_req, |mut c, r| async move {
                c.mu_sig2_sign_sweep(r).await
            })
            .await?;
        let nonce = <[u8; 66]>::try_from(r.nonce.as_slice()).map_err(|_| {
            ProviderError::invalid(M, format!("nonce is {} bytes; expected 66", r.nonce.len()))
        })?;
        let partial_sig = <[u8; 32]>::try_from(r.partial_signature.as_slice()).map_err(|_| {
            ProviderError::invalid(
                M,
                format!(
                    "partial_signature is {} bytes; expected 32",
                    r.partial_signature.len()
                ),
            )
        })?;
        Ok(SweepPartialSig { nonce, partial_sig })
    }

    async fn cancel_loop_out(&self, req: &CancelRequest) -> Result<(), ProviderError> {
        use wire::PaymentFailureReason as W;
        let failure = match req.failure {
            PaymentFailure::None => W::LndFailureReasonNone,
            PaymentFailure::Timeout => W::LndFailureReasonTimeout,
            PaymentFailure::NoRoute => W::LndFailureReasonNoRoute,
            PaymentFailure::Error => W::LndFailureReasonError,
            PaymentFailure::IncorrectPaymentDetails => W::LndFailureReasonIncorrectPaymentDetails,
            PaymentFailure::InsufficientBalance => W::LndFailureReasonInsufficientBalance,
        };
        let route_type = match req.route {
            CancelRoute::Prepay => wire::RoutePaymentType::PrepayRoute,
            CancelRoute::Invoice => wire::RoutePaymentType::InvoiceRoute,
        };
        let wire_req = wire::CancelLoopOutSwapRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            swap_hash: req.swap_hash.0.to_vec(),
            payment_address: req.payment_address.to_vec(),
            cancel_info: Some(wire::cancel_loop_out_swap_request::CancelInfo::RouteCancel(
                wire::RouteCancel {
                    route_type: route_type as i32,
                    attempts: req
                        .remaining_hops
                        .iter()
                        .map(|h| wire::HtlcAttempt {
                            remaining_hops: privacy_capped(*h),
                        })
                        .collect(),
                    failure: failure as i32,
                },
            )),
        };
        self.call("CancelLoopOutSwap", wire_req, |mut c, r| async move {
            c.cancel_loop_out_swap(r).await
        })
        .await?;
        Ok(())
    }

    async fn subscribe_loop_out_updates(
        &self,
        swap_hash: SwapHash,
    ) -> Result<SwapUpdateStream, ProviderError> {
        const M: &str = "SubscribeLoopOutUpdates";
        let req = wire::SubscribeUpdatesRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            swap_hash: swap_hash.0.to_vec(),
        };
        let stream = self
            .call(M, req, |mut c, r| async move {
                c.subscribe_loop_out_updates(r).await
            })
            .await?;
        Ok(stream
            .map(|item| match item {
                Ok(u) => Ok(ServerSwapUpdate {
                    timestamp_unix_ns: u.timestamp_ns,
                    state: ServerSwapState::from_code(u.state),
                }),
                Err(status) => Err(ProviderError::from_status(M, status)),
            })
            .boxed())
    }

    async fn loop_in_terms(&self) -> Result<LoopInTerms, ProviderError> {
        const M: &str = "LoopInTerms";
        let req = wire::ServerLoopInTermsRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            user_agent: user_agent(""),
        };
        let t = self
            .call(M, req, |mut c, r| async move { c.loop_in_terms(r).await })
            .await?;
        let terms = LoopInTerms {
            min_amount: Sat(t.min_swap_amount),
            max_amount: Sat(t.max_swap_amount),
        };
        if terms.min_amount > terms.max_amount {
            return Err(ProviderError::invalid(
                M,
                format!("terms have min above max: {terms:?}"),
            ));
        }
        Ok(terms)
    }

    async fn probe(&self, route: &LoopInRoute) -> Result<(), ProviderError> {
        let req = wire::ServerProbeRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            amt: route.amount.0,
            target: route.node.to_vec(),
            last_hop: route.last_hop.map(|k| k.to_vec()).unwrap_or_default(),
            route_hints: wire_route_hints(&route.route_hints),
        };
        self.call_within("Probe", PROBE_TIMEOUT, req, |mut c, r| async move {
            c.probe(r).await
        })
        .await?;
        Ok(())
    }

    async fn loop_in_quote(&self, route: &LoopInRoute) -> Result<LoopInQuote, ProviderError> {
        const M: &str = "LoopInQuote";
        let req = wire::ServerLoopInQuoteRequest {
            amt: route.amount.0,
            protocol_version: PROTOCOL_VERSION as i32,
            pubkey: route.node.to_vec(),
            last_hop: route.last_hop.map(|k| k.to_vec()).unwrap_or_default(),
            route_hints: wire_route_hints(&route.route_hints),
            user_agent: user_agent(""),
            num_static_address_deposits: 0,
            fast: false,
        };
        let q = self
            .call(M, req, |mut c, r| async move { c.loop_in_quote(r).await })
            .await?;
        Ok(LoopInQuote {
            swap_fee: sat_field(M, "swap_fee", q.swap_fee)?,
            cltv_delta: q.cltv_delta,
        })
    }

    async fn new_loop_in(
        &self,
        req: &NewLoopInRequest,
    ) -> Result<NewLoopInResponse, ProviderError> {
        const M: &str = "NewLoopInSwap";
        let wire_req = wire::ServerLoopInRequest {
            sender_key: req.sender_key.to_vec(),
            swap_hash: req.swap_hash.0.to_vec(),
            amt: req.amount.0,
            swap_invoice: req.swap_invoice.clone(),
            last_hop: req.last_hop.map(|k| k.to_vec()).unwrap_or_default(),
            protocol_version: PROTOCOL_VERSION as i32,
            probe_invoice: req.probe_invoice.clone(),
            user_agent: user_agent(&req.initiator),
            sender_internal_pubkey: req.sender_internal_key.to_vec(),
        };
        let r = self
            .call(M, wire_req, |mut c, r| async move {
                c.new_loop_in_swap(r).await
            })
            .await?;
        Ok(NewLoopInResponse {
            receiver_key: r.receiver_key,
            receiver_internal_key: r.receiver_internal_pubkey,
            expiry: r.expiry,
            server_message: r.server_message,
        })
    }

    async fn push_key(
        &self,
        swap_hash: SwapHash,
        internal_key: &[u8; 32],
    ) -> Result<(), ProviderError> {
        let req = wire::ServerPushKeyReq {
            protocol_version: PROTOCOL_VERSION as i32,
            swap_hash: swap_hash.0.to_vec(),
            internal_privkey: internal_key.to_vec(),
        };
        self.call(
            "PushKey",
            req,
            |mut c, r| async move { c.push_key(r).await },
        )
        .await?;
        Ok(())
    }

    async fn subscribe_loop_in_updates(
        &self,
        swap_hash: SwapHash,
    ) -> Result<SwapUpdateStream, ProviderError> {
        const M: &str = "SubscribeLoopInUpdates";
        let req = wire::SubscribeUpdatesRequest {
            protocol_version: PROTOCOL_VERSION as i32,
            swap_hash: swap_hash.0.to_vec(),
        };
        let stream = self
            .call(M, req, |mut c, r| async move {
                c.subscribe_loop_in_updates(r).await
            })
            .await?;
        Ok(stream
            .map(|item| match item {
                Ok(u) => Ok(ServerSwapUpdate {
                    timestamp_unix_ns: u.timestamp_ns,
                    state: ServerSwapState::from_code(u.state),
                }),
                Err(status) => Err(ProviderError::from_status(M, status)),
            })
            .boxed())
    }
}

/// Route hints in the server's wire form.
fn wire_route_hints(hints: &[crate::domain::RouteHint]) -> Vec<wire::RouteHint> {
    hints
        .iter()
        .map(|r| wire::RouteHint {
            hop_hints: r
                .hops
                .iter()
                .map(|h| wire::HopHint {
                    node_id: h.node.to_string(),
                    chan_id: h.chan_id.0,
                    fee_base_msat: h.fee_base_msat,
                    fee_proportional_millionths: h.fee_ppm,
                    cltv_expiry_delta: u32::from(h.cltv_delta),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_filters_and_caps_the_initiator() {
        let base = format!("sluice/{}", crate::VERSION);
        assert_eq!(user_agent(""), base);
        assert_eq!(user_agent("!!/"), base);
        assert_eq!(
            user_agent("policy: drain-peer_1.x"),
            format!("{base}/initiator=policy drain-peer1.x")
        );
        let long = user_agent(&"a".repeat(400));
        assert_eq!(long.len(), base.len() + "/initiator=".len() + 150);
        assert!(long.len() <= 255);
    }

    #[test]
    fn plaintext_is_for_loopback_only() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("swap.lightning.today"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        assert!(split_host_port("swap.lightning.today:11010").is_ok());
        assert_eq!(
            split_host_port("[::1]:11010").ok().map(|h| h.0),
            Some("[::1]")
        );
        for bad in ["https://x:1", "x", ":1", "x:port"] {
            let err = split_host_port(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("expected host:port"), "{bad}: {err}");
        }
    }

    #[test]
    fn remaining_hops_beyond_the_servers_own_are_hidden() {
        assert_eq!(privacy_capped(1), 1);
        assert_eq!(privacy_capped(2), 2);
        assert_eq!(privacy_capped(3), u32::MAX);
    }
}
