//! Scrape-time gauges: the shared state that every process's `/metrics`
//! reports (queue depths, dead letters, live workers, projector lag), read
//! from Redis and Postgres when scraped.
//!
//! Read at scrape time rather than kept up to date, so every process reports
//! the same current values and nothing has to track them in between. Reading
//! is bounded by a timeout: a scrape while Redis is away answers with the
//! last values instead of hanging. Which process serves a scrape, and on
//! which listener, is that process's business (`web`, `worker`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::{
    http_server::Body,
    metrics::{self, QueueGauges},
    projection,
    queue::backend,
};

/// The content type of [`metrics::encode_all`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape waits for Redis or Postgres before it reports the last
/// values it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the gauges are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub redis_namespace: String,
}

/// Reads the shared-state gauges. A source that fails or times out keeps
/// its gauges at their last values; the failure is logged.
pub async fn refresh(sources: &Sources) {
    let mut redis = sources.redis.clone();
    let queue = backend::stats(&mut redis, &sources.redis_namespace);
    let lag = projection::lag(&sources.pool, projection::accounts::CHECKPOINT);
    let (queue, lag) = tokio::join!(
        tokio::time::timeout(REFRESH_TIMEOUT, queue),
        tokio::time::timeout(REFRESH_TIMEOUT, lag),
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
            projection::accounts::CHECKPOINT,
            lag.events_behind,
            lag.seconds_behind,
        ),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "metrics: reading the projector lag failed"),
        Err(_) => tracing::warn!("metrics: reading the projector lag timed out"),
    }
}

/// Refreshes the gauges and answers a scrape with the whole registry.
pub async fn scrape(sources: &Sources) -> Response<Body> {
    refresh(sources).await;
    let mut response = Response::new(Full::new(Bytes::from(metrics::encode_all())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
