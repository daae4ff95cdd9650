//! The email job: activation links, "you already have an account" notices,
//! password reset links and "your password was changed" notices. The same
//! queue carries address requests, handed to [`super::requests`].
//!
//! The job is idempotent. Each attempt reloads the account, asks the aggregate
//! what the request still needs, and records the outcome at the account's
//! expected version. A job that runs twice finds the request already emailed
//! and does nothing; if two runs race, both emails carry working links,
//! because a second key for the same request does not revoke the first.
//!
//! Transient failures are retried here (see [`super::retry`]); when the budget
//! is spent, or at once for a permanent failure, `ActivationEmailFailed` is
//! appended and the job is aborted into the dead-letter set.

use std::sync::Arc;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::{DateTime, Utc};
use porter_jobs::{EmailQueueJob, SendAccountEmail};
use serde_json::{Value, json};

use super::{
    WorkerState,
    retry::{AttemptError, backoff},
};
use crate::{
    commands::CommandError,
    domain::{Account, AccountCommand, ActivationKey, DomainError, EmailPlan, events::IssuedKey},
    keys::{KeyPurpose, LinkKeys},
    mail::{EmailKind, RenderedEmail, SendError},
    store::EventMetadata,
};

/// The product name shown in emails.
const PRODUCT_NAME: &str = "Porter";

/// The job as apalis hands it over: raw JSON, so a payload that does not
/// decode is dead-lettered at once instead of being re-run by apalis.
pub async fn handle(payload: Value, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    match serde_json::from_value::<EmailQueueJob>(payload) {
        Ok(EmailQueueJob::Email(job)) => send_account_email(job, &state).await,
        Ok(EmailQueueJob::Address(request)) => super::requests::handle(request, &state).await,
        Err(error) => {
            tracing::error!(%error, "unreadable email job; dead-lettered");
            Err(AbortError::new(error).into())
        }
    }
}

#[tracing::instrument(skip_all, fields(account_id = %job.account_id, email_request_id = %job.request_id))]
async fn send_account_email(job: SendAccountEmail, state: &WorkerState) -> Result<(), BoxDynError> {
    let policy = state.config.mail.retry;
    let mut attempt = 1;
    loop {
        let error = match deliver(state, &job).await {
            Ok(()) => return Ok(()),
            Err(AttemptError::NotYet(pause)) => {
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = state.shutdown.cancelled() => return Err(AttemptError::NotYet(pause).into()),
                }
            }
            Err(error) => error,
        };
        let permanent = matches!(error, AttemptError::Permanent(_));
        if permanent || attempt >= policy.attempts {
            record_failure(state, &job, &error.to_string(), permanent, attempt).await;
            return Err(AbortError::new(error).into());
        }
        let pause = backoff(&policy, attempt);
        tracing::warn!(attempt, retry_in_ms = pause.as_millis() as u64, error = %error, "email attempt failed");
        tokio::select! {
            () = tokio::time::sleep(pause) => attempt += 1,
            // On shutdown, hand the job back; apalis re-queues a failed job.
            () = state.shutdown.cancelled() => return Err(error.into()),
        }
    }
}

