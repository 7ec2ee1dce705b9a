//! Pays L402 token invoices through the node (`SendPaymentV2` / `TrackPaymentV2`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::l402::{L402Payer, PaidInvoice, PayError};
use crate::domain::{Sat, SwapHash};
use crate::lnd::types::{PaymentRequest, PaymentStatus, PaymentUpdate};
use crate::lnd::{LightningNode, NodeErrorKind, NodeStream};

/// The production [`L402Payer`]: a single-part payment with the configured routing-fee cap.
pub struct NodePayer(pub Arc<dyn LightningNode>);

#[async_trait]
impl L402Payer for NodePayer {
    async fn pay(
        &self,
        invoice: &str,
        max_fee: Sat,
        timeout: Duration,
    ) -> Result<PaidInvoice, PayError> {
        let updates = self
            .0
            .pay(&PaymentRequest {
                invoice: invoice.to_owned(),
                fee_limit: max_fee.to_msat(),
                outgoing_chan_ids: Vec::new(),
                max_parts: 1,
                timeout,
                cltv_limit: None,
                last_hop: None,
            })
            .await
            .map_err(|e| PayError::Unavailable(e.to_string()))?;
        outcome(updates).await
    }

    async fn track(&self, payment_hash: [u8; 32]) -> Result<Option<PaidInvoice>, PayError> {
        match self.0.track_payment(SwapHash(payment_hash)).await {
            Ok(updates) => match outcome(updates).await {
                Ok(paid) => Ok(Some(paid)),
                // Failed for good: the client may buy a new token.
                Err(PayError::Failed(_)) => Ok(None),
                Err(e) => Err(e),
            },
            // lnd has no such payment: it never left.
            Err(e) if e.kind == NodeErrorKind::NotFound => Ok(None),
            // Anything else is not knowing; buying again now could pay twice.
            Err(e) => Err(PayError::Unavailable(e.to_string())),
        }
    }
}

/// Follows a payment's updates to its end.
async fn outcome(mut updates: NodeStream<PaymentUpdate>) -> Result<PaidInvoice, PayError> {
    while let Some(update) = updates.next().await {
        let update = update.map_err(|e| PayError::Unavailable(e.to_string()))?;
        match update.status {
            PaymentStatus::Succeeded { preimage } => {
                return Ok(PaidInvoice {
                    preimage: preimage.0,
                    amount: update.amount,
                    fee: update.fee,
                });
            }
            PaymentStatus::Failed(reason) => return Err(PayError::Failed(format!("{reason:?}"))),
            PaymentStatus::Initiated | PaymentStatus::InFlight => {}
        }
    }
    Err(PayError::InFlight)
}
