//! The email job: activation links, "you already have an account" notices,
//! password reset links and "your password was changed" notices. The same
//! queue carries address requests; the worker's loop (`shell::worker`) hands
//! each job to its feature.
//!
//! The job is idempotent. Each attempt reloads the account, asks the aggregate
//! what the request still needs, and records the outcome at the account's
//! expected version. A job that runs twice finds the request already emailed
//! and does nothing; if two runs race, both emails carry working links,
//! because a second key for the same request does not revoke the first.
//!
//! Emails to one address are counted against `EMAIL_PER_ADDRESS`: a request
//! beyond the budget is recorded as withheld (`EmailWithheld`) and not sent,
//! so a stream of sign-ups or resends cannot flood a mailbox. The budget is
//! checked before sending and spent after, so a failed attempt costs none;
//! two jobs for one address at the same moment could both pass, but
//! `EMAIL_MIN_INTERVAL` already spaces emails to one address.
//!
//! A job never waits inside a worker slot. A transient failure, or an email
//! that would follow the last one to the address too soon, puts the job's
//! successor on the queue for later (see [`SendAccountEmail::requeued`]) and
//! frees the slot, so a slow or refusing relay for one address cannot starve
//! the others. The failed-attempt count travels in the payload; when the
//! budget of [`crate::platform::retry`] is spent, or at once for a permanent failure,
//! `EmailFailed` is appended and the job is aborted into the
//! dead-letter set.

use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError};
use chrono::{DateTime, Utc};
use porter_jobs::SendAccountEmail;
use serde_json::json;

use crate::platform::{
    retry::{AttemptError, backoff},
    services::WorkerState,
};
use crate::{
    domain::{Account, AccountCommand, DomainError, EmailPlan, LinkKey, events::IssuedKey},
    platform::{
        commands::CommandError,
        link_keys::{KeyPurpose, LinkKeys},
        mail::{EmailKind, RenderedEmail, SendError},
        rate_limit::Budget,
        store::EventMetadata,
    },
};

#[tracing::instrument(skip_all, fields(account_id = %job.account_id, email_request_id = %job.request_id))]
pub async fn send_account_email(
    job: SendAccountEmail,
    state: &WorkerState,
) -> Result<(), BoxDynError> {
    let policy = state.config.mail.retry;
    let attempt = job.failed_attempts + 1;
    let error = match deliver(state, &job).await {
        Ok(()) => return Ok(()),
        Err(AttemptError::NotYet(pause)) => {
            return requeue(state, job.requeued(false), pause).await;
        }
        Err(error) => error,
    };
    let permanent = matches!(error, AttemptError::Permanent(_));
    if permanent || attempt >= policy.attempts {
        record_failure(state, &job, &error.to_string(), permanent, attempt).await;
        return Err(AbortError::new(error).into());
    }
    let pause = backoff(policy.base, policy.cap, attempt);
    tracing::warn!(attempt, retry_in_ms = pause.as_millis() as u64, error = %error, "email attempt failed");
    requeue(state, job.requeued(true), pause).await
}

/// Schedules `successor` to run after `pause` and reports this run done. If
/// Redis refuses the push, this run fails instead and apalis-redis runs it
/// again a few seconds later (its own re-run, which repeats the attempt
/// without counting it).
async fn requeue(
    state: &WorkerState,
    successor: SendAccountEmail,
    pause: Duration,
) -> Result<(), BoxDynError> {
    let not_before = chrono::Duration::from_std(pause)
        .ok()
        .and_then(|pause| Utc::now().checked_add_signed(pause));
    state
        .queue
        .push(successor, not_before)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "could not put the email job back on the queue");
            BoxDynError::from(error)
        })
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
    let budget = state.config.mail.per_address;
    let address = account.email.canonical().to_owned();
    if state
        .rate_limiter
        .check(Budget::EmailPerAddress, budget, &address)
        .await
        .is_err()
    {
        let command = AccountCommand::RecordEmailWithheld {
            request_id: job.request_id,
            reason: format!(
                "EMAIL_PER_ADDRESS: {} emails per {:?} already sent to this address",
                budget.max, budget.window
            ),
        };
        state
            .commands
            .execute_on(account, command, &caused_by(job))
            .await
            .map_err(classify_command_error)?;
        tracing::info!("email withheld: the address's budget is spent");
        return Ok(());
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
        .send(account.email.as_typed(), &email)
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
    state
        .rate_limiter
        .record(Budget::EmailPerAddress, budget, &address)
        .await;
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
        KeyPurpose::Activation => &state.activation_keys,
        KeyPurpose::PasswordReset => &state.reset_keys,
    }
}

fn render(
    state: &WorkerState,
    kind: EmailKind,
    account: &Account,
    key: Option<&(KeyPurpose, LinkKey)>,
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
    let expires_at = chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let context = json!({
        "username": account.username.as_str(),
        "link": link.map(String::from),
        "expires_in": ttl.as_secs(),
        "expires_at": expires_at.to_rfc3339(),
    });
    let templates = &state.templates;
    templates
        .render_email(templates.locale_for(&account.locale), kind, &context)
        .map_err(AttemptError::permanent)
}
