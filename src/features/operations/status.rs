//! `porter status`: one screen on the health of a deployment: projector lag,
//! the email queue and its workers, dead letters, webhook subscriptions
//! (state, lag, failures), and whether Redis is set up to keep the queue
//! (no eviction, persistence on).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::features::emails::deliveries::render_queue;
use crate::{
    domain::text::printable,
    features::{
        accounts::{self, Lag},
        webhooks::subscriptions::{self, Listed},
    },
    platform::queue::backend::{self, QueueStats},
};

/// Redis settings that decide whether queued jobs survive memory pressure and
/// restarts. `None` when `CONFIG GET` is refused (some managed Redis do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisSettings {
    pub maxmemory_policy: Option<String>,
    pub appendonly: Option<String>,
    pub save: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub at: DateTime<Utc>,
    /// The `accounts` read model's lag; `None` without a checkpoint row.
    pub lag: Option<Lag>,
    pub queue: QueueStats,
    pub redis: RedisSettings,
    pub webhooks: Vec<Listed>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub async fn gather(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    namespace: &str,
) -> Result<Status, StatusError> {
    let lag = accounts::lag(pool, accounts::read_model::CHECKPOINT).await?;
    let queue = backend::stats(redis, namespace).await?;
    let redis = redis_settings(redis).await;
    let webhooks = subscriptions::list(pool).await?;
    Ok(Status {
        at: Utc::now(),
        lag,
        queue,
        redis,
        webhooks,
    })
}

async fn redis_settings(redis: &mut ConnectionManager) -> RedisSettings {
    let mut get = async |name: &str| -> Option<String> {
        let reply: Result<HashMap<String, String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(redis)
            .await;
        reply.ok().and_then(|mut pairs| pairs.remove(name))
    };
    RedisSettings {
        maxmemory_policy: get("maxmemory-policy").await,
        appendonly: get("appendonly").await,
        save: get("save").await,
    }
}

/// Things an operator should fix, in plain words.
pub fn warnings(status: &Status) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(lag) = &status.lag
        && lag.seconds_behind > 60.0
    {
        warnings.push(format!(
            "the projector is {:.0} s behind: is a worker running? (`porter worker`; its log names a stuck event)",
            lag.seconds_behind
        ));
    }
    if status.queue.dead > 0 {
        warnings.push(format!(
            "{} email job(s) dead-lettered: `porter deliveries` lists them",
            status.queue.dead
        ));
    }
    if !status.queue.workers.iter().any(|w| w.live) {
        warnings.push("no live email worker: emails wait in the queue".into());
    }
    for Listed {
        subscription,
        lag_seconds,
        ..
    } in &status.webhooks
    {
        let id = subscription.id;
        match subscription.state.as_str() {
            "active" if subscription.failing_since.is_some() => warnings.push(format!(
                "webhook {id} is failing ({} attempts, last: {}): it is paused if this lasts WEBHOOK_FAILURE_PAUSE",
                subscription.failed_attempts,
                subscription.last_error.as_deref().unwrap_or("unknown")
            )),
            "active" if *lag_seconds > 60.0 => warnings.push(format!(
                "webhook {id} is {lag_seconds:.0} s behind: is a worker running?"
            )),
            "active" => {}
            state => warnings.push(format!(
                "webhook {id} is {state} ({}): `porter webhooks resume {id}` delivers from the first undelivered event",
                subscription.state_reason.as_deref().unwrap_or("no reason given")
            )),
        }
    }
    match status.redis.maxmemory_policy.as_deref() {
        Some("noeviction") => {}
        Some(policy) => warnings.push(format!(
            "Redis maxmemory-policy is {policy}: under memory pressure it may evict queued jobs; set noeviction"
        )),
        None => {}
    }
    let aof = status.redis.appendonly.as_deref() == Some("yes");
    let rdb = status.redis.save.as_deref().is_some_and(|s| !s.is_empty());
    if status.redis.appendonly.is_some() && !aof && !rdb {
        warnings.push(
            "Redis persists nothing (appendonly no, save \"\"): a restart loses queued jobs; \
             the log keeps the requests, but they need re-enqueueing"
                .into(),
        );
    } else if status.redis.appendonly.is_some() && !aof {
        warnings.push(
            "Redis appendonly is off: a crash loses jobs queued since the last snapshot".into(),
        );
    }
    warnings
}

