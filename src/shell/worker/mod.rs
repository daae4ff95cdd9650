//! The worker process: sends account emails from the Redis queue, keeps the
//! read models up to date, relays requests the web process could not enqueue,
//! delivers webhooks, and cleans up finished jobs and expired dead letters.
//!
//! apalis-redis drops a worker for good when its Redis connection breaks, so
//! the email worker runs under a small supervisor that rebuilds it with a
//! fresh, unique name and a capped backoff, and hands the stopped worker's
//! fetched jobs back to the queue. The projector, the outbox relay,
//! the webhook deliverer, housekeeping and the sweeps (registration expiry, stranded requests) run
//! beside it as plain loops. All stop on the shutdown token:
//! running jobs finish, fetched ones go back to the queue.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{AbortError, BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use porter_jobs::EmailQueueJob;
use serde_json::Value;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::{
    features::{
        accounts::{expiry, projector},
        address_requests, emails,
        emails::{housekeeping, relay},
        webhooks::deliverer,
    },
    platform::{
        queue::backend::{email_queue_config, hand_back_inflight},
        services::WorkerState,
    },
};

pub mod metrics_listener;

/// How often an idle worker looks for new jobs pushed by another process.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The supervisor's restart backoff after a worker died.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs the email worker, the projector, the outbox relay, housekeeping and
/// the sweeps until `shutdown` is cancelled.
pub async fn run(state: Arc<WorkerState>, shutdown: CancellationToken) -> anyhow::Result<()> {
    warn_about_eviction(&state.redis).await;
    let namespace = state.config.redis.namespace.clone();
    let relay = tokio::spawn(relay::run(
        state.pool.clone(),
        state.queue.clone(),
        shutdown.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping::run(
        state.redis.clone(),
        namespace,
        state.config.worker,
        shutdown.clone(),
    ));
    let sweeps = tokio::spawn(expiry::run(state.clone(), shutdown.clone()));
    let webhooks = tokio::spawn(deliverer::run(
        state.pool.clone(),
        state.config.webhooks,
        unique_worker_name(),
        shutdown.clone(),
    ));
    let projector = tokio::spawn({
        let (pool, shutdown) = (state.pool.clone(), shutdown.clone());
        async move {
            let result = projector::run(pool, shutdown.clone()).await;
            if result.is_err() {
                // A stopped projector must not leave a process that looks healthy.
                shutdown.cancel();
            }
            result
        }
    });
    supervise_email_worker(state, shutdown).await;
    relay.await.context("relay task panicked")?;
    housekeeping.await.context("housekeeping task panicked")?;
    sweeps.await.context("sweep task panicked")?;
    webhooks
        .await
        .context("webhook task panicked")?
        .context("webhooks")?;
    projector
        .await
        .context("projector task panicked")?
        .context("projector")
}

/// Link keys and queued jobs live in Redis; under memory pressure an
/// evicting policy would drop keys with a TTL (every link key) first.
async fn warn_about_eviction(redis: &ConnectionManager) {
    let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut redis.clone())
        .await;
    match policy.as_deref() {
        Ok([_, policy]) if policy == "noeviction" => {}
        Ok([_, policy]) => tracing::warn!(
            policy = %policy,
            "Redis maxmemory-policy is not noeviction: under memory pressure Redis will evict \
             link keys and queued jobs; set `maxmemory-policy noeviction`"
        ),
        Ok(_) | Err(_) => {
            tracing::warn!("could not read Redis maxmemory-policy (CONFIG GET refused?)")
        }
    }
}

async fn supervise_email_worker(state: Arc<WorkerState>, shutdown: CancellationToken) {
    let mut backoff = RESTART_BACKOFF_MIN;
    // Stopped workers whose fetched jobs could not be handed back yet (Redis
    // was away); retried before every restart.
    let mut stopped: Vec<String> = Vec::new();
    while !shutdown.is_cancelled() {
        let name = unique_worker_name();
        tracing::info!(worker = %name, "email worker starting");
        let started = std::time::Instant::now();
        let outcome = run_email_worker(&name, state.clone(), shutdown.clone()).await;
        stopped.push(name.clone());
        hand_back(&state, &mut stopped).await;
        match outcome {
            Ok(()) if shutdown.is_cancelled() => break,
            Ok(()) => tracing::warn!(worker = %name, "email worker stopped on its own"),
            Err(error) => {
                tracing::error!(worker = %name, error = %format!("{error:#}"), "email worker died")
            }
        }
        // A worker that ran for a while before dying starts the backoff over.
        if started.elapsed() > RESTART_BACKOFF_MAX {
            backoff = RESTART_BACKOFF_MIN;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
    }
    hand_back(&state, &mut stopped).await;
    tracing::info!("email worker stopped");
}

/// Hands the fetched jobs of `stopped` workers back to the queue, keeping
/// the names it could not handle yet.
async fn hand_back(state: &WorkerState, stopped: &mut Vec<String>) {
    let mut still_pending = Vec::new();
    for name in stopped.drain(..) {
        match hand_back_inflight(&state.redis, &state.config.redis.namespace, &name).await {
            Ok(0) => {}
            Ok(count) => {
                tracing::info!(worker = %name, count, "fetched jobs handed back to the queue")
            }
            Err(error) => {
                tracing::warn!(worker = %name, %error, "could not hand fetched jobs back yet");
                still_pending.push(name);
            }
        }
    }
    *stopped = still_pending;
}

async fn run_email_worker(
    name: &str,
    state: Arc<WorkerState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = crate::platform::connections::connect_redis(&state.config.redis.url).await?;
    let storage = RedisStorage::<serde_json::Value>::new(redis)
        .with_config(email_queue_config(&state.config.redis.namespace))
        .poll_with_interval(POLL_INTERVAL);
    let worker = WorkerBuilder::new(name)
        .backend(storage)
        .data(state.clone())
        .concurrency(state.config.worker.concurrency)
        .build(handle_email_queue_job);
    worker
        .run_until(async move {
            shutdown.cancelled().await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .context("email worker")
}

/// Unique per process and per start: apalis refuses a worker name that is
/// still registered, and a restarted worker must not inherit a dead one's.
fn unique_worker_name() -> String {
    let host = hostname();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("porter-{host}-{}-{suffix}", std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A job of the email queue as apalis hands it over: raw JSON, so a payload
/// that does not decode is dead-lettered at once instead of being re-run by
/// apalis. Each kind goes to its feature.
async fn handle_email_queue_job(
    payload: Value,
    state: Data<Arc<WorkerState>>,
) -> Result<(), BoxDynError> {
    match serde_json::from_value::<EmailQueueJob>(payload) {
        Ok(EmailQueueJob::Email(job)) => emails::job::send_account_email(job, &state).await,
        Ok(EmailQueueJob::Address(request)) => address_requests::job::handle(request, &state).await,
        Err(error) => {
            tracing::error!(%error, "unreadable email job; dead-lettered");
            Err(AbortError::new(error).into())
        }
    }
}
