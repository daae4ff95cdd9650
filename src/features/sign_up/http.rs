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
use serde::Deserialize;
use utoipa::ToSchema;

use super::SignUp;
use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{Answer, Auth, BodyType, Operation, RequestBody, Tag},
        request, request_locale,
        response::{Accepted, ApiError, Body, FieldErrors, json_response},
    },
    services::AppState,
};
use crate::{
    domain::{EmailAddress, Password, Username},
    platform::{commands::CommandError, rate_limit::Budget, store::ClaimKind},
};

pub static OPERATION: Operation = Operation {
    id: "sign_up",
    tag: Tag::SignUp,
    summary: "Sign up",
    description: "Registers the username and emails the address a link to activate the \
        account. The answer is the same whether the address is new, waiting or already has \
        an account; only a taken username is refused.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<SignUpBody>()),
    answers: &[
        Answer::json::<Accepted>(202, "Registered; the activation email follows"),
        Answer::error(429, "Too many sign-ups from this address or overall"),
    ],
};

/// A sign-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignUp, examples(json!({
    "username": "ada", "email": "ada@example.com", "password": "correct horse battery staple"
})))]
pub struct SignUpBody {
    /// 3–32 letters, digits, '_', '-', '.'; starts with a letter or digit;
    /// unique ignoring case
    #[schema(min_length = 3, max_length = 32)]
    username: String,
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 12–128 characters after NFKC; not a common password, not containing
    /// the username, not a repeated or sequential pattern
    #[schema(min_length = 12, max_length = 128, write_only)]
    password: String,
    /// BCP 47 language tag of the account's emails and pages, matched to the
    /// locales Porter has (de-AT finds de); unknown or malformed → 400 on
    /// this field. Absent: negotiated from Accept-Language, else
    /// DEFAULT_LOCALE
    #[schema(max_length = 35, examples("de", "en"))]
    locale: Option<String>,
}

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
    let SignUpBody {
        username,
        email,
        password,
        locale: requested_locale,
    } = request::json_body(request).await?;
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
    match super::sign_up(&state.commands, sign_up, &context.event_metadata()).await {
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
        &Accepted::new("Check your inbox: we sent a link to activate your account."),
    ))
}
