//! Prometheus metrics: what the web process and the worker expose on
//! `GET /metrics`, in the OpenMetrics text format that Prometheus scrapes.
//!
//! Counters live in one process-wide registry, as with any Prometheus client:
//! HTTP requests are recorded by the router, domain facts (sign-ups,
//! activations, emails sent and failed) where events are appended
//! ([`record_events`], called by `store::accounts`), so the web process counts
//! what it records and the worker counts what it records. Gauges that describe
//! shared state (queue depths, dead letters, live workers, projector lag) are
//! read from Redis and Postgres at scrape time by [`refresh`], so every process
//! reports the same current values and nothing has to keep them up to date in
//! between. Reading them is bounded by a timeout: a scrape while Redis is away
//! answers with the last values instead of hanging.

use std::{
    future::Future,
    net::IpAddr,
    sync::{LazyLock, atomic::AtomicU64},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{Request, body::Incoming};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{domain::AccountEvent, ops::queue::QueueStats, projection};

/// The content type of [`encode_all`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape waits for Redis or Postgres before it reports the last
/// values it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    permanent: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadModelLabels {
    read_model: &'static str,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric Porter exposes; one per process, see [`metrics`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: LatencyFamily,
    signups: Counter,
    activations: Counter,
    emails_sent: Counter,
    emails_failed: Family<FailureLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    dead_letters: Gauge,
    live_workers: Gauge,
    projector_lag_events: Family<ReadModelLabels, Gauge>,
    projector_lag_seconds: Family<ReadModelLabels, Gauge<f64, AtomicU64>>,
    hash_queue_depth: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s; a sign-up spends about 25 ms hashing.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("porter");
        let http_requests = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route and status, and how long they took",
            http_requests.clone(),
        );
        let signups = Counter::default();
        registry.register("signups", "Accounts registered", signups.clone());
        let activations = Counter::default();
        registry.register("activations", "Accounts activated", activations.clone());
        let emails_sent = Counter::default();
        registry.register(
            "emails_sent",
            "Account emails sent and recorded",
            emails_sent.clone(),
        );
        let emails_failed = Family::<FailureLabels, Counter>::default();
        registry.register(
            "emails_failed",
            "Account emails given up (dead-lettered), by whether the failure was permanent",
            emails_failed.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "email_queue_depth",
            "Email jobs waiting (active), scheduled for later, and running",
            queue_depth.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "email_dead_letters",
            "Email jobs in the dead-letter set",
            dead_letters.clone(),
        );
        let live_workers = Gauge::default();
        registry.register(
            "email_workers_live",
            "Email workers whose heartbeat is recent",
            live_workers.clone(),
        );
        let projector_lag_events = Family::<ReadModelLabels, Gauge>::default();
        registry.register(
            "projector_lag_events",
            "Committed events the read model has not applied yet",
            projector_lag_events.clone(),
        );
        let projector_lag_seconds = Family::<ReadModelLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "projector_lag_seconds",
            "Age of the oldest event the read model has not applied yet",
            projector_lag_seconds.clone(),
        );
        let hash_queue_depth = Gauge::default();
        registry.register(
            "password_hash_queue_depth",
            "Password hashes running or waiting in this web process",
            hash_queue_depth.clone(),
        );
        Self {
            registry,
            http_requests,
            signups,
            activations,
            emails_sent,
            emails_failed,
            queue_depth,
            dead_letters,
            live_workers,
            projector_lag_events,
            projector_lag_seconds,
            hash_queue_depth,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Records one HTTP request; `route` is the router's route name, never the
/// path (paths carry activation keys).
pub fn record_request(route: &'static str, status: StatusCode, elapsed: Duration) {
    metrics()
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            status: status.as_u16(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Counts the facts in events this process just appended.
pub fn record_events(events: &[AccountEvent]) {
    let m = metrics();
    for event in events {
        match event {
            AccountEvent::AccountRegistered(_) => {
                m.signups.inc();
            }
            AccountEvent::AccountActivated(_) => {
                m.activations.inc();
            }
            AccountEvent::ActivationEmailSent(_) => {
                m.emails_sent.inc();
            }
            AccountEvent::ActivationEmailFailed(failed) => {
                let permanent = if failed.permanent { "true" } else { "false" };
                m.emails_failed
                    .get_or_create(&FailureLabels { permanent })
                    .inc();
            }
            // Retries are appended by `porter deliveries retry`, a process
            // nobody scrapes; the dead-letter gauge shows their effect.
            AccountEvent::ActivationRequested(_)
            | AccountEvent::SignUpAttemptedForExistingEmail(_)
            | AccountEvent::EmailRetryRequested(_) => {}
        }
    }
}

/// Where the scrape-time gauges are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub redis_namespace: String,
    /// The web process's hashing queue depth; `None` in the worker.
    pub hash_queue_depth: Option<usize>,
}

/// Reads the shared-state gauges. A source that fails or times out keeps
/// its gauges at their last values; the failure is logged.
pub async fn refresh(sources: &Sources) {
    let m = metrics();
    if let Some(depth) = sources.hash_queue_depth {
        m.hash_queue_depth.set(depth as i64);
    }
    let mut redis = sources.redis.clone();
    let queue = crate::ops::queue::stats(&mut redis, &sources.redis_namespace);
    let lag = projection::lag(&sources.pool, projection::accounts::CHECKPOINT);
    let (queue, lag) = tokio::join!(
        tokio::time::timeout(REFRESH_TIMEOUT, queue),
        tokio::time::timeout(REFRESH_TIMEOUT, lag),
    );
    match queue {
        Ok(Ok(stats)) => set_queue_gauges(&stats),
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading the queue failed"),
        Err(_) => tracing::warn!("metrics: reading the queue timed out"),
    }
    match lag {
        Ok(Ok(Some(lag))) => {
            let labels = ReadModelLabels {
                read_model: projection::accounts::CHECKPOINT,
            };
            m.projector_lag_events
                .get_or_create(&labels)
                .set(lag.events_behind);
            m.projector_lag_seconds
                .get_or_create(&labels)
                .set(lag.seconds_behind);
        }
        Ok(Ok(None)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading the projector lag failed"),
        Err(_) => tracing::warn!("metrics: reading the projector lag timed out"),
    }
}

fn set_queue_gauges(stats: &QueueStats) {
    let m = metrics();
    for (state, value) in [
        ("active", stats.active),
        ("scheduled", stats.scheduled),
        ("running", stats.running),
    ] {
        m.queue_depth
            .get_or_create(&QueueLabels { state })
            .set(value as i64);
    }
    m.dead_letters.set(stats.dead as i64);
    m.live_workers
        .set(stats.workers.iter().filter(|w| w.live).count() as i64);
}

/// The whole registry in the OpenMetrics text format.
pub fn encode_all() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &metrics().registry);
    text
}

/// Refreshes the gauges and answers a scrape.
pub async fn scrape(sources: &Sources) -> Response<Full<Bytes>> {
    refresh(sources).await;
    let mut response = Response::new(Full::new(Bytes::from(encode_all())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Answers the web process's `GET /metrics`.
pub async fn scrape_web(state: &crate::web::AppState) -> Response<Full<Bytes>> {
    let sources = Sources {
        pool: state.pool.clone(),
        redis: state.redis.clone(),
        redis_namespace: state.config.redis_namespace.clone(),
        hash_queue_depth: Some(state.hasher.queue_depth()),
    };
    scrape(&sources).await
}

/// Serves `GET /metrics` alone on `listener` until `shutdown` resolves: the
/// worker's metrics listener (`METRICS_PORT`), which has no other HTTP.
pub async fn serve(listener: TcpListener, sources: Sources, shutdown: impl Future<Output = ()>) {
    let handler = move |_peer: IpAddr, request: Request<Incoming>| {
        let sources = sources.clone();
        async move {
            if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
                return scrape(&sources).await;
            }
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"only GET /metrics here\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    crate::web::serve_http(listener, handler, shutdown).await;
}
