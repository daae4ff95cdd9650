//! Password reset: asking for a link, the page behind it, and setting the
//! new password.
//!
//! `POST /api/password-reset` does the same work for every address before it
//! answers: it validates, spends the per-IP and per-address budgets (by a
//! hash of the address, known or not) and pushes one address request; the
//! worker looks the address up and records what follows (see
//! `address_requests::job`). If Redis is down at that moment the push fails and
//! the answer is `503` for every address alike: nothing was recorded, and
//! the person asks again; an answer of `202` always means the request is in
//! the queue.
//!
//! `GET /reset-password/{key}` only renders a form, so link scanners cannot
//! spend the key. The form (or a JSON client) posts the new password to
//! `POST /api/password-reset/{key}`; the aggregate lets each reset request set
//! the password once, so of many concurrent uses one records
//! `PasswordChanged` and the rest get the one uniform `410`. Every session of
//! the account ends, its reset keys are deleted, and the owner is emailed.
//! The key is looked up before the client's failure budget is consulted, as
//! for activation links: only failed uses spend it, so failures of others on
//! a shared address never refuse a live key (keys carry about 190 bits, so
//! answering a live key over budget teaches a guesser nothing).

use chrono::Utc;
use http::{HeaderMap, Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{self, Answer, Auth, BodyType, Content, Operation, Parameter, RequestBody, Tag},
        request, request_locale,
        response::{ApiError, Body, PasswordChanged, html_response, json_response},
    },
    services::AppState,
};

const KEY: Parameter = Parameter::path("key", "The 32-character reset key from the email", || {
    openapi::pattern("^[A-Za-z0-9]{32}$")
});
const INVALID: &str = "Unknown, malformed, expired, used or replaced key; one uniform answer \
    with a hint to ask for a new link";

pub static PAGE: Operation = Operation {
    id: "reset_password_page",
    tag: Tag::PasswordReset,
    summary: "The form behind the emailed link",
    description: "Only looks the key up; it changes nothing.",
    auth: Auth::Public,
    parameters: &[KEY],
    body: RequestBody::None,
    answers: &[
        Answer::new(200, "The form", Content::Page),
        Answer::new(410, INVALID, Content::Page),
    ],
};

pub static RESET: Operation = Operation {
    id: "password_reset",
    tag: Tag::PasswordReset,
    summary: "Set a new password with the emailed key",
    description: "Every session of the account ends and its owner is emailed. A JSON request \
        gets JSON; the page's form post gets a page.",
    auth: Auth::Public,
    parameters: &[KEY],
    body: RequestBody::JsonOrForm(BodyType::of::<ResetBody>()),
    answers: &[
        Answer::new(
            200,
            "Changed",
            Content::JsonOrPage(BodyType::of::<PasswordChanged>()),
        ),
        Answer::new(
            400,
            "The new password breaks the policy (`error.fields`), or the body is invalid",
            Content::ErrorOrPage,
        ),
        Answer::new(410, INVALID, Content::ErrorOrPage),
        Answer::error(429, "Too many unusable keys from this client"),
    ],
};
use crate::{
    domain::{AccountCommand, DomainError, LinkKey, Locale, Password},
    platform::{commands::CommandError, mail::Page, rate_limit::Budget},
};

/// The form behind the emailed link, in the account's locale (the
/// browser's when the key leads to no account). It only looks the key up;
/// it changes nothing.
pub async fn page(
    state: &AppState,
    raw_key: &str,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let Ok(key) = LinkKey::parse(raw_key) else {
        return link_invalid(state, headers, true);
    };
    let account_locale = match state.reset_keys.lookup(&key).await {
        Ok(Some(grant)) => state
            .commands
            .load(grant.account_id)
            .await
            .ok()
            .flatten()
            .map(|account| state.templates.locale_for(&account.locale)),
        _ => None,
    };
    let locale =
        account_locale.unwrap_or_else(|| request_locale::negotiate(&state.templates, headers));
    render(
        state,
        locale,
        StatusCode::OK,
        Page::ResetPassword,
        &json!({ "key": key.expose(), "error": null }),
    )
}

