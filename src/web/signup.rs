//! `POST /api/users`: sign-up.
//!
//! The answer is the same `202` whether the address is new, waiting for
//! activation or already has an account, so the endpoint cannot be used to
//! learn who has signed up: a pending registration is superseded by the new
//! one, the owner of an active account is emailed instead, and in every case
//! the new registration holds its username (a taken username is the one
//! refusal, and it does not depend on the address). The password is hashed
//! on every path so timing does not tell them apart either.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde_json::json;

use super::{
    AppState,
    context::RequestContext,
    request, request_locale,
    response::{ApiError, Body, FieldErrors, json_response},
};
use crate::{
    commands::{CommandError, SignUp},
    domain::{EmailAddress, Password, Username},
    rate_limit::Budget,
    store::ClaimKind,
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
    state
        .rate_limiter
        .admit(Budget::SignUpGlobal, state.config.limits.sign_up_global, "")
        .await?;
    let negotiated = request_locale::negotiate(&state.templates, request.headers()).clone();
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
        Some(raw) => request_locale::requested(&state.templates, &raw)
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
    let sign_up = SignUp {
        username,
        email,
        password_hash,
        locale,
    };
    context.commit_begins();
    match state
        .commands
        .sign_up(sign_up, &context.event_metadata())
        .await
    {
        Ok(signed_up) => {
            tracing::info!(
                account_id = %signed_up.registration.id,
                address = ?signed_up.address,
                "account registered"
            );
        }
        Err(CommandError::ClaimTaken(ClaimKind::Username)) => {
            return Err(ApiError::field("username", "is already taken"));
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
