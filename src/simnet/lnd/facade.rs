//! The state every service of the simulated lnd shares, and how port streams become gRPC
//! server streams.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use bitcoin::BlockHash;

use super::status::to_status;
use crate::domain::BlockHeight;
use crate::lnd::{LightningNode, NodeError, NodeStream};

/// A server stream as the generated service traits take it.
pub type WireStream<W> = Pin<Box<dyn Stream<Item = Result<W, Status>> + Send + 'static>>;

/// The message a stream ends with when the server stops under it; lnd's own shutdown makes
/// clients see the connection close, which they read as "retry later" just the same.
pub const SHUTTING_DOWN: &str = "server is shutting down";

/// The active chain as the simulated lnd's chain backend sees it, so a block epoch
/// subscription naming the last block a client saw is sent the blocks it missed, as lnd does.
/// The port has no such query; the runner hands the world's chain in.
pub trait BlockSource: Send + Sync {
    /// The hash of the block at `height` in the active chain.
    fn hash_at(&self, height: BlockHeight) -> Option<BlockHash>;
}

impl BlockSource for crate::simnet::world::SharedWorld {
    fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        crate::simnet::world::lock(self).chain().block_hash(height)
    }
}

/// Serves lnd's seven services over one [`LightningNode`]. Cheap to clone.
#[derive(Clone)]
pub struct LndFacade {
    /// The node every call is translated to.
    pub(crate) node: Arc<dyn LightningNode>,
    /// The chain, for catching a block epoch subscriber up; without it subscriptions start
    /// at the tip whatever block they name.
    pub(crate) blocks: Option<Arc<dyn BlockSource>>,
    /// Cancelled when the server stops; open streams end with `UNAVAILABLE` then.
    pub(crate) stop: CancellationToken,
}

impl LndFacade {
    /// A facade over `node` whose streams end when `stop` is cancelled.
    pub fn new(
        node: Arc<dyn LightningNode>,
        blocks: Option<Arc<dyn BlockSource>>,
        stop: CancellationToken,
    ) -> LndFacade {
        LndFacade { node, blocks, stop }
    }

    /// Forwards a port stream as a server stream, converting each item, and ends it with
    /// `UNAVAILABLE` when the server stops so graceful shutdown never waits on a subscriber.
    pub fn forward<D, W>(&self, stream: NodeStream<D>, convert: fn(&D) -> W) -> WireStream<W>
    where
        D: Send + 'static,
        W: Send + 'static,
    {
        let items = stream.map(move |item| match item {
            Ok(d) => Ok(convert(&d)),
            Err(e) => Err(to_status(&e)),
        });
        until_stopped(items.boxed(), self.stop.clone())
    }
}

/// lnd (grpc-go) sends a server stream's response headers together with its first message, so
/// for the client the call itself completes only once the first event exists (a channel event,
/// a confirmation, a spend). The facade answers the same way: a client that awaited the call
/// as if it returned at once hangs here as it would against lnd (`docs/simnet-fidelity.md`).
pub async fn with_first_message<W: Send + 'static>(mut items: WireStream<W>) -> WireStream<W> {
    match items.next().await {
        Some(first) => futures::stream::once(async move { first })
            .chain(items)
            .boxed(),
        None => items,
    }
}

/// Ends `items` with an `UNAVAILABLE` status once `stop` is cancelled.
fn until_stopped<W: Send + 'static>(
    items: WireStream<W>,
    stop: CancellationToken,
) -> WireStream<W> {
    futures::stream::unfold(Some((items, stop)), |state| async move {
        let (mut items, stop) = state?;
        tokio::select! {
            biased;
            () = stop.cancelled() => Some((Err(Status::unavailable(SHUTTING_DOWN)), None)),
            item = items.next() => item.map(|i| (i, Some((items, stop)))),
        }
    })
    .boxed()
}

/// Converts a port result into a gRPC answer.
pub fn answer<T>(r: Result<T, NodeError>) -> Result<tonic::Response<T>, Status> {
    r.map(tonic::Response::new).map_err(|e| to_status(&e))
}

/// Converts a port error into the status lnd would send.
pub fn fail(e: NodeError) -> Status {
    to_status(&e)
}
