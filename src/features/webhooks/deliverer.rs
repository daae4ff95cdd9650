//! The webhook deliverer: every worker process runs one; each subscription
//! is delivered by one of them at a time, the holder of its lease.
//!
//! Delivery is a plain loop per subscription rather than apalis jobs: jobs
//! run concurrently and retry out of order, and a subscription's promise is
//! its events in log order. One delivery per subscription is in flight at a
//! time; the next event goes only after the previous one was answered
//! `2xx`. A failing event is retried (capped exponential backoff, full
//! jitter) and never skipped; after `WEBHOOK_FAILURE_PAUSE` of nothing but
//! failures the subscription is paused, and `410 Gone` disables it.
//!
//! Progress is saved after every batch and before every retry, so a killed
//! worker's successor (which takes the lease once it runs out) re-delivers
//! at most one batch: at least once, never skipped. Leases are checked at
//! every save (`subscriptions::save_progress`), so a worker that stalled past
//! its lease cannot move a checkpoint it no longer owns.
//!
//! Each worker takes a fair share of the subscriptions (the active ones
//! divided by the workers seen within a lease, rounded up): one that holds
//! more lets the surplus go at its next batch boundary, and the others
//! take it. A stopping worker lets its subscriptions go at once. The claim
//! loop also deletes rotated-out secrets once their overlap has ended.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::platform::retry::backoff;
use crate::{
    features::{
        public_events::{self, Positioned},
        webhooks::{
            DeliveryError, Outcome, Sender,
            subscriptions::{self, AfterFailure, Held},
        },
    },
    platform::{config::WebhookConfig, metrics, store::Cursor},
};

/// How often free subscriptions are looked for.
const CLAIM_INTERVAL: Duration = Duration::from_secs(1);
/// How often a caught-up subscription looks at the log again.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often a caught-up subscription is read again, so a pause, a
/// removal or a replay takes effect without waiting for a new event.
const IDLE_RELOAD: Duration = Duration::from_secs(1);
/// Log events read, and progress saved, per round.
const BATCH: i64 = 100;

/// What every subscription's loop shares.
#[derive(Debug)]
struct Deliverer {
    pool: PgPool,
    config: WebhookConfig,
    sender: Sender,
    /// This process's name in leases.
    owner: String,
}

/// A subscription's delivery task in this process.
#[derive(Debug)]
struct Running {
    task: JoinHandle<()>,
    /// Cancelled to make the task let the subscription go (at shutdown, or
    /// when this process holds more than its share).
    stop: CancellationToken,
}

/// Claims its share of the free subscriptions and delivers each in its own
/// task until `shutdown`; then lets them go.
pub async fn run(
    pool: PgPool,
    config: WebhookConfig,
    owner: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let deliverer = Arc::new(Deliverer {
        sender: Sender::new(&config).context("build the webhook HTTP client")?,
        pool,
        config,
        owner,
    });
    let mut running: HashMap<Uuid, Running> = HashMap::new();
    loop {
        running.retain(|_, running| !running.task.is_finished());
        match subscriptions::claim(&deliverer.pool, &deliverer.owner, deliverer.config.lease).await
        {
            Ok(claimed) => {
                for id in claimed.ids {
                    running.entry(id).or_insert_with(|| {
                        let stop = shutdown.child_token();
                        let task = tokio::spawn(deliver(deliverer.clone(), id, stop.clone()));
                        Running { task, stop }
                    });
                }
                let letting_go = running.values().filter(|r| r.stop.is_cancelled()).count();
                for surplus in running
                    .values()
                    .filter(|r| !r.stop.is_cancelled())
                    .take(claimed.excess.saturating_sub(letting_go))
                {
                    surplus.stop.cancel();
                }
            }
            Err(error) => tracing::warn!(%error, "claiming webhook subscriptions failed"),
        }
        match subscriptions::forget_expired_secrets(&deliverer.pool).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "rotated-out webhook secrets deleted"),
            Err(error) => tracing::warn!(%error, "deleting rotated-out webhook secrets failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
            () = shutdown.cancelled() => break,
        }
    }
    for (_, running) in running {
        running
            .task
            .await
            .context("a webhook delivery task panicked")?;
    }
    Ok(())
}

/// Delivers subscription `id` while this process holds it and `stop` is not
/// cancelled, then lets it go.
async fn deliver(deliverer: Arc<Deliverer>, id: Uuid, stop: CancellationToken) {
    tracing::info!(subscription = %id, "delivering webhooks");
    if let Err(error) = deliver_while_held(&deliverer, id, &stop).await {
        tracing::warn!(subscription = %id, error = %format!("{error:#}"), "webhook delivery stopped");
    }
    if let Err(error) = subscriptions::release(&deliverer.pool, id, &deliverer.owner).await {
        tracing::warn!(subscription = %id, %error, "could not let the subscription go; its lease will run out");
    }
}

/// Why a subscription's loop stops.
enum Stop {
    /// Paused, disabled, removed, taken over, or the process is stopping.
    Done,
    /// The operator replayed it: start over from its new checkpoint.
    Reload,
}

