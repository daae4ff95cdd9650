//! Sweeps: what no event triggers, found by age in the read model.
//!
//! - A pending registration older than `REGISTRATION_TTL` expires, which
//!   releases its username and address in the same transaction. Several
//!   workers may sweep at once: the aggregate decides each expiry at the
//!   stream's expected version, so one registration expires once.
//! - An email request still outstanding after `STRANDED_REQUEST_AGE` has its
//!   job pushed again under the same job id. apalis-redis ignores a push
//!   whose job is still in Redis, so only a job Redis lost (failover, an AOF
//!   `everysec` crash, a flush) is queued again; without this, the person
//!   would be answered `202` and never emailed.
//!
//! The read model only nominates candidates; each is loaded from its stream
//! and decided again, so a lagging projector costs a no-op, never a wrong
//! expiry or a duplicate email.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::platform::services::WorkerState;
use crate::{
    domain::AccountCommand,
    features::accounts::read_model,
    platform::{
        commands::{CommandError, Commands},
        store::EventMetadata,
    },
};

/// Candidates handled per sweep; the next sweep takes the rest.
const BATCH: i64 = 500;

/// Runs both sweeps every `SWEEP_INTERVAL` until `shutdown`.
pub async fn run(state: Arc<WorkerState>, shutdown: CancellationToken) {
    let worker = &state.config.worker;
    loop {
        match expire_registrations(&state.commands, &state.pool, worker.registration_ttl).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "sweep: registrations expired"),
            Err(error) => tracing::warn!(%error, "expiry sweep failed; trying again later"),
        }
        match push_stranded_requests(&state.commands, &state.pool, worker.stranded_after).await {
            Ok(0) => {}
            Ok(pushed) => tracing::info!(pushed, "sweep: outstanding email requests pushed again"),
            Err(error) => {
                tracing::warn!(%error, "stranded-request sweep failed; trying again later")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(worker.sweep_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Expires pending registrations older than `ttl`; returns how many this
/// call expired.
pub async fn expire_registrations(
    commands: &Commands,
    pool: &PgPool,
    ttl: Duration,
) -> Result<usize, CommandError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    let Some(cutoff) = now.checked_sub_signed(ttl) else {
        return Ok(0);
    };
    let mut expired = 0;
    for account_id in read_model::pending_registered_before(pool, cutoff, BATCH).await? {
        let command = AccountCommand::Expire { at: now, ttl };
        match commands
            .execute(account_id, command, &EventMetadata::default())
            .await
        {
            Ok(executed) => expired += usize::from(!executed.events.is_empty()),
            Err(CommandError::Domain(error)) => {
                tracing::warn!(%account_id, %error, "registration not expired");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(expired)
}

/// Pushes again the job of every email request outstanding for longer than
/// `age`; returns how many were pushed (most are no-ops in Redis).
pub async fn push_stranded_requests(
    commands: &Commands,
    pool: &PgPool,
    age: Duration,
) -> Result<usize, CommandError> {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = Utc::now().checked_sub_signed(age) else {
        return Ok(0);
    };
    let mut pushed = 0;
    for (account_id, request_id) in
        read_model::outstanding_since_before(pool, cutoff, BATCH).await?
    {
        let Some(account) = commands.load(account_id).await? else {
            continue;
        };
        if account.outstanding_request() == Some(request_id) {
            commands.push_email(&account, request_id).await;
            pushed += 1;
        }
    }
    Ok(pushed)
}
