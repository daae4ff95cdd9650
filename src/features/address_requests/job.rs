//! Address requests: the half of a request about an email address that the
//! web process leaves to the worker so that its answer is the same, in body
//! and in time, for every address.
//!
//! The worker looks up who holds the address and records what the request
//! means for that account (the aggregate decides: a password reset request
//! is a reset link for an active account and a fresh activation link for a
//! pending one); an address nobody holds records nothing. The recorded
//! request keeps the job's request id, so a job that runs twice records it
//! once, and the command side pushes the email job as for any other request.
//! A failure to reach Postgres is retried like an email's, by putting the
//! request back on the queue for later; what cannot succeed is dead-lettered.

use apalis::prelude::{AbortError, BoxDynError};
use chrono::Utc;
use porter_jobs::{AddressAction, AddressRequest};

use crate::platform::{
    retry::{AttemptError, backoff},
    services::WorkerState,
};
use crate::{
    domain::AccountCommand,
    platform::{
        commands::CommandError,
        store::{self, ClaimKind, EventMetadata},
    },
};

#[tracing::instrument(skip_all, fields(address_request_id = %request.request_id, action = ?request.action))]
pub async fn handle(request: AddressRequest, state: &WorkerState) -> Result<(), BoxDynError> {
    let policy = state.config.mail.retry;
    let error = match record(state, &request).await {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    let attempt = request.failed_attempts + 1;
    if matches!(error, AttemptError::Permanent(_)) || attempt >= policy.attempts {
        tracing::error!(attempt, error = %error, "address request given up; dead-lettered");
        return Err(AbortError::new(error).into());
    }
    // Like an email, the retry waits in the queue's schedule, not in this
    // worker slot.
    let pause = backoff(policy.base, policy.cap, attempt);
    tracing::warn!(attempt, retry_in_ms = pause.as_millis() as u64, error = %error, "address request attempt failed");
    let not_before = chrono::Duration::from_std(pause)
        .ok()
        .and_then(|pause| Utc::now().checked_add_signed(pause));
    state
        .queue
        .push_address_request(request.retried(), not_before)
        .await
        .map_err(|push| {
            tracing::warn!(error = %push, "could not put the address request back on the queue");
            BoxDynError::from(push)
        })
}

async fn record(state: &WorkerState, request: &AddressRequest) -> Result<(), AttemptError> {
    let holder = store::claim_holder(&state.pool, ClaimKind::Email, &request.email)
        .await
        .map_err(AttemptError::transient)?;
    let Some(account_id) = holder else {
        tracing::debug!("no account holds the address");
        return Ok(());
    };
    let command = match request.action {
        AddressAction::PasswordReset => AccountCommand::RequestPasswordReset {
            request_id: request.request_id,
        },
        AddressAction::Resend => AccountCommand::RequestActivation {
            request_id: request.request_id,
        },
    };
    let metadata = EventMetadata {
        http_request_id: request.http_request_id.clone(),
        causation_id: None,
        client_ip_hash: request.client_ip_hash.clone(),
        actor: None,
    };
    let executed = state
        .commands
        .execute(account_id, command, &metadata)
        .await
        .map_err(|error| match error {
            CommandError::Database(_) | CommandError::Contended(_) => {
                AttemptError::transient(error)
            }
            other => AttemptError::permanent(other),
        })?;
    tracing::info!(%account_id, recorded = executed.events.len(), "address request recorded");
    Ok(())
}