async fn deliver_while_held(
    deliverer: &Deliverer,
    id: Uuid,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(mut held) = deliverer.hold(id).await? else {
        return Ok(());
    };
    while !stop.is_cancelled() {
        let batch = public_events::read_after(&deliverer.pool, held.checkpoint, BATCH).await?;
        let idle = batch.end == held.checkpoint;
        if idle {
            tokio::select! {
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = stop.cancelled() => break,
            }
            if held.renewed_at.elapsed() <= IDLE_RELOAD.min(deliverer.config.lease / 3) {
                continue;
            }
        }
        // Renew the lease, and read what changed since: a pause, a removal,
        // a rotated secret, a replay (the checkpoint moved).
        let Some(now_held) = deliverer.hold(id).await? else {
            break;
        };
        let moved = now_held.checkpoint != held.checkpoint;
        held = now_held;
        if idle || moved {
            continue;
        }
        match deliverer
            .deliver_batch(&mut held, batch.events, stop)
            .await?
        {
            Ok(delivered) => {
                // Not saved: taken over or replayed; the next round's
                // `hold` finds out which.
                if deliverer.save(&held, batch.end, delivered).await? {
                    held.checkpoint = batch.end;
                }
            }
            Err(Stop::Reload) => {}
            Err(Stop::Done) => break,
        }
    }
    Ok(())
}

impl Deliverer {
    async fn hold(&self, id: Uuid) -> anyhow::Result<Option<Held>> {
        subscriptions::hold(&self.pool, id, &self.owner, self.config.lease)
            .await
            .context("renew the subscription's lease")
    }

    /// Whether a third of the lease has passed since it was renewed.
    fn renewal_due(&self, held: &Held) -> bool {
        held.renewed_at.elapsed() > self.config.lease / 3
    }

    async fn save(&self, held: &Held, to: Cursor, delivered: i64) -> anyhow::Result<bool> {
        subscriptions::save_progress(&self.pool, held, &self.owner, to, delivered)
            .await
            .context("save the subscription's progress")
    }

    /// Delivers `events` in order, each until it is delivered, and returns
    /// how many were delivered since progress was last saved; the caller
    /// saves the batch.
    async fn deliver_batch(
        &self,
        held: &mut Held,
        events: Vec<Positioned>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Result<i64, Stop>> {
        let mut unsaved = 0;
        for Positioned { cursor, event } in events {
            if !public_events::is_wanted(held.event_types.as_deref(), &event) {
                continue;
            }
            loop {
                if self.renewal_due(held) {
                    // Slow answers must not let the lease run out mid-batch.
                    if unsaved > 0 && !self.save(held, held.checkpoint, unsaved).await? {
                        return Ok(Err(Stop::Reload));
                    }
                    unsaved = 0;
                    let Some(now_held) = self.hold(held.id).await? else {
                        return Ok(Err(Stop::Done));
                    };
                    if now_held.generation != held.generation {
                        return Ok(Err(Stop::Reload));
                    }
                    *held = now_held;
                }
                let outcome = self.sender.send(&held.url, &held.secrets, &event).await;
                metrics::record_webhook_attempt(outcome.label());
                match outcome {
                    Outcome::Delivered => {
                        unsaved += 1;
                        break;
                    }
                    Outcome::Gone => {
                        self.save(held, held.checkpoint, unsaved).await?;
                        subscriptions::disable(
                            &self.pool,
                            held.id,
                            &self.owner,
                            "the receiver answered 410 Gone",
                        )
                        .await?;
                        tracing::warn!(subscription = %held.id, "webhook receiver answered 410 Gone; subscription disabled");
                        return Ok(Err(Stop::Done));
                    }
                    Outcome::Failed(error) => {
                        // What was delivered before this event stays delivered.
                        if unsaved > 0 && !self.save(held, held.checkpoint, unsaved).await? {
                            return Ok(Err(Stop::Reload));
                        }
                        unsaved = 0;
                        if let Some(stop) = self.after_failure(held, &error, shutdown).await? {
                            return Ok(Err(stop));
                        }
                    }
                }
            }
            held.checkpoint = cursor;
        }
        Ok(Ok(unsaved))
    }

    /// Records a failed attempt and waits out its backoff, holding the
    /// lease; `None` when the event is to be tried again.
    async fn after_failure(
        &self,
        held: &mut Held,
        error: &DeliveryError,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Stop>> {
        let after = subscriptions::record_failure(
            &self.pool,
            held.id,
            &self.owner,
            &error.to_string(),
            self.config.failure_pause,
        )
        .await?;
        let failed_attempts = match after {
            AfterFailure::Retry { failed_attempts } => failed_attempts,
            AfterFailure::Paused => {
                tracing::error!(subscription = %held.id, %error, "webhook subscription failing for longer than WEBHOOK_FAILURE_PAUSE; paused");
                return Ok(Some(Stop::Done));
            }
            AfterFailure::Lost => return Ok(Some(Stop::Done)),
        };
        let pause = backoff(
            self.config.retry_base,
            self.config.retry_cap,
            u32::try_from(failed_attempts).unwrap_or(u32::MAX),
        );
        tracing::warn!(subscription = %held.id, failed_attempts, retry_in_ms = pause.as_millis() as u64, %error, "webhook delivery failed");
        // Sleep in slices that keep the lease.
        let until = Instant::now() + pause;
        while Instant::now() < until {
            let slice = (until - Instant::now()).min(self.config.lease / 3);
            tokio::select! {
                () = tokio::time::sleep(slice) => {}
                () = shutdown.cancelled() => return Ok(Some(Stop::Done)),
            }
            let Some(now_held) = self.hold(held.id).await? else {
                return Ok(Some(Stop::Done));
            };
            if now_held.generation != held.generation {
                return Ok(Some(Stop::Reload));
            }
            *held = now_held;
        }
        Ok(None)
    }
}
