//! `chainrpc.ChainNotifier` over the port.

use tonic::{Request, Response, Status};

use super::convert;
use super::facade::{LndFacade, WireStream, fail};
use crate::lnd::wire::chainrpc;
use crate::lnd::wire::chainrpc::chain_notifier_server::ChainNotifier;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ChainNotifier for LndFacade {
    type RegisterConfirmationsNtfnStream = WireStream<chainrpc::ConfEvent>;

    /// `include_block` is accepted but no raw block is sent: the port reports the block's
    /// hash and height only, which is all sluice reads.
    async fn register_confirmations_ntfn(
        &self,
        request: Request<chainrpc::ConfRequest>,
    ) -> Reply<Self::RegisterConfirmationsNtfnStream> {
        let conf = convert::conf_request(request.get_ref())?;
        let s = self
            .node
            .register_confirmations(&conf)
            .await
            .map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::conf_event)))
    }

    type RegisterSpendNtfnStream = WireStream<chainrpc::SpendEvent>;

    async fn register_spend_ntfn(
        &self,
        request: Request<chainrpc::SpendRequest>,
    ) -> Reply<Self::RegisterSpendNtfnStream> {
        let spend = convert::spend_request(request.get_ref())?;
        let s = self.node.register_spend(&spend).await.map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::spend_event)))
    }

    type RegisterBlockEpochNtfnStream = WireStream<chainrpc::BlockEpoch>;

    /// Starts at the current tip whatever block the request names (lnd would first replay
    /// the blocks after it): the port has no "blocks since" form. A client resubscribing
    /// after a disconnection still learns of every block, as the tip's height tells it how
    /// many it has to catch up on.
    async fn register_block_epoch_ntfn(
        &self,
        _: Request<chainrpc::BlockEpoch>,
    ) -> Reply<Self::RegisterBlockEpochNtfnStream> {
        let s = self.node.register_block_epochs().await.map_err(fail)?;
        Ok(Response::new(self.forward(s, convert::block_epoch)))
    }
}
