//! `POST /api/users`: sign-up.
//!
//! The answer is the same `202` whether the address is new or already has an
//! account, so the endpoint cannot be used to learn who has signed up; the
//! owner of an existing account is emailed instead. The password is hashed on
//! both paths so timing does not tell them apart either.

use chrono::{DateTime, Utc};
use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use porter_jobs::SendAccountEmail;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    AppState,
    rate_limit::Budget,
    request,
    response::{ApiError, Body, FieldErrors, json_response},
    routes::RequestContext,
};
use crate::{
    domain::{AccountCommand, AccountEvent, EmailAddress, Password, Registration, Username},
    hashing::HashError,
    store::{self, ClaimKind, EventMetadata, accounts::CommandError},
};

pub async fn sign_up(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // Before anything costly: a refused request must not cost a hash.
    state
        .rate_limiter
        .admit(
            Budget::SignUpPerIp,
            state.config.rate_limits.sign_up_per_ip,
            &context.client_ip.to_string(),
        )
        .await?;
    let [username, email, password] =
        request::json_fields(request, ["username", "email", "password"]).await?;
    let mut errors = FieldErrors::new();
    let mut report =
        |field: &str, message: String| errors.entry(field.to_owned()).or_default().push(message);
    let username = Username::parse(&username)
        .map_err(|e| report("username", e.to_string()))
        .ok();
    let email = EmailAddress::parse(&email)
        .map_err(|e| report("email", e.to_string()))
        .ok();
    let password = Password::parse(&password, username.as_ref())
        .map_err(|e| report("password", e.to_string()))
        .ok();
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(ApiError::Validation(errors));
    };

    let password_hash = state.hasher.hash(password).await.map_err(|e| match e {
        HashError::Overloaded => ApiError::Overloaded,
        HashError::Failed(cause) => ApiError::Internal(anyhow::anyhow!(cause)),
    })?;
    let metadata = event_metadata(context);
    let registration = Registration {
        account_id: Uuid::new_v4(),
        request_id: Uuid::now_v7(),
        username,
        email: email.clone(),
        password_hash,
        locale: "en".into(),
    };
    let job = SendAccountEmail {
        account_id: registration.account_id,
        request_id: registration.request_id,
    };
    match store::accounts::register(&state.pool, registration, &metadata).await {
        Ok(_) => {
            tracing::info!(request_id = %context.request_id, account_id = %job.account_id, "account registered");
            enqueue(state, job, None).await;
        }
        Err(CommandError::ClaimTaken(ClaimKind::Username)) => {
            return Err(ApiError::field("username", "is already taken"));
        }
        Err(CommandError::ClaimTaken(ClaimKind::Email)) => {
            notify_existing_owner(state, &email, &metadata).await?;
        }
        Err(e) => return Err(command_error(e)),
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "status": "accepted",
            "message": "Check your inbox: we sent a link to activate your account.",
        }),
    ))
}

/// Records the attempt on the account that owns `email`, which emails its
/// owner.
async fn notify_existing_owner(
    state: &AppState,
    email: &EmailAddress,
    metadata: &EventMetadata,
) -> Result<(), ApiError> {
    let Some(account_id) = store::claim_holder(&state.pool, ClaimKind::Email, email.canonical())
        .await
        .map_err(database_error)?
    else {
        // The claim vanished between the insert and this read: claims are
        // never deleted, so this is a bug worth a 500 and a log line.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "email claim without holder"
        )));
    };
    let request_id = Uuid::now_v7();
    request_email(
        state,
        account_id,
        AccountCommand::RecordSignUpAttempt { request_id },
        metadata,
    )
    .await
}

/// Runs a command that may ask for an email (`RecordSignUpAttempt`,
/// `RequestActivation`) and enqueues the job when it did, no earlier than the
/// minimum interval between emails to one address allows. A coalesced request
/// (an email is already on its way) enqueues nothing.
pub(super) async fn request_email(
    state: &AppState,
    account_id: Uuid,
    command: AccountCommand,
    metadata: &EventMetadata,
) -> Result<(), ApiError> {
    let executed = store::accounts::execute(&state.pool, account_id, command, metadata)
        .await
        .map_err(command_error)?;
    let Some(request_id) = executed.events.iter().find_map(AccountEvent::request_id) else {
        return Ok(());
    };
    let min_interval =
        chrono::Duration::from_std(state.config.email_min_interval).unwrap_or_default();
    let not_before = executed.account.next_email_allowed_at(min_interval);
    enqueue(
        state,
        SendAccountEmail {
            account_id,
            request_id,
        },
        not_before,
    )
    .await;
    Ok(())
}

/// Pushes the job after the events committed. A failure is logged, not
/// reported: the request is durable in the log, and the outbox relay pushes
/// any request whose job never reached Redis.
async fn enqueue(state: &AppState, job: SendAccountEmail, not_before: Option<DateTime<Utc>>) {
    if let Err(error) = state.email_queue.push(job.clone(), not_before).await {
        tracing::warn!(request_id = %job.request_id, %error, "email job not enqueued; the relay will retry");
    }
}

pub(super) fn event_metadata(context: &RequestContext) -> EventMetadata {
    // Pseudonymous, not anonymous: enough to group abuse by source without
    // storing addresses in the log in clear.
    let digest = Sha256::digest(context.client_ip.to_string().as_bytes());
    EventMetadata {
        request_id: Some(context.request_id.clone()),
        causation_id: None,
        client_ip_hash: Some(hex::encode(&digest[..8])),
    }
}

pub(super) fn command_error(error: CommandError) -> ApiError {
    match error {
        CommandError::Database(e) => database_error(e),
        other => ApiError::Internal(other.into()),
    }
}

/// Postgres being unreachable, restarting or out of connections is a `503`
/// the client can retry, not a `500`.
pub(super) fn database_error(error: sqlx::Error) -> ApiError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient
        // resources) and 57 (operator intervention: shutdown, restart).
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    };
    if unavailable {
        ApiError::Unavailable(error.to_string())
    } else {
        ApiError::Internal(error.into())
    }
}
