//! `lnrpc.Lightning` and `verrpc.Versioner` over the port.

use std::str::FromStr;

use tonic::{Request, Response, Status};

use super::convert;
use super::facade::{LndFacade, WireStream, answer, fail, with_first_message};
use crate::domain::{NodeId, Sat};
use crate::lnd::wire::lnrpc::lightning_server::Lightning;
use crate::lnd::wire::verrpc::versioner_server::Versioner;
use crate::lnd::wire::{lnrpc, verrpc};

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Lightning for LndFacade {
    async fn query_routes(
        &self,
        request: Request<lnrpc::QueryRoutesRequest>,
    ) -> Reply<lnrpc::QueryRoutesResponse> {
        let wanted = crate::lnd::convert::route_request(request.get_ref())
            .map_err(super::status::bad_request)?;
        let route = self.node.query_route(&wanted).await.map_err(fail)?;
        let route = crate::lnd::convert::wire_route("query_routes", &route).map_err(fail)?;
        Ok(Response::new(lnrpc::QueryRoutesResponse {
            routes: vec![route],
            success_prob: 1.0,
        }))
    }
    async fn get_info(&self, _: Request<lnrpc::GetInfoRequest>) -> Reply<lnrpc::GetInfoResponse> {
        let info = self.node.get_info().await.map_err(fail)?;
        // lnd counts channels and peers itself; the port offers them through their lists.
        let channels = self.node.list_channels().await.map_err(fail)?;
        let peers = self.node.list_peers().await.map_err(fail)?;
        let active = channels.iter().filter(|c| c.active).count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(convert::get_info(
            &info,
            count(active),
            count(channels.len() - active),
            count(peers.len()),
        )))
    }

    async fn list_channels(
        &self,
        request: Request<lnrpc::ListChannelsRequest>,
    ) -> Reply<lnrpc::ListChannelsResponse> {
        let r = request.into_inner();
        if r.active_only && r.inactive_only {
            return Err(super::status::bad_request(
                "either activeOnly or inactiveOnly can be set, but not both",
            ));
        }
        if r.public_only && r.private_only {
            return Err(super::status::bad_request(
                "either publicOnly or privateOnly can be set, but not both",
            ));
        }
        let peer = if r.peer.is_empty() {
            None
        } else {
            Some(
                NodeId::try_from(r.peer.as_slice())
                    .map_err(|e| super::status::bad_request(format!("invalid peer: {e}")))?,
            )
        };
        let channels = self.node.list_channels().await.map_err(fail)?;
        let channels = channels
            .iter()
            .filter(|c| {
                if c.active {
                    !r.inactive_only
                } else {
                    !r.active_only
                }
            })
            .filter(|c| {
                if c.private {
                    !r.public_only
                } else {
                    !r.private_only
                }
            })
            .filter(|c| peer.is_none_or(|p| c.peer == p))
            .map(|c| {
                let mut wire = convert::channel(c);
                if !r.peer_alias_lookup {
                    wire.peer_alias.clear();
                }
                wire
            })
            .collect();
        Ok(Response::new(lnrpc::ListChannelsResponse { channels }))
    }

    type SubscribeChannelEventsStream = WireStream<lnrpc::ChannelEventUpdate>;

    async fn subscribe_channel_events(
        &self,
        _: Request<lnrpc::ChannelEventSubscription>,
    ) -> Reply<Self::SubscribeChannelEventsStream> {
        let s = self.node.subscribe_channel_events().await.map_err(fail)?;
        Ok(Response::new(
            with_first_message(self.forward(s, convert::channel_event)).await,
        ))
    }

    async fn wallet_balance(
        &self,
        _: Request<lnrpc::WalletBalanceRequest>,
    ) -> Reply<lnrpc::WalletBalanceResponse> {
        let (confirmed, unconfirmed) = self.node.onchain_balance().await.map_err(fail)?;
        let sat = |v: Sat| i64::try_from(v.0).unwrap_or(i64::MAX);
        Ok(Response::new(lnrpc::WalletBalanceResponse {
            total_balance: sat(confirmed + unconfirmed),
            confirmed_balance: sat(confirmed),
            unconfirmed_balance: sat(unconfirmed),
            ..Default::default()
        }))
    }

    async fn list_peers(
        &self,
        _: Request<lnrpc::ListPeersRequest>,
    ) -> Reply<lnrpc::ListPeersResponse> {
        let peers = self.node.list_peers().await.map_err(fail)?;
        Ok(Response::new(lnrpc::ListPeersResponse {
            peers: peers.iter().map(convert::peer).collect(),
        }))
    }

    async fn get_node_info(
        &self,
        request: Request<lnrpc::NodeInfoRequest>,
    ) -> Reply<lnrpc::NodeInfo> {
        let r = request.get_ref();
        let node: NodeId = r
            .pub_key
            .parse()
            .map_err(|e| super::status::bad_request(format!("invalid pub_key: {e}")))?;
        let Some(alias) = self.node.node_alias(node).await.map_err(fail)? else {
            // lnd's answer for a node missing from its graph.
            return Err(Status::not_found("unable to find node"));
        };
        // As lnd: unannounced channels are left out of the list.
        let channels = if r.include_channels {
            self.node
                .announced_channels(node)
                .await
                .map_err(fail)?
                .iter()
                .map(convert::channel_edge)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(lnrpc::NodeInfo {
            node: Some(lnrpc::LightningNode {
                pub_key: r.pub_key.clone(),
                alias,
                ..Default::default()
            }),
            channels,
            ..Default::default()
        }))
    }

    async fn get_chan_info(
        &self,
        request: Request<lnrpc::ChanInfoRequest>,
    ) -> Reply<lnrpc::ChannelEdge> {
        let chan = crate::domain::ChanId(request.get_ref().chan_id);
        let edge = self.node.channel_edge(chan).await.map_err(fail)?;
        Ok(Response::new(convert::channel_edge(&edge)))
    }

    async fn add_invoice(
        &self,
        request: Request<lnrpc::Invoice>,
    ) -> Reply<lnrpc::AddInvoiceResponse> {
        let wanted = convert::invoice_request(request.get_ref())?;
        let hash = wanted.preimage.hash();
        let added = self.node.add_invoice(&wanted).await.map_err(fail)?;
        Ok(Response::new(lnrpc::AddInvoiceResponse {
            r_hash: hash.0.to_vec(),
            payment_request: added.payment_request,
            add_index: added.add_index,
            payment_addr: Vec::new(),
        }))
    }

    async fn estimate_fee(
        &self,
        request: Request<lnrpc::EstimateFeeRequest>,
    ) -> Reply<lnrpc::EstimateFeeResponse> {
        let r = request.get_ref();
        if r.addr_to_amount.is_empty() {
            return Err(super::status::bad_request(
                "must specify at least one address",
            ));
        }
        let mut outputs = Vec::new();
        for (addr, amount) in &r.addr_to_amount {
            let address = bitcoin::Address::from_str(addr)
                .map_err(|e| super::status::bad_request(format!("invalid address {addr}: {e}")))?
                .assume_checked();
            let value = u64::try_from(*amount)
                .map_err(|_| super::status::bad_request("amounts must not be negative"))?;
            outputs.push(bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(value),
                script_pubkey: address.script_pubkey(),
            });
        }
        let target = u32::try_from(r.target_conf)
            .ok()
            .filter(|t| *t > 0)
            .unwrap_or(6);
        let min_confs = if r.spend_unconfirmed {
            0
        } else {
            u32::try_from(r.min_confs).unwrap_or(1).max(1)
        };
        let estimate = self
            .node
            .estimate_send_fee(&outputs, target, min_confs)
            .await
            .map_err(fail)?;
        let vbyte = estimate.rate.to_sat_per_vb_floor();
        // lnd still fills the deprecated per-byte rate.
        #[allow(deprecated)]
        Ok(Response::new(lnrpc::EstimateFeeResponse {
            fee_sat: i64::try_from(estimate.fee.0).unwrap_or(i64::MAX),
            feerate_sat_per_byte: i64::try_from(vbyte).unwrap_or(i64::MAX),
            sat_per_vbyte: vbyte,
            inputs: Vec::new(),
        }))
    }

    async fn decode_pay_req(&self, request: Request<lnrpc::PayReqString>) -> Reply<lnrpc::PayReq> {
        let decoded = self.node.decode_invoice(&request.get_ref().pay_req).await;
        answer(decoded.map(|d| convert::pay_req(&d)))
    }

    async fn forwarding_history(
        &self,
        request: Request<lnrpc::ForwardingHistoryRequest>,
    ) -> Reply<lnrpc::ForwardingHistoryResponse> {
        let r = request.into_inner();
        let mut page = self
            .node
            .forwarding_history(r.start_time, r.end_time, r.index_offset, r.num_max_events)
            .await
            .map_err(fail)?;
        // lnd filters by channel in its query; the port pages first, so filter the page.
        page.events.retain(|e| {
            (r.incoming_chan_ids.is_empty() || r.incoming_chan_ids.contains(&e.chan_in.0))
                && (r.outgoing_chan_ids.is_empty() || r.outgoing_chan_ids.contains(&e.chan_out.0))
        });
        Ok(Response::new(convert::forwarding_page(&page)))
    }

    async fn list_payments(
        &self,
        request: Request<lnrpc::ListPaymentsRequest>,
    ) -> Reply<lnrpc::ListPaymentsResponse> {
        let r = request.into_inner();
        if r.reversed || r.include_incomplete {
            return Err(tonic::Status::unimplemented(
                "the simnet lists completed payments forwards only",
            ));
        }
        // lnd's default page is 100 payments.
        let max = if r.max_payments == 0 {
            100
        } else {
            r.max_payments
        };
        let page = self
            .node
            .payment_settlements(r.index_offset, max)
            .await
            .map_err(fail)?;
        Ok(Response::new(convert::payments_page(&page, r.index_offset)))
    }

    async fn list_invoices(
        &self,
        request: Request<lnrpc::ListInvoiceRequest>,
    ) -> Reply<lnrpc::ListInvoiceResponse> {
        let r = request.into_inner();
        if r.reversed || r.pending_only {
            return Err(tonic::Status::unimplemented(
                "the simnet lists settled invoices forwards only",
            ));
        }
        let max = if r.num_max_invoices == 0 {
            100
        } else {
            r.num_max_invoices
        };
        let page = self
            .node
            .invoice_settlements(r.index_offset, max)
            .await
            .map_err(fail)?;
        Ok(Response::new(convert::invoices_page(&page, r.index_offset)))
    }
}

#[tonic::async_trait]
impl Versioner for LndFacade {
    async fn get_version(&self, _: Request<verrpc::VersionRequest>) -> Reply<verrpc::Version> {
        answer(self.node.get_version().await.map(|v| convert::version(&v)))
    }
}