/// The new password behind a reset link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResetPassword)]
pub struct ResetBody {
    /// The sign-up password policy applies
    #[schema(min_length = 12, max_length = 128, write_only)]
    password: String,
}

pub async fn reset(
    state: &AppState,
    context: &RequestContext,
    raw_key: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = request.headers().clone();
    let (ResetBody { password }, format) = request::json_or_form_body(request).await?;
    let html = request::answers_with_page(&headers, Some(format));
    // The key is looked up first: a live key is never refused because
    // others on the same address failed. Only a failure spends the client's
    // budget, and one over it gets `429` instead of `410`.
    let invalid = || async {
        state
            .rate_limiter
            .admit(
                Budget::FailedActivationPerIp,
                state.config.limits.failed_activation_per_ip,
                &context.client_ip.to_string(),
            )
            .await?;
        tracing::info!("password reset failed: unknown, expired, used or replaced key");
        link_invalid(state, &headers, html)
    };
    let Ok(key) = LinkKey::parse(raw_key) else {
        return invalid().await;
    };
    let grant = state
        .reset_keys
        .lookup(&key)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let Some(grant) = grant else {
        return invalid().await;
    };
    let account = match state.commands.load(grant.account_id).await? {
        Some(account) if account.reset_usable(grant.request_id) => account,
        _ => return invalid().await,
    };
    let locale = state.templates.locale_for(&account.locale);
    let password = match Password::parse(&password, Some(&account.username)) {
        Ok(password) => password,
        Err(error) if html => {
            let context = json!({ "key": key.expose(), "error": error.to_string() });
            return render(
                state,
                locale,
                StatusCode::BAD_REQUEST,
                Page::ResetPassword,
                &context,
            );
        }
        Err(error) => return Err(ApiError::field("password", error.to_string())),
    };
    let password_hash = state.hasher.hash(password).await?;
    let command = AccountCommand::ResetPassword {
        reset_request_id: grant.request_id,
        password_hash,
        notice_request_id: Uuid::now_v7(),
        at: Utc::now(),
    };
    let account_id = account.id;
    match state
        .commands
        .execute_on(account, command, &context.event_metadata())
        .await
    {
        Ok(_) => {}
        // Another use of the same link got there first.
        Err(CommandError::Domain(DomainError::ResetLinkUnusable)) => return invalid().await,
        Err(other) => return Err(other.into()),
    }
    // The aggregate already refuses the key again; deleting it only saves
    // the next holder of the link a hash.
    if let Err(error) = state.reset_keys.revoke_all(account_id).await {
        tracing::warn!(%account_id, %error, "used reset keys not deleted");
    }
    let ended = state
        .sessions
        .revoke_all(account_id, None)
        .await
        .map_err(|e| {
            tracing::error!(%account_id, error = %e, "password reset but sessions not revoked");
            ApiError::Unavailable(e.into())
        })?;
    tracing::info!(%account_id, ended, "password reset");
    if html {
        return render(
            state,
            locale,
            StatusCode::OK,
            Page::PasswordReset,
            &json!({}),
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &PasswordChanged::new(
            "Your password has been changed and every session has ended. Sign in with the new password.",
        ),
    ))
}

fn render(
    state: &AppState,
    locale: &Locale,
    status: StatusCode,
    page: Page,
    context: &serde_json::Value,
) -> Result<Response<Body>, ApiError> {
    let html = state
        .templates
        .render_page(locale, page, context)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(status, html))
}

fn link_invalid(
    state: &AppState,
    headers: &HeaderMap,
    html: bool,
) -> Result<Response<Body>, ApiError> {
    if !html {
        return Err(ApiError::ResetLinkInvalid);
    }
    let locale = request_locale::negotiate(&state.templates, headers);
    render(
        state,
        locale,
        StatusCode::GONE,
        Page::ResetLinkInvalid,
        &json!({}),
    )
}
