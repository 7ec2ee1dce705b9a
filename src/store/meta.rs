//! Facts about the database itself: which network it belongs to.

use crate::domain::Network;

use super::{Store, StoreError};

impl Store {
    /// Binds the database to `network` on first use and refuses any other network afterwards:
    /// swaps, keys and addresses of one chain must never be resumed against another.
    pub async fn claim_network(&self, network: Network) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("claiming the network"))?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'network'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("reading the store's network"))?;
        match existing {
            Some(stored) if stored == network.as_str() => {}
            Some(stored) => {
                return Err(StoreError::WrongNetwork {
                    path: self.path().to_path_buf(),
                    stored,
                    configured: network.as_str().to_owned(),
                });
            }
            None => {
                sqlx::query("INSERT INTO store_meta (key, value) VALUES ('network', ?)")
                    .bind(network.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("recording the store's network"))?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("claiming the network"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_belongs_to_the_first_network_that_opened_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = Store::open(&path).await.unwrap();
        store.claim_network(Network::Simnet).await.unwrap();
        store.claim_network(Network::Simnet).await.unwrap();
        let err = store.claim_network(Network::Mainnet).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("simnet") && msg.contains("mainnet"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("--datadir"), "{msg}");
    }
}
