//! The email job: activation links and "you already have an account" notices.
//!
//! The handler is idempotent. It reloads the account, asks the aggregate what
//! the request still needs, and records the outcome at the account's expected
//! version. A job that runs twice finds the request already emailed and does
//! nothing; if two runs race, both emails carry working links, because a
//! second key for the same request does not revoke the first.

use std::sync::Arc;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use chrono::Utc;
use porter_jobs::SendAccountEmail;
use serde_json::json;

use super::WorkerState;
use crate::{
    domain::{Account, AccountCommand, ActivationKey, EmailPlan},
    mail::{EmailKind, RenderedEmail},
    store::{EventMetadata, accounts},
};

/// The product name shown in emails.
const PRODUCT_NAME: &str = "Porter";

#[tracing::instrument(skip_all, fields(account_id = %job.account_id, request_id = %job.request_id, attempt = attempt.current()))]
pub async fn send_account_email(
    job: SendAccountEmail,
    state: Data<Arc<WorkerState>>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Some(account) = accounts::load(&state.pool, job.account_id).await? else {
        return Err(AbortError::new(format!("account {} does not exist", job.account_id)).into());
    };
    let plan = account
        .email_plan(job.request_id)
        .map_err(AbortError::new)?;
    let (kind, activation) = match plan {
        EmailPlan::Nothing => {
            tracing::debug!("nothing to send");
            return Ok(());
        }
        EmailPlan::Activation { sequence } => (EmailKind::Activation, Some(sequence)),
        EmailPlan::AlreadyRegistered { activation } => (EmailKind::AlreadyRegistered, activation),
    };
    let key = match activation {
        Some(sequence) => match state
            .keys
            .issue(job.account_id, job.request_id, sequence)
            .await?
        {
            Some(key) => Some(key),
            None => {
                tracing::debug!("a newer request holds the account's key; it sends the link");
                return Ok(());
            }
        },
        None => None,
    };
    let email = render(&state, kind, &account, key.as_ref())?;
    let sent_at = Utc::now();
    if let Err(error) = state.mailer.send(&account.email, &email).await {
        if !error.is_permanent() {
            return Err(error.into());
        }
        record_failure(&state, &job, &error.to_string(), attempt.current() + 1).await?;
        return Err(AbortError::new(error).into());
    }
    let expires_at = key
        .as_ref()
        .and_then(|_| chrono::Duration::from_std(state.keys.ttl()).ok())
        .map(|ttl| sent_at + ttl);
    accounts::execute(
        &state.pool,
        job.account_id,
        AccountCommand::RecordEmailSent {
            request_id: job.request_id,
            key_fingerprint: key.as_ref().map(ActivationKey::fingerprint),
            sent_at,
            expires_at,
        },
        &caused_by(&job),
    )
    .await?;
    tracing::info!(kind = ?kind, "email sent");
    Ok(())
}

/// Records a delivery that will not be retried, so the failure is visible in
/// the account's history and not only in a log.
async fn record_failure(
    state: &WorkerState,
    job: &SendAccountEmail,
    reason: &str,
    attempts: usize,
) -> Result<(), BoxDynError> {
    tracing::warn!(reason, attempts, "email failed permanently");
    accounts::execute(
        &state.pool,
        job.account_id,
        AccountCommand::RecordEmailFailed {
            request_id: job.request_id,
            reason: reason.to_owned(),
            permanent: true,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        },
        &caused_by(job),
    )
    .await?;
    Ok(())
}

fn caused_by(job: &SendAccountEmail) -> EventMetadata {
    EventMetadata {
        causation_id: Some(job.request_id),
        ..EventMetadata::default()
    }
}

fn render(
    state: &WorkerState,
    kind: EmailKind,
    account: &Account,
    key: Option<&ActivationKey>,
) -> Result<RenderedEmail, BoxDynError> {
    let link = key
        .map(|key| {
            state
                .config
                .public_base_url
                .join(&format!("activate/{}", key.expose()))
        })
        .transpose()
        .map_err(AbortError::new)?;
    let context = json!({
        "username": account.username,
        "product_name": PRODUCT_NAME,
        "link": link.map(String::from),
        "expires_in_minutes": state.keys.ttl().as_secs().div_ceil(60),
    });
    state
        .templates
        .render_email(kind, &context)
        .map_err(|e| AbortError::new(e).into())
}
