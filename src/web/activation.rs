//! Activation links: a harmless page and the confirming `POST`.
//!
//! `GET /activate/{key}` only renders a page with a button, so mail scanners
//! and link previews that fetch the URL cannot consume the key. The `POST`
//! appends `AccountActivated` at the expected version; the key stays until
//! its TTL, so a second click is told "already active" (the aggregate makes
//! the second confirmation a no-op, not the key). Every invalid case (malformed, unknown, expired, revoked) gets the
//! same `410`, so responses reveal nothing about which keys exist.
//!
//! Pages are in the account's locale when the key leads to one, and
//! otherwise in the browser's (`Accept-Language`).

use chrono::Utc;
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use super::{
    AppState,
    context::RequestContext,
    locale,
    rate_limit::Budget,
    response::{ApiError, Body, html_response, json_response},
};
use crate::{
    domain::{AccountCommand, ActivationKey, Locale},
    mail::Page,
};

pub async fn page(
    state: &AppState,
    raw_key: &str,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let Ok(key) = ActivationKey::parse(raw_key) else {
        return link_invalid(state, headers, true);
    };
    let locale = match account_locale(state, &key).await {
        Some(locale) => locale,
        None => locale::negotiate(&state.templates, headers).clone(),
    };
    let html = state
        .templates
        .render_page(&locale, Page::Activate, &json!({ "key": key.expose() }))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::OK, html))
}

/// The locale of the account a live key belongs to. `None` when the key is
/// not live, or Redis or Postgres cannot say: the page only shows a button,
/// so the browser's language is good enough then.
async fn account_locale(state: &AppState, key: &ActivationKey) -> Option<Locale> {
    let grant = state.keys.lookup(key).await.ok()??;
    let account = state.commands.load(grant.account_id).await.ok()??;
    Some(state.templates.locale_for(&account.locale).clone())
}

pub async fn activate(
    state: &AppState,
    context: &RequestContext,
    raw_key: &str,
    headers: &HeaderMap,
    wants_html: bool,
) -> Result<Response<Body>, ApiError> {
    // Guessing keys is hopeless (≈190 bits), but a client that keeps failing
    // is stopped early anyway, before any lookup.
    let failure_budget = state.config.limits.failed_activation_per_ip;
    let client = context.client_ip.to_string();
    let limiter = &state.rate_limiter;
    limiter
        .check(Budget::FailedActivationPerIp, failure_budget, &client)
        .await?;
    let grant = match ActivationKey::parse(raw_key) {
        Ok(key) => state
            .keys
            .lookup(&key)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?,
        Err(_) => None,
    };
    let Some(grant) = grant else {
        tracing::info!("activation failed: unknown, expired or revoked key");
        limiter
            .record(Budget::FailedActivationPerIp, failure_budget, &client)
            .await;
        return link_invalid(state, headers, wants_html);
    };
    let executed = state
        .commands
        .execute(
            grant.account_id,
            AccountCommand::Activate {
                request_id: grant.request_id,
                at: Utc::now(),
            },
            &context.event_metadata(),
        )
        .await?;
    let already_active = executed.events.is_empty();
    if already_active {
        tracing::info!(account_id = %grant.account_id, "activation repeated");
    } else {
        tracing::info!(account_id = %grant.account_id, "activation succeeded");
    }
    if wants_html {
        let locale = state.templates.locale_for(&executed.account.locale);
        let html = state
            .templates
            .render_page(
                locale,
                Page::Activated,
                &json!({ "already_active": already_active }),
            )
            .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(html_response(StatusCode::OK, html));
    }
    let message = if already_active {
        "Your account was already active."
    } else {
        "Your account is active. You can now sign in."
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "status": "active", "already_active": already_active, "message": message }),
    ))
}

fn link_invalid(
    state: &AppState,
    headers: &HeaderMap,
    wants_html: bool,
) -> Result<Response<Body>, ApiError> {
    if !wants_html {
        return Err(ApiError::LinkInvalid);
    }
    let locale = locale::negotiate(&state.templates, headers);
    let html = state
        .templates
        .render_page(locale, Page::LinkInvalid, &json!({}))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::GONE, html))
}
