//! The `looprpc.SwapServer` methods: request checks, swap registration, and the hand-off to
//! each swap's engine. Every call passes the L402 front first when it is on.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{PublicKey, Secp256k1};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::behaviour::{Push, StreamMode};
use super::error::LoopServerError;
use super::invoice::{Forgery, forge};
use super::sign::{Prevout, cosign_answer, sweep_sighash};
use super::swap::{NewSwap, StateUpdate, SwapEntry, is_final};
use super::terms::check_protocol;
use super::{Inner, engine, l402, locked};
use crate::chain::htlc::HtlcV3;
use crate::domain::{Preimage, Sat, SwapHash};
use crate::lnd::types::{HoldInvoiceRequest, InvoiceState};
use crate::provider::wire;
use crate::provider::wire::swap_server_server::SwapServer;

/// How long a co-sign request waits for an HTLC publication under way (the client can see the
/// transaction before the wallet call that made it returns); well under the client's call
/// timeout.
const PUBLICATION_PATIENCE: Duration = Duration::from_secs(10);

/// One serving of the protocol; `streams` ends the open status streams on shutdown.
#[derive(Clone)]
pub(super) struct Service {
    pub(super) inner: Arc<Inner>,
    streams: CancellationToken,
}

impl Service {
    pub(super) fn new(inner: Arc<Inner>, streams: CancellationToken) -> Service {
        Service { inner, streams }
    }

