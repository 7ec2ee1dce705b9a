//! Every metric sluice exports, in one place, and the HTTP endpoint that serves them.
//!
//! Metrics are registered here and nowhere else, so `docs/metrics.md` can be checked against
//! the registry by a test: a metric cannot be added, renamed or dropped without the
//! documentation following.
//!
//! Exposition format: the Prometheus text format 0.0.4, not OpenMetrics. Prometheus scrapes
//! both, but `promtool check metrics` and many other consumers (older Prometheus, the
//! Datadog/Telegraf/VictoriaMetrics scrapers, `curl | grep` habits) parse only 0.0.4. Serving
//! OpenMetrics text with a 0.0.4 content type would be worse than either: OpenMetrics
//! declares counters without `_total` in `# TYPE`, uses an `info` type and ends with `# EOF`,
//! all of which a 0.0.4 parser rejects or misreads. `prometheus-client` encodes both; we use
//! its 0.0.4 encoder and content type.

mod catalog;
mod process;
mod server;
mod spec;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod text_check;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use catalog::{
    Catalog, CostBreakdown, Initiator, PendingSwap, SwapStateOf, TargetBalance, safe_label,
};
pub use server::{Readiness, serve};
pub use spec::{Kind, SPECS, Spec, render_doc};

/// Where the endpoint listens unless configured otherwise: loopback only, because metrics
/// reveal balances and activity; expose it deliberately (reverse proxy, firewall) if needed.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:9311";

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4 (see the module docs).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Work run before a scrape is encoded: it reads series from elsewhere (lnd's balances, the
/// store's swaps in flight, the budgets) and sets them in the catalog. Prometheus asks this of
/// exporters ("metrics should only be pulled when Prometheus scrapes"): nothing polls lnd or
/// the store on a timer of the daemon's own, so a daemon nobody scrapes does no such work.
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The longest a scrape waits for its hooks; past it, the values the last refresh set are
/// served (Prometheus times a scrape out after 10 s by default).
pub const SCRAPE_REFRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// Scrapes closer together than this share one refresh (two Prometheus servers, a person's
/// `curl` beside Prometheus).
pub const SCRAPE_REFRESH_MIN_GAP: Duration = Duration::from_secs(1);

/// The hooks and when they last ran.
#[derive(Default)]
struct ScrapeHooks {
    hooks: Mutex<Vec<ScrapeHook>>,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for ScrapeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.hooks.lock().map_or(0, |h| h.len());
        f.debug_struct("ScrapeHooks").field("hooks", &n).finish()
    }
}

/// The registry of every metric family. Later issues add their families as fields here
/// (registered in [`Metrics::new`]), so the rest of the daemon updates typed handles and never
/// spells a metric name.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` encodes. Public so tests and tools can inspect it; register
    /// new families in [`Metrics::new`], not from outside.
    pub registry: Registry,
    /// Every sluice family with typed update methods; see `catalog.rs` for which call goes
    /// where.
    pub catalog: Catalog,
    /// What runs before each scrape (see [`ScrapeHook`]).
    before_scrape: ScrapeHooks,
}

impl Metrics {
    /// Registers `sluice_build_info{version}` (always 1) and, on Linux, the standard
    /// `process_*` metrics, read from `/proc` at each scrape.
    pub fn new(version: &str) -> Arc<Metrics> {
        Metrics::with_per_channel(version, true)
    }

    /// Like [`Metrics::new`], with the per-target channel series on or off (config
    /// `metrics.per_channel`).
    pub fn with_per_channel(version: &str, per_channel: bool) -> Arc<Metrics> {
        let mut registry = Registry::default();
        // The info encoder appends `_info`: exposed as `sluice_build_info`.
        registry.register(
            "sluice_build",
            "Build information about the running sluiced; the value is always 1",
            Info::new(vec![("version".to_owned(), version.to_owned())]),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let catalog = Catalog::register(&mut registry, per_channel);
        Arc::new(Metrics {
            registry,
            catalog,
            before_scrape: ScrapeHooks::default(),
        })
    }

    /// Adds work to run before every scrape. A hook must not hold an `Arc<Metrics>` (it
    /// would never be freed): take a `Weak` or the catalog's values through the hook's own
    /// captures.
    pub fn on_scrape(&self, hook: ScrapeHook) {
        self.before_scrape
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Runs every scrape hook, all at once, for at most [`SCRAPE_REFRESH_TIMEOUT`]; nothing
    /// when the last refresh finished less than [`SCRAPE_REFRESH_MIN_GAP`] ago. A hook that
    /// is slower (lnd not answering) leaves the values it set last time.
    pub async fn refresh(&self) {
        let mut last = self.before_scrape.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < SCRAPE_REFRESH_MIN_GAP) {
            return;
        }
        let hooks: Vec<ScrapeHook> = self
            .before_scrape
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let all = futures::future::join_all(hooks.iter().map(|h| h()));
        if tokio::time::timeout(SCRAPE_REFRESH_TIMEOUT, all)
            .await
            .is_err()
        {
            tracing::debug!("a scrape's refresh timed out; serving the last values");
        }
        *last = Some(tokio::time::Instant::now());
    }

    /// Encodes every metric in the Prometheus text format 0.0.4.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
