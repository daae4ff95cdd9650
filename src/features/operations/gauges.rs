//! Scrape-time gauges: the shared state that every process's `/metrics`
//! reports (queue depths, dead letters, live workers, projector and webhook
//! lag), read from Redis and Postgres when scraped.
//!
//! Read at scrape time rather than kept up to date, so every process reports
//! the same current values and nothing has to track them in between. Reading
//! is bounded by a timeout: a scrape while Redis is away answers with the
//! last values instead of hanging. Reading is also bounded in rate: however
//! often and however many at once scrape, the reads run at most once per
//! [`REFRESH_INTERVAL`] (concurrent scrapes wait for the one reading), so
//! `/metrics` cannot be used to load the database.
//!
//! [`serve`] is the metrics listener (`METRICS_PORT`) both processes use:
//! it answers `GET /metrics` and nothing else, never on the public port.
//! What a process adds to its scrape is its business (`web`, `worker`).

use std::{
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{Request, body::Incoming};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Mutex, time::Instant};

use crate::{
    features::{accounts, webhooks::subscriptions},
    platform::{
        config::ConnectionLimits,
        http::server::{self, Body},
        metrics::{self, QueueGauges, WebhookGauges},
        queue::backend,
    },
};

/// Shared state is read at most this often, whatever the scrape rate.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of [`metrics::encode_all`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape waits for Redis or Postgres before it reports the last
/// values it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the gauges are read from, and when they last were.
#[derive(Debug, Clone)]
pub struct Sources {
    pool: PgPool,
    redis: ConnectionManager,
    redis_namespace: String,
    /// When the last read finished; held while reading, so concurrent
    /// scrapes wait for one read instead of each making their own.
    refreshed_at: Arc<Mutex<Option<Instant>>>,
    refreshes: Arc<AtomicU64>,
}

impl Sources {
    pub fn new(pool: PgPool, redis: ConnectionManager, redis_namespace: &str) -> Self {
        Self {
            pool,
            redis,
            redis_namespace: redis_namespace.to_owned(),
            refreshed_at: Arc::new(Mutex::new(None)),
            refreshes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many times the shared state has been read.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Reads the shared state unless it was read within [`REFRESH_INTERVAL`].
    async fn refresh_if_due(&self) {
        let mut refreshed_at = self.refreshed_at.lock().await;
        if refreshed_at.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        refresh(self).await;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        *refreshed_at = Some(Instant::now());
    }
}

/// Reads the shared-state gauges. A source that fails or times out keeps
/// its gauges at their last values; the failure is logged.
async fn refresh(sources: &Sources) {
    let mut redis = sources.redis.clone();
    let queue = backend::stats(&mut redis, &sources.redis_namespace);
    let lag = accounts::lag(&sources.pool, accounts::read_model::CHECKPOINT);
    let webhooks = subscriptions::list(&sources.pool);
    let (queue, lag, webhooks) = tokio::join!(
        tokio::time::timeout(REFRESH_TIMEOUT, queue),
        tokio::time::timeout(REFRESH_TIMEOUT, lag),
        tokio::time::timeout(REFRESH_TIMEOUT, webhooks),
    );
    match queue {
        Ok(Ok(stats)) => metrics::set_queue_gauges(QueueGauges {
            active: stats.active,
            scheduled: stats.scheduled,
            running: stats.running,
            dead: stats.dead,
            live_workers: stats.workers.iter().filter(|w| w.live).count() as u64,
        }),
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading the queue failed"),
        Err(_) => tracing::warn!("metrics: reading the queue timed out"),
    }
    match lag {
        Ok(Ok(Some(lag))) => metrics::set_projector_lag(
            accounts::read_model::CHECKPOINT,
            lag.events_behind,
            lag.seconds_behind,
        ),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading the projector lag failed"),
        Err(_) => tracing::warn!("metrics: reading the projector lag timed out"),
    }
    match webhooks {
        Ok(Ok(listed)) => metrics::set_webhook_gauges(
            &listed
                .into_iter()
                .map(|listed| WebhookGauges {
                    subscription: listed.subscription.id.to_string(),
                    state: listed.subscription.state,
                    lag_events: listed.lag_events,
                    lag_seconds: listed.lag_seconds,
                    failed_attempts: listed.subscription.failed_attempts,
                })
                .collect::<Vec<_>>(),
        ),
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading webhook subscriptions failed"),
        Err(_) => tracing::warn!("metrics: reading webhook subscriptions timed out"),
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves; each
/// scrape first calls `before_scrape` (a process's own gauges), then
/// refreshes the shared ones if due.
pub async fn serve(
    listener: TcpListener,
    sources: Sources,
    before_scrape: impl Fn() + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |_peer: IpAddr, request: Request<Incoming>| {
        let sources = sources.clone();
        let before_scrape = before_scrape.clone();
        async move {
            let (status, text) = match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => {
                    before_scrape();
                    return scrape(&sources).await;
                }
                (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics here\n"),
                _ => (StatusCode::NOT_FOUND, "only GET /metrics here\n"),
            };
            let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            *response.status_mut() = status;
            if status == StatusCode::METHOD_NOT_ALLOWED {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            response
        }
    };
    server::serve(listener, ConnectionLimits::METRICS, None, handler, shutdown).await;
}

/// Refreshes the gauges if due and answers a scrape with the whole registry.
async fn scrape(sources: &Sources) -> Response<Body> {
    sources.refresh_if_due().await;
    let mut response = Response::new(Full::new(Bytes::from(metrics::encode_all())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
