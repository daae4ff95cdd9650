//! `POST /api/users`: sign-up.
//!
//! The answer is the same `202` whether the address is new or already has an
//! account, so the endpoint cannot be used to learn who has signed up; the
//! owner of an existing account is emailed instead. The password is hashed on
//! both paths so timing does not tell them apart either.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde_json::json;
use uuid::Uuid;

use super::{
    AppState,
    context::RequestContext,
    locale,
    rate_limit::Budget,
    request,
    response::{ApiError, Body, FieldErrors, json_response},
};
use crate::{
    commands::CommandError,
    domain::{AccountCommand, EmailAddress, Password, Registration, Username},
    store::{self, ClaimKind, EventMetadata},
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
            state.config.limits.sign_up_per_ip,
            &context.client_ip.to_string(),
        )
        .await?;
    let negotiated = locale::negotiate(&state.templates, request.headers()).clone();
    let ([username, email, password], [requested_locale]) =
        request::json_fields_and_optional(request, ["username", "email", "password"], ["locale"])
            .await?;
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
    let locale = match requested_locale {
        Some(raw) => locale::requested(&state.templates, &raw)
            .map_err(|e| report("locale", e))
            .ok(),
        None => Some(negotiated),
    };
    let (Some(username), Some(email), Some(password), Some(locale)) =
        (username, email, password, locale)
    else {
        return Err(ApiError::Validation(errors));
    };

    let password_hash = state.hasher.hash(password).await?;
    let metadata = context.event_metadata();
    let registration = Registration {
        account_id: Uuid::new_v4(),
        request_id: Uuid::now_v7(),
        username,
        email: email.clone(),
        password_hash,
        locale: locale.to_string(),
    };
    match state.commands.register(registration, &metadata).await {
        Ok(executed) => {
            tracing::info!(account_id = %executed.account.id, "account registered");
        }
        Err(CommandError::ClaimTaken(ClaimKind::Username)) => {
            return Err(ApiError::field("username", "is already taken"));
        }
        Err(CommandError::ClaimTaken(ClaimKind::Email)) => {
            notify_existing_owner(state, &email, &metadata).await?;
        }
        Err(e) => return Err(e.into()),
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
    let Some(account_id) =
        store::claim_holder(&state.pool, ClaimKind::Email, email.canonical()).await?
    else {
        // The claim vanished between the insert and this read: claims are
        // never deleted, so this is a bug worth a 500 and a log line.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "email claim without holder"
        )));
    };
    let command = AccountCommand::RecordSignUpAttempt {
        request_id: Uuid::now_v7(),
    };
    state
        .commands
        .execute(account_id, command, metadata)
        .await?;
    Ok(())
}
