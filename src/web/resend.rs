//! `POST /api/activate-account/resend`: a fresh link for a pending account.
//!
//! The answer is the same `202` for an unknown, pending or active address, so
//! the endpoint reveals nothing about who has an account. Only a pending
//! account gets a new email, and its new key revokes the old one.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde_json::json;
use uuid::Uuid;

use super::{
    AppState,
    context::RequestContext,
    request,
    response::{ApiError, Body, json_response},
};
use crate::{
    domain::{AccountCommand, EmailAddress},
    rate_limit::Budget,
    store::{self, ClaimKind},
};

pub async fn resend(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let limits = &state.config.limits;
    state
        .rate_limiter
        .admit(
            Budget::ResendPerIp,
            limits.resend_per_ip,
            &context.client_ip.to_string(),
        )
        .await?;
    let [email] = request::json_fields(request, ["email"]).await?;
    let email = EmailAddress::parse(&email).map_err(|e| ApiError::field("email", e.to_string()))?;
    // Spent by every address alike, known or not, so it reveals nothing.
    state
        .rate_limiter
        .admit(
            Budget::ResendPerEmail,
            limits.resend_per_email,
            email.canonical(),
        )
        .await?;

    let holder = store::claim_holder(&state.pool, ClaimKind::Email, email.canonical()).await?;
    if let Some(account_id) = holder {
        let command = AccountCommand::RequestActivation {
            request_id: Uuid::now_v7(),
        };
        context.commit_begins();
        state
            .commands
            .execute(account_id, command, &context.event_metadata())
            .await?;
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "status": "accepted",
            "message": "If an account with this address is waiting for activation, a new link is on its way.",
        }),
    ))
}