    /// The L402 front: `Ok` for a valid token or when the front is off; otherwise a challenge
    /// (no token) or `UNAUTHENTICATED` (a token this server did not issue or without proof).
    async fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(settings) = locked(&self.inner.l402).clone() else {
            return Ok(());
        };
        if let Some(value) = request.metadata().get("macaroon") {
            let text = value
                .to_str()
                .map_err(|_| Status::unauthenticated("the macaroon metadata is not text"))?;
            return l402::verify(&settings.root_key, text)
                .map(|_| ())
                .map_err(|e| Status::unauthenticated(e.to_string()));
        }
        let preimage = Preimage(self.inner.random_bytes());
        let hash = preimage.hash();
        let invoice = self
            .inner
            .node
            .add_hold_invoice(&HoldInvoiceRequest {
                hash,
                amount: settings.price.to_msat(),
                memo: "L402 token (reference loop server)".into(),
                expiry: self.inner.config.terms.invoice_expiry,
                cltv_expiry: self.inner.config.terms.invoice_cltv_delta,
                route_hints: Vec::new(),
                private: false,
            })
            .await
            .map_err(|e| LoopServerError::from(e).to_status())?;
        self.settle_when_paid(preimage, settings.fail_payments);
        let mac = l402::mint(&settings.root_key, hash.0, self.inner.random_bytes());
        Err(l402::challenge(
            &mac,
            &invoice.payment_request,
            settings.malformed_challenge,
        ))
    }

    /// The token invoice settles as soon as it is paid, like a plain invoice (or, with the
    /// failing switch, is canceled then).
    fn settle_when_paid(&self, preimage: Preimage, fail: bool) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(mut updates) = inner.node.subscribe_single_invoice(preimage.hash()).await else {
                return;
            };
            let stop = inner.stop.clone();
            loop {
                let next = tokio::select! {
                    u = updates.next() => u,
                    () = stop.cancelled() => return,
                };
                match next {
                    Some(Ok(u)) if u.state == InvoiceState::Accepted => {
                        let done = if fail {
                            inner.node.cancel_invoice(preimage.hash()).await
                        } else {
                            inner.node.settle_invoice(preimage).await
                        };
                        if let Err(e) = done {
                            tracing::warn!(error = %e, "loop server: settling an L402 invoice");
                        }
                        return;
                    }
                    Some(Ok(u))
                        if matches!(u.state, InvoiceState::Settled | InvoiceState::Canceled) =>
                    {
                        return;
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        });
    }

    /// A swap's status stream: replays the log, then follows it; ends after a final state
    /// (EOF), on shutdown, or after the first update with the close-early switch.
    pub(super) fn status_stream<T: Send + 'static>(
        &self,
        rx: tokio::sync::watch::Receiver<Vec<StateUpdate>>,
        close_early: bool,
        to_wire: fn(&StateUpdate) -> T,
    ) -> BoxStream<'static, Result<T, Status>> {
        let stop = self.streams.clone();
        let engines = self.inner.stop.clone();
        futures::stream::unfold((rx, 0usize, false), move |(mut rx, sent, done)| {
            let stop = stop.clone();
            let engines = engines.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let next = rx.borrow_and_update().get(sent).copied();
                    if let Some(u) = next {
                        let done = close_early || is_final(u.state);
                        return Some((Ok(to_wire(&u)), (rx, sent + 1, done)));
                    }
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return None },
                        () = stop.cancelled() => return None,
                        () = engines.cancelled() => return None,
                    }
                }
            }
        })
        .boxed()
    }

    fn owned_swap(&self, hash: &[u8], address: &[u8]) -> Result<Arc<SwapEntry>, LoopServerError> {
        let swap = self.inner.swap(swap_hash(hash)?)?;
        if !swap.owns(address) {
            return Err(LoopServerError::PaymentAddress(swap.hash));
        }
        Ok(swap)
    }

    async fn register(
        &self,
        r: wire::ServerLoopOutRequest,
    ) -> Result<wire::ServerLoopOutResponse, LoopServerError> {
        let inner = &self.inner;
        let terms = &inner.config.terms;
        check_protocol(r.protocol_version)?;
        let amount = Sat(r.amt);
        terms.check_amount(amount)?;
        let height = inner.node.block_height().await?;
        let expiry = terms.check_expiry(i64::from(r.expiry), height)?;
        let receiver =
            PublicKey::from_slice(&r.receiver_key).map_err(|_| LoopServerError::InvalidField {
                field: "receiver_key",
                problem: format!(
                    "{} bytes that are not a compressed secp256k1 key; send 33 bytes",
                    r.receiver_key.len()
                ),
            })?;
        let hash = swap_hash(&r.swap_hash)?;
        if inner.hash_taken(hash) {
            return Err(LoopServerError::SwapExists(hash));
        }
        let behaviour = locked(&inner.book).take(amount);
        let quote = terms.quote(amount)?;
        let (swap_amount, prepay_amount) = behaviour.invoice.amounts(&quote);

        let sender_secret = inner.random_key();
        let sender = PublicKey::from_secret_key(&Secp256k1::signing_only(), &sender_secret);
        let htlc = HtlcV3::new(sender, receiver, hash, expiry, terms.network)?;
        let prepay_preimage = Preimage(inner.random_bytes());
        let forged = behaviour.invoice.forges_swap_invoice();

        let (swap_invoice, payment_address) = if forged {
            let secret = inner.random_bytes();
            let f = Forgery {
                network: terms.network,
                hash,
                other_hash: SwapHash(inner.random_bytes()),
                amount: quote.swap_invoice_amount(),
                payment_secret: secret,
                now: inner.now(),
                expiry: terms.invoice_expiry,
                cltv_delta: terms.invoice_cltv_delta,
            };
            (forge(&f, behaviour.invoice, &inner.forge_key)?, secret)
        } else {
            let invoice = self.hold_invoice(hash, swap_amount, "loop out").await?;
            let decoded = inner.node.decode_invoice(&invoice).await?;
            let address = decoded.payment_addr.ok_or_else(|| {
                LoopServerError::Invoice("the node's hold invoice has no payment address".into())
            })?;
            (invoice, address)
        };
        let prepay_invoice = self
            .hold_invoice(prepay_preimage.hash(), prepay_amount, "loop out prepay")
            .await?;

        let entry = Arc::new(SwapEntry::new(NewSwap {
            hash,
            amount,
            expiry,
            receiver,
            sender_secret,
            htlc,
            payment_address,
            prepay_preimage,
            forged,
            behaviour,
            now: inner.now(),
        }));
        locked(&inner.swaps).insert(hash, entry.clone());
        if !forged {
            tokio::spawn(engine::run(inner.clone(), entry, inner.stop.clone()));
        }
        Ok(wire::ServerLoopOutResponse {
            swap_invoice,
            prepay_invoice,
            sender_key: behaviour.sender_key.encode(&sender),
            server_message: "reference loop server".into(),
            // The deprecated expiry echo stays zero: clients ignore it.
            ..Default::default()
        })
    }

    async fn hold_invoice(
        &self,
        hash: SwapHash,
        amount: Sat,
        memo: &str,
    ) -> Result<String, LoopServerError> {
        let terms = &self.inner.config.terms;
        Ok(self
            .inner
            .node
            .add_hold_invoice(&HoldInvoiceRequest {
                hash,
                amount: amount.to_msat(),
                memo: memo.into(),
                expiry: terms.invoice_expiry,
                cltv_expiry: terms.invoice_cltv_delta,
                route_hints: Vec::new(),
                private: false,
            })
            .await?
            .payment_request)
    }

    async fn sign_sweep(
        &self,
        r: wire::MuSig2SignSweepReq,
    ) -> Result<wire::MuSig2SignSweepRes, LoopServerError> {
        check_protocol(r.protocol_version)?;
        let swap = self.owned_swap(&r.swap_hash, &r.payment_address)?;
        let (behaviour, preimage) = swap.with_live(|l| (l.behaviour, l.preimage));
        if preimage.is_none() {
            return Err(LoopServerError::PreimageUnknown(swap.hash));
        }
        let Some(funded) = swap.funded_within(PUBLICATION_PATIENCE).await else {
            return Err(LoopServerError::NoHtlcInput(swap.hash));
        };
        let prevouts = r
            .prevout_info
            .iter()
            .map(|p| Prevout::from_wire(p.value, &p.pk_script, &p.txid_bytes, p.output_index))
            .collect::<Result<Vec<_>, _>>()?;
        let outpoints: Vec<_> = funded.outputs.iter().map(|(o, _)| *o).collect();
        let (_, sighash) = sweep_sighash(
            &r.sweep_tx_psbt,
            &prevouts,
            &funded.htlc,
            &outpoints,
            swap.hash,
        )?;
        let (nonce, partial_signature) = cosign_answer(
            &funded.htlc,
            &swap.sender_secret,
            sighash,
            &r.nonce,
            self.inner.random_bytes(),
            behaviour.cosign,
        )?;
        Ok(wire::MuSig2SignSweepRes {
            nonce,
            partial_signature,
        })
    }

    async fn cancel(&self, r: wire::CancelLoopOutSwapRequest) -> Result<(), LoopServerError> {
        check_protocol(r.protocol_version)?;
        let swap = self.owned_swap(&r.swap_hash, &r.payment_address)?;
        let prepay = matches!(
            r.cancel_info,
            Some(wire::cancel_loop_out_swap_request::CancelInfo::RouteCancel(ref c))
                if c.route_type == wire::RoutePaymentType::PrepayRoute as i32
        );
        let state = if prepay {
            wire::ServerSwapState::ServerClientPrepayCancel
        } else {
            wire::ServerSwapState::ServerClientInvoiceCancel
        };
        let published = swap.with_live(|l| {
            if l.funded.is_none() {
                l.client_cancel = Some(state);
            }
            l.funded.is_some()
        });
        if published {
            // The HTLC is out: the swap runs to its on-chain end; the held payment is released.
            self.inner.node.cancel_invoice(swap.hash).await?;
        } else {
            for hash in [swap.hash, swap.prepay_preimage.hash()] {
                if !swap.forged || hash != swap.hash {
                    self.inner.node.cancel_invoice(hash).await?;
                }
            }
            if swap.forged {
                swap.enter(state, self.inner.now());
            }
        }
        swap.wake.notify_one();
        Ok(())
    }
}

