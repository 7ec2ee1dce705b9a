//! `routerrpc.Router` and `invoicesrpc.Invoices` over the port.

use tonic::{Request, Response, Status};

use super::convert;
use super::facade::{LndFacade, WireStream, fail};
use crate::domain::Preimage;
use crate::lnd::wire::invoicesrpc::invoices_server::Invoices;
use crate::lnd::wire::routerrpc::router_server::Router;
use crate::lnd::wire::{invoicesrpc, lnrpc, routerrpc};

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Router for LndFacade {
    type SendPaymentV2Stream = WireStream<lnrpc::Payment>;

    async fn send_payment_v2(
        &self,
        request: Request<routerrpc::SendPaymentRequest>,
    ) -> Reply<Self::SendPaymentV2Stream> {
        let payment = convert::payment_request(request.get_ref())?;
        let s = self.node.pay(&payment).await.map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::payment)))
    }

    async fn send_to_route_v2(
        &self,
        request: Request<routerrpc::SendToRouteRequest>,
    ) -> Reply<lnrpc::HtlcAttempt> {
        let r = request.get_ref();
        let hash = convert::swap_hash("payment_hash", &r.payment_hash)?;
        let wire = r
            .route
            .clone()
            .ok_or_else(|| super::status::bad_request("route must be specified"))?;
        let route = crate::lnd::convert::payment_route("send_to_route", &wire)
            .map_err(|e| super::status::bad_request(e.message))?;
        let outcome = self.node.send_to_route(hash, &route).await.map_err(fail)?;
        Ok(Response::new(crate::lnd::convert::htlc_attempt(
            &outcome, wire,
        )))
    }

    type TrackPaymentV2Stream = WireStream<lnrpc::Payment>;

    async fn track_payment_v2(
        &self,
        request: Request<routerrpc::TrackPaymentRequest>,
    ) -> Reply<Self::TrackPaymentV2Stream> {
        let hash = convert::swap_hash("payment_hash", &request.get_ref().payment_hash)?;
        let s = self.node.track_payment(hash).await.map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::payment)))
    }
}

#[tonic::async_trait]
impl Invoices for LndFacade {
    type SubscribeSingleInvoiceStream = WireStream<lnrpc::Invoice>;

    async fn subscribe_single_invoice(
        &self,
        request: Request<invoicesrpc::SubscribeSingleInvoiceRequest>,
    ) -> Reply<Self::SubscribeSingleInvoiceStream> {
        let hash = convert::swap_hash("r_hash", &request.get_ref().r_hash)?;
        let s = self
            .node
            .subscribe_single_invoice(hash)
            .await
            .map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::invoice)))
    }

    async fn cancel_invoice(
        &self,
        request: Request<invoicesrpc::CancelInvoiceMsg>,
    ) -> Reply<invoicesrpc::CancelInvoiceResp> {
        let hash = convert::swap_hash("payment_hash", &request.get_ref().payment_hash)?;
        self.node.cancel_invoice(hash).await.map_err(fail)?;
        Ok(Response::new(invoicesrpc::CancelInvoiceResp {}))
    }

    async fn add_hold_invoice(
        &self,
        request: Request<invoicesrpc::AddHoldInvoiceRequest>,
    ) -> Reply<invoicesrpc::AddHoldInvoiceResp> {
        let hold = convert::hold_invoice_request(request.get_ref())?;
        let added = self.node.add_hold_invoice(&hold).await.map_err(fail)?;
        Ok(Response::new(invoicesrpc::AddHoldInvoiceResp {
            payment_request: added.payment_request,
            add_index: added.add_index,
            payment_addr: Vec::new(),
        }))
    }

    async fn settle_invoice(
        &self,
        request: Request<invoicesrpc::SettleInvoiceMsg>,
    ) -> Reply<invoicesrpc::SettleInvoiceResp> {
        let preimage = Preimage(convert::bytes32("preimage", &request.get_ref().preimage)?);
        self.node.settle_invoice(preimage).await.map_err(fail)?;
        Ok(Response::new(invoicesrpc::SettleInvoiceResp {}))
    }
}
