//! `chainrpc.ChainNotifier` over the port.

use bitcoin::hashes::Hash;
use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::convert;
use super::facade::{LndFacade, WireStream, fail, with_first_message};
use crate::domain::BlockHeight;
use crate::lnd::types::BlockEpoch;
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
        Ok(Response::new(
            with_first_message(self.forward(s, convert::conf_event)).await,
        ))
    }

    type RegisterSpendNtfnStream = WireStream<chainrpc::SpendEvent>;

    async fn register_spend_ntfn(
        &self,
        request: Request<chainrpc::SpendRequest>,
    ) -> Reply<Self::RegisterSpendNtfnStream> {
        let spend = convert::spend_request(request.get_ref())?;
        let s = self.node.register_spend(&spend).await.map_err(fail)?;
        Ok(Response::new(
            with_first_message(self.forward(s, convert::spend_event)).await,
        ))
    }

    type RegisterBlockEpochNtfnStream = WireStream<chainrpc::BlockEpoch>;

    /// Without a block named, starts at the current tip. With the last block the client saw
    /// (height, and hash when known), first sends every block after it up to the tip, as
    /// lnd does: a client resubscribing after a disconnection misses none. When that block
    /// is no longer in the active chain (a reorg), the block now at its height is sent too.
    async fn register_block_epoch_ntfn(
        &self,
        request: Request<chainrpc::BlockEpoch>,
    ) -> Reply<Self::RegisterBlockEpochNtfnStream> {
        let seen = request.into_inner();
        let mut s = self.node.register_block_epochs().await.map_err(fail)?;
        let Some(blocks) = self.blocks.clone().filter(|_| seen.height > 0) else {
            return Ok(Response::new(self.forward(s, convert::block_epoch)));
        };
        // The port's stream starts with the tip; everything after follows it.
        let tip = match s.next().await {
            Some(Ok(tip)) => tip,
            first => {
                let rest = futures::stream::iter(first).chain(s).boxed();
                return Ok(Response::new(self.forward(rest, convert::block_epoch)));
            }
        };
        let still_active = seen.hash.is_empty()
            || blocks
                .hash_at(BlockHeight(seen.height))
                .is_some_and(|h| h.to_byte_array().as_slice() == seen.hash.as_slice());
        let from = if still_active {
            seen.height.saturating_add(1)
        } else {
            seen.height
        };
        let mut missed = Vec::new();
        for height in from..tip.height.0 {
            let hash = blocks.hash_at(BlockHeight(height)).ok_or_else(|| {
                Status::unavailable("the chain changed while catching up; subscribe again")
            })?;
            missed.push(Ok(BlockEpoch {
                hash,
                height: BlockHeight(height),
            }));
        }
        if from <= tip.height.0 {
            missed.push(Ok(tip));
        }
        let all = futures::stream::iter(missed).chain(s).boxed();
        Ok(Response::new(self.forward(all, convert::block_epoch)))
    }
}