/// The text `porter status` prints.
pub fn render(status: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "porter status at {}",
        status.at.format("%Y-%m-%d %H:%M:%SZ")
    );
    match &status.lag {
        Some(lag) => {
            let _ = writeln!(
                out,
                "projector accounts: {} events behind ({:.1} s), checkpoint at position {} (tx {}), moved {} s ago",
                lag.events_behind,
                lag.seconds_behind,
                lag.checkpoint.position,
                lag.checkpoint.tx_id.0,
                (status.at - lag.checkpoint_updated_at).num_seconds().max(0)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "projector accounts: no checkpoint (run `porter migrate`)"
            );
        }
    }
    out.push_str(&render_queue(&status.queue));
    let _ = writeln!(out, "dead letters: {}", status.queue.dead);
    for listed in &status.webhooks {
        let s = &listed.subscription;
        let _ = writeln!(
            out,
            "webhook {} {}: {} delivered, {} events behind ({:.1} s), {} failed attempts, held by {}",
            s.id,
            s.state,
            s.delivered,
            listed.lag_events,
            listed.lag_seconds,
            s.failed_attempts,
            printable(s.lease_owner.as_deref().unwrap_or("no worker"))
        );
    }
    let unknown = |value: &Option<String>| match value {
        Some(value) => format!("{value:?}"),
        None => "unknown (CONFIG GET refused)".into(),
    };
    let _ = writeln!(
        out,
        "redis: maxmemory-policy {}, appendonly {}, save {}",
        unknown(&status.redis.maxmemory_policy),
        unknown(&status.redis.appendonly),
        unknown(&status.redis.save)
    );
    let warnings = warnings(status);
    if warnings.is_empty() {
        let _ = writeln!(out, "ok: nothing needs attention");
    }
    for warning in warnings {
        let _ = writeln!(out, "warning: {}", printable(&warning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::text::test_support::{HOSTILE, assert_printable},
        platform::{queue::backend::WorkerInfo, store::Cursor},
    };

    fn healthy() -> Status {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        Status {
            at,
            lag: Some(Lag {
                checkpoint: Cursor::default(),
                checkpoint_updated_at: at,
                events_behind: 0,
                seconds_behind: 0.0,
            }),
            queue: QueueStats {
                queue: "porter:queue:email".into(),
                workers: vec![WorkerInfo {
                    name: "porter-a".into(),
                    seen_secs_ago: 1,
                    live: true,
                    running: 0,
                }],
                ..QueueStats::default()
            },
            redis: RedisSettings {
                maxmemory_policy: Some("noeviction".into()),
                appendonly: Some("yes".into()),
                save: Some(String::new()),
            },
            webhooks: vec![],
        }
    }

    fn subscription(state: &str) -> Listed {
        Listed {
            subscription: crate::features::webhooks::subscriptions::Subscription {
                id: uuid::Uuid::nil(),
                url: "https://hooks.example/porter".into(),
                event_types: None,
                state: state.into(),
                state_reason: None,
                created_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
                delivered: 10,
                last_delivered_at: None,
                failing_since: None,
                failed_attempts: 0,
                last_error: None,
                lease_owner: None,
                previous_secret_until: None,
            },
            lag_events: 0,
            lag_seconds: 0.0,
        }
    }

    #[test]
    fn webhooks_paused_failing_or_behind_are_called_out() {
        let mut status = healthy();
        status.webhooks.push(subscription("active"));
        assert!(warnings(&status).is_empty());
        let mut failing = subscription("active");
        failing.subscription.failing_since = Some(status.at);
        failing.subscription.failed_attempts = 7;
        failing.subscription.last_error = Some("the receiver answered 500".into());
        let mut behind = subscription("active");
        behind.lag_seconds = 90.0;
        let mut paused = subscription("paused");
        paused.subscription.state_reason = Some("paused by an operator".into());
        status.webhooks = vec![failing, behind, paused, subscription("disabled")];
        let warnings = warnings(&status);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[0].contains("7 attempts") && warnings[0].contains("answered 500"));
        assert!(warnings[1].contains("90 s behind"));
        assert!(warnings[2].contains("paused (paused by an operator)"));
        assert!(warnings[3].contains("porter webhooks resume"));
        assert!(
            render(&status)
                .contains("webhook 00000000-0000-0000-0000-000000000000 paused: 10 delivered")
        );
    }

    #[test]
    fn reasons_errors_and_owners_show_control_characters_escaped() {
        let mut status = healthy();
        let mut failing = subscription("active");
        failing.subscription.failing_since = Some(status.at);
        failing.subscription.last_error = Some(HOSTILE.into());
        failing.subscription.lease_owner = Some(HOSTILE.into());
        let mut paused = subscription("paused");
        paused.subscription.state_reason = Some(HOSTILE.into());
        status.webhooks = vec![failing, paused];
        status.queue.workers[0].name = HOSTILE.into();
        assert_printable(&render(&status));
    }

    #[test]
    fn a_healthy_deployment_needs_nothing() {
        let text = render(&healthy());
        assert!(text.contains("ok: nothing needs attention"), "{text}");
        assert!(
            text.contains("projector accounts: 0 events behind (0.0 s)"),
            "{text}"
        );
    }

    #[test]
    fn eviction_missing_persistence_dead_letters_and_lag_are_called_out() {
        let mut status = healthy();
        status.redis.maxmemory_policy = Some("allkeys-lru".into());
        status.redis.appendonly = Some("no".into());
        status.queue.dead = 2;
        status.queue.workers.clear();
        if let Some(lag) = &mut status.lag {
            lag.seconds_behind = 120.0;
        }
        let warnings = warnings(&status);
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        assert!(warnings.iter().any(|w| w.contains("allkeys-lru")));
        assert!(warnings.iter().any(|w| w.contains("persists nothing")));
    }
}
