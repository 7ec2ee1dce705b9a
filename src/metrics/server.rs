//! The operator-facing HTTP endpoint: `/metrics` for Prometheus, `/healthz` for "the process
//! answers", `/readyz` for "the process can do its job" (store open, later lnd reachable).
//!
//! Liveness and readiness are separate on purpose: a supervisor restarts a process that fails
//! `/healthz`, but only stops routing to (or alerts on) one that fails `/readyz`, since a
//! restart does not bring an unreachable lnd back.

use crate::daemon::supervisor::bounded_drain;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// The reason a component has before it first reports.
const NOT_CHECKED: &str = "not checked yet";

/// Which components gate `/readyz` ("store", later "lnd") and whether each is ready. Cheap to
/// clone; every clone shares the same state, so the task that watches a component can update
/// it while the HTTP server reads it.
#[derive(Debug, Clone)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<&'static str, Result<(), String>>>>,
}

impl Readiness {
    /// Starts with every component not ready, so nothing reports ready before it was checked.
    pub fn new(components: &[&'static str]) -> Readiness {
        let map = components
            .iter()
            .map(|c| (*c, Err(NOT_CHECKED.to_owned())))
            .collect();
        Readiness {
            components: Arc::new(Mutex::new(map)),
        }
    }

    /// Records whether `component` is ready, with the reason when it is not. A component not
    /// named in [`Readiness::new`] is added, so it gates readiness from then on.
    pub fn set(&self, component: &'static str, ready: Result<(), String>) {
        self.lock().insert(component, ready);
    }

    /// `Ok` when every component is ready; otherwise every component that is not, with its
    /// reason, in name order.
    pub fn check(&self) -> Result<(), Vec<(&'static str, String)>> {
        let not_ready: Vec<_> = self
            .lock()
            .iter()
            .filter_map(|(name, state)| state.as_ref().err().map(|why| (*name, why.clone())))
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(not_ready)
        }
    }

    /// A panic while holding the lock cannot leave the map half-written (single inserts and
    /// reads), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Result<(), String>>> {
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// Serves `GET /metrics`, `/healthz` (200 `ok`) and `/readyz` (200 `ready`, or 503 listing
/// each component that is not ready and why) on `listener` until `shutdown` is cancelled,
/// then finishes the requests in flight and returns. The caller binds the listener, so a bad
/// address fails at start-up with the caller's context, and tests can bind port 0.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let server = axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    // A scraper's keep-alive connection must not hold the daemon's stop hostage.
    bounded_drain(server, &shutdown, SHUTDOWN_DRAIN)
        .await
        .unwrap_or(Ok(()))
}

/// How long in-flight scrapes may finish after shutdown begins.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_handler))
        .with_state(AppState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    state.metrics.refresh().await;
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, super::CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        )
            .into_response(),
    }
}

async fn readyz_handler(State(state): State<AppState>) -> Response {
    match state.readiness.check() {
        Ok(()) => "ready".into_response(),
        Err(not_ready) => {
            let mut body = String::from("not ready");
            for (component, why) in not_ready {
                body.push_str(&format!("\n{component}: {why}"));
            }
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}