pub(super) fn swap_hash(bytes: &[u8]) -> Result<SwapHash, LoopServerError> {
    bytes
        .try_into()
        .map(SwapHash)
        .map_err(|_| LoopServerError::InvalidField {
            field: "swap_hash",
            problem: format!(
                "{} bytes; send the 32-byte SHA-256 of the preimage",
                bytes.len()
            ),
        })
}

fn status(e: LoopServerError) -> Status {
    e.to_status()
}

fn timestamp_ns(u: &StateUpdate) -> i64 {
    i64::try_from(u.at.as_nanos()).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl SwapServer for Service {
    async fn loop_out_terms(
        &self,
        request: Request<wire::ServerLoopOutTermsRequest>,
    ) -> Result<Response<wire::ServerLoopOutTerms>, Status> {
        self.authorize(&request).await?;
        check_protocol(request.get_ref().protocol_version).map_err(status)?;
        let t = &self.inner.config.terms;
        Ok(Response::new(wire::ServerLoopOutTerms {
            min_swap_amount: t.min_swap_amount.0,
            max_swap_amount: t.max_swap_amount.0,
            min_cltv_delta: i32::try_from(t.min_cltv_delta).unwrap_or(i32::MAX),
            max_cltv_delta: i32::try_from(t.max_cltv_delta).unwrap_or(i32::MAX),
        }))
    }

    async fn new_loop_out_swap(
        &self,
        request: Request<wire::ServerLoopOutRequest>,
    ) -> Result<Response<wire::ServerLoopOutResponse>, Status> {
        self.authorize(&request).await?;
        self.register(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn loop_out_push_preimage(
        &self,
        request: Request<wire::ServerLoopOutPushPreimageRequest>,
    ) -> Result<Response<wire::ServerLoopOutPushPreimageResponse>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        let preimage: [u8; 32] = r.preimage.as_slice().try_into().map_err(|_| {
            status(LoopServerError::InvalidField {
                field: "preimage",
                problem: format!("{} bytes; send the 32-byte preimage", r.preimage.len()),
            })
        })?;
        let swap = self
            .inner
            .swap(engine::hash_of(&preimage))
            .map_err(status)?;
        if swap.behaviour().push == Push::Error {
            return Err(status(LoopServerError::Refused(
                "the server refuses the preimage push (behaviour switch)",
            )));
        }
        swap.with_live(|l| l.preimage = Some(Preimage(preimage)));
        swap.wake.notify_one();
        Ok(Response::new(wire::ServerLoopOutPushPreimageResponse {}))
    }

    async fn loop_out_quote(
        &self,
        request: Request<wire::ServerLoopOutQuoteRequest>,
    ) -> Result<Response<wire::ServerLoopOutQuote>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        let terms = &self.inner.config.terms;
        let quote = terms.quote(Sat(r.amt)).map_err(status)?;
        let (behaviour, earlier) = locked(&self.inner.book).quote(quote.amount);
        let swap_fee = behaviour.invoice.quoted_fee(&quote, earlier);
        if r.expiry != 0 {
            let height = self
                .inner
                .node
                .block_height()
                .await
                .map_err(|e| status(e.into()))?;
            terms
                .check_expiry(i64::from(r.expiry), height)
                .map_err(status)?;
        }
        let info = self
            .inner
            .node
            .get_info()
            .await
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(wire::ServerLoopOutQuote {
            swap_payment_dest: hex::encode(info.pubkey.0),
            swap_fee: i64::try_from(swap_fee.0).unwrap_or(i64::MAX),
            prepay_amt: quote.prepay.0,
            ..Default::default()
        }))
    }

    type SubscribeLoopOutUpdatesStream =
        BoxStream<'static, Result<wire::SubscribeLoopOutUpdatesResponse, Status>>;

    async fn subscribe_loop_out_updates(
        &self,
        request: Request<wire::SubscribeUpdatesRequest>,
    ) -> Result<Response<Self::SubscribeLoopOutUpdatesStream>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        let swap = self
            .inner
            .swap(swap_hash(&r.swap_hash).map_err(status)?)
            .map_err(status)?;
        let close_early = swap.behaviour().stream == StreamMode::CloseAfterFirst;
        let updates = self.status_stream(swap.subscribe(), close_early, |u| {
            wire::SubscribeLoopOutUpdatesResponse {
                timestamp_ns: timestamp_ns(u),
                state: u.state as i32,
            }
        });
        Ok(Response::new(updates))
    }

    async fn cancel_loop_out_swap(
        &self,
        request: Request<wire::CancelLoopOutSwapRequest>,
    ) -> Result<Response<wire::CancelLoopOutSwapResponse>, Status> {
        self.authorize(&request).await?;
        self.cancel(request.into_inner()).await.map_err(status)?;
        Ok(Response::new(wire::CancelLoopOutSwapResponse {}))
    }

    async fn recommend_routing_plugin(
        &self,
        request: Request<wire::RecommendRoutingPluginReq>,
    ) -> Result<Response<wire::RecommendRoutingPluginRes>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        self.owned_swap(&r.swap_hash, &r.payment_address)
            .map_err(status)?;
        Ok(Response::new(wire::RecommendRoutingPluginRes {
            plugin: wire::RoutingPlugin::None as i32,
        }))
    }

    async fn report_routing_result(
        &self,
        request: Request<wire::ReportRoutingResultReq>,
    ) -> Result<Response<wire::ReportRoutingResultRes>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        self.owned_swap(&r.swap_hash, &r.payment_address)
            .map_err(status)?;
        Ok(Response::new(wire::ReportRoutingResultRes {}))
    }

    async fn mu_sig2_sign_sweep(
        &self,
        request: Request<wire::MuSig2SignSweepReq>,
    ) -> Result<Response<wire::MuSig2SignSweepRes>, Status> {
        self.authorize(&request).await?;
        self.sign_sweep(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn fetch_l402(
        &self,
        request: Request<wire::FetchL402Request>,
    ) -> Result<Response<wire::FetchL402Response>, Status> {
        self.authorize(&request).await?;
        Ok(Response::new(wire::FetchL402Response {}))
    }

    type SubscribeLoopInUpdatesStream =
        BoxStream<'static, Result<wire::SubscribeLoopInUpdatesResponse, Status>>;

    async fn loop_in_terms(
        &self,
        request: Request<wire::ServerLoopInTermsRequest>,
    ) -> Result<Response<wire::ServerLoopInTerms>, Status> {
        self.authorize(&request).await?;
        check_protocol(request.get_ref().protocol_version).map_err(status)?;
        Ok(Response::new(Service::loop_in_terms(self)))
    }

    async fn new_loop_in_swap(
        &self,
        request: Request<wire::ServerLoopInRequest>,
    ) -> Result<Response<wire::ServerLoopInResponse>, Status> {
        self.authorize(&request).await?;
        self.register_in(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn loop_in_quote(
        &self,
        request: Request<wire::ServerLoopInQuoteRequest>,
    ) -> Result<Response<wire::ServerLoopInQuoteResponse>, Status> {
        self.authorize(&request).await?;
        Service::loop_in_quote(self, request.get_ref())
            .map(Response::new)
            .map_err(status)
    }

    async fn subscribe_loop_in_updates(
        &self,
        request: Request<wire::SubscribeUpdatesRequest>,
    ) -> Result<Response<Self::SubscribeLoopInUpdatesStream>, Status> {
        self.authorize(&request).await?;
        let r = request.into_inner();
        check_protocol(r.protocol_version).map_err(status)?;
        let swap = self
            .inner
            .in_swap(swap_hash(&r.swap_hash).map_err(status)?)
            .map_err(status)?;
        let close_early = swap.behaviour.stream == StreamMode::CloseAfterFirst;
        Ok(Response::new(self.status_stream(
            swap.subscribe(),
            close_early,
            |u| wire::SubscribeLoopInUpdatesResponse {
                timestamp_ns: timestamp_ns(u),
                state: u.state as i32,
            },
        )))
    }

    async fn probe(
        &self,
        request: Request<wire::ServerProbeRequest>,
    ) -> Result<Response<wire::ServerProbeResponse>, Status> {
        self.authorize(&request).await?;
        self.loop_in_probe(request.get_ref()).map_err(status)?;
        Ok(Response::new(wire::ServerProbeResponse {}))
    }

    async fn push_key(
        &self,
        request: Request<wire::ServerPushKeyReq>,
    ) -> Result<Response<wire::ServerPushKeyRes>, Status> {
        self.authorize(&request).await?;
        Service::push_key(self, request.get_ref()).map_err(status)?;
        Ok(Response::new(wire::ServerPushKeyRes {}))
    }
}