/// One attempt: decide, issue a key if needed, render, send, record.
async fn deliver(state: &WorkerState, job: &SendAccountEmail) -> Result<(), AttemptError> {
    let account = state
        .commands
        .load(job.account_id)
        .await
        .map_err(classify_command_error)?
        .ok_or_else(|| AttemptError::permanent(DomainError::NoSuchAccount))?;
    let plan = account
        .email_plan(job.request_id)
        .map_err(AttemptError::permanent)?;
    use KeyPurpose::{Activation, PasswordReset};
    let (kind, keyed) = match plan {
        EmailPlan::Nothing => {
            tracing::debug!("nothing to send");
            return Ok(());
        }
        EmailPlan::Activation { sequence } => (EmailKind::Activation, Some((Activation, sequence))),
        EmailPlan::AlreadyRegistered { activation } => (
            EmailKind::AlreadyRegistered,
            activation.map(|sequence| (Activation, sequence)),
        ),
        EmailPlan::PasswordReset { sequence } => {
            (EmailKind::PasswordReset, Some((PasswordReset, sequence)))
        }
        EmailPlan::PasswordChanged => (EmailKind::PasswordChanged, None),
    };
    let min_interval =
        chrono::Duration::from_std(state.config.mail.min_interval).unwrap_or_default();
    if let Some(pause) = account
        .next_email_allowed_at(min_interval)
        .and_then(|allowed_at| (allowed_at - Utc::now()).to_std().ok())
    {
        return Err(AttemptError::NotYet(pause));
    }
    let key = match keyed {
        Some((purpose, sequence)) => {
            let issued = link_keys(state, purpose)
                .issue(job.account_id, job.request_id, sequence)
                .await
                .map_err(AttemptError::transient)?;
            let Some(key) = issued else {
                tracing::debug!("a newer request holds the account's key; it sends the link");
                return Ok(());
            };
            Some((purpose, key))
        }
        None => None,
    };
    let email = render(state, kind, &account, key.as_ref())?;
    let sent_at = Utc::now();
    state
        .mailer
        .send(&account.email, &email)
        .await
        .map_err(|e| match e {
            SendError::Permanent(_) => AttemptError::permanent(e),
            SendError::Transient(_) => AttemptError::transient(e),
        })?;
    let key = key.as_ref().map(|(purpose, key)| IssuedKey {
        fingerprint: key.fingerprint(),
        // A TTL too long to represent never expires in practice.
        expires_at: chrono::Duration::from_std(link_keys(state, *purpose).ttl())
            .ok()
            .and_then(|ttl| sent_at.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    });
    let command = AccountCommand::RecordEmailSent {
        request_id: job.request_id,
        sent_at,
        key,
    };
    // The email is out: if recording fails now, a retry sends one more email
    // (with a working link) rather than losing the record.
    state
        .commands
        .execute_on(account, command, &caused_by(job))
        .await
        .map_err(classify_command_error)?;
    tracing::info!(kind = ?kind, "email sent");
    Ok(())
}

fn classify_command_error(error: CommandError) -> AttemptError {
    match error {
        CommandError::Database(_) | CommandError::Contended(_) => AttemptError::transient(error),
        CommandError::Domain(_)
        | CommandError::ClaimTaken(_)
        | CommandError::Encode(_)
        | CommandError::Undecodable { .. } => AttemptError::permanent(error),
    }
}

/// Records a delivery that will not be retried, so the failure is visible in
/// the account's history and not only in a log. If even that fails (Postgres
/// away), the job still lands in the dead-letter set for an operator.
async fn record_failure(
    state: &WorkerState,
    job: &SendAccountEmail,
    reason: &str,
    permanent: bool,
    attempts: u32,
) {
    tracing::warn!(reason, permanent, attempts, "email given up");
    let command = AccountCommand::RecordEmailFailed {
        request_id: job.request_id,
        reason: reason.to_owned(),
        permanent,
        attempts,
    };
    if let Err(error) = state
        .commands
        .execute(job.account_id, command, &caused_by(job))
        .await
    {
        tracing::error!(error = %error, "could not record the email failure");
    }
}

fn caused_by(job: &SendAccountEmail) -> EventMetadata {
    EventMetadata {
        causation_id: Some(job.request_id),
        ..EventMetadata::default()
    }
}

/// The keys of `purpose` and the page their links open.
fn link_keys(state: &WorkerState, purpose: KeyPurpose) -> &LinkKeys {
    match purpose {
        KeyPurpose::Activation => &state.keys,
        KeyPurpose::PasswordReset => &state.reset_keys,
    }
}

fn render(
    state: &WorkerState,
    kind: EmailKind,
    account: &Account,
    key: Option<&(KeyPurpose, ActivationKey)>,
) -> Result<RenderedEmail, AttemptError> {
    let link = key
        .map(|(purpose, key)| {
            let page = match purpose {
                KeyPurpose::Activation => "activate",
                KeyPurpose::PasswordReset => "reset-password",
            };
            state
                .config
                .mail
                .public_base_url
                .join(&format!("{page}/{}", key.expose()))
        })
        .transpose()
        .map_err(AttemptError::permanent)?;
    let ttl = link_keys(
        state,
        key.map_or(KeyPurpose::Activation, |(purpose, _)| *purpose),
    )
    .ttl();
    let context = json!({
        "username": account.username,
        "product_name": PRODUCT_NAME,
        "link": link.map(String::from),
        "expires_in_minutes": ttl.as_secs().div_ceil(60),
    });
    state
        .templates
        .render_email(kind, &context)
        .map_err(AttemptError::permanent)
}
