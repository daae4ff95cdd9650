//! Activation links: a harmless page and the confirming `POST`.
//!
//! `GET /activate/{key}` only renders a page with a button, so mail scanners
//! and link previews that fetch the URL cannot consume the key. The `POST`
//! appends `AccountActivated` at the expected version and only then retires
//! the key. Every invalid case (malformed, unknown, expired, revoked) gets the
//! same `410`, so responses reveal nothing about which keys exist.

use chrono::Utc;
use http::{Response, StatusCode};
use serde_json::json;

use super::{
    AppState,
    response::{ApiError, Body, html_response, json_response},
    routes::RequestContext,
    signup::{command_error, event_metadata},
};
use crate::{
    domain::{AccountCommand, ActivationKey},
    mail::Page,
    store,
};

pub fn page(state: &AppState, raw_key: &str) -> Result<Response<Body>, ApiError> {
    let Ok(key) = ActivationKey::parse(raw_key) else {
        return link_invalid(state, true);
    };
    let html = state
        .templates
        .render_page(Page::Activate, &json!({ "key": key.expose() }))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::OK, html))
}

pub async fn activate(
    state: &AppState,
    context: &RequestContext,
    raw_key: &str,
    wants_html: bool,
) -> Result<Response<Body>, ApiError> {
    let Ok(key) = ActivationKey::parse(raw_key) else {
        return link_invalid(state, wants_html);
    };
    let grant = state
        .keys
        .lookup(&key)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let Some(grant) = grant else {
        tracing::info!(request_id = %context.request_id, "activation failed: unknown, expired or revoked key");
        return link_invalid(state, wants_html);
    };
    let executed = store::accounts::execute(
        &state.pool,
        grant.account_id,
        AccountCommand::Activate {
            request_id: grant.request_id,
            at: Utc::now(),
        },
        &event_metadata(context),
    )
    .await
    .map_err(command_error)?;
    let already_active = executed.events.is_empty();
    if already_active {
        tracing::info!(request_id = %context.request_id, account_id = %grant.account_id, "activation repeated");
    } else {
        tracing::info!(request_id = %context.request_id, account_id = %grant.account_id, "activation succeeded");
        if let Err(error) = state.keys.retire(&key).await {
            // The account is active either way; an unretired key can only
            // report "already active" until it expires.
            tracing::warn!(request_id = %context.request_id, %error, "activation key not retired");
        }
    }
    if wants_html {
        let html = state
            .templates
            .render_page(
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

fn link_invalid(state: &AppState, wants_html: bool) -> Result<Response<Body>, ApiError> {
    if !wants_html {
        return Err(ApiError::LinkInvalid);
    }
    let html = state
        .templates
        .render_page(Page::LinkInvalid, &json!({}))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::GONE, html))
}
