//! `POST /api/activate-account/resend` and `POST /api/password-reset`:
//! requests about an email address that answer alike for every address.
//!
//! Looking the address up would make the answer for a known address slower
//! than for an unknown one (a stream load, an append, a push), so the web
//! process does the same work for every address: validate, spend the
//! client's and the address's budgets (spent alike whether or not anyone
//! holds the address), push one job that carries the request, answer `202`.
//! The worker looks the address up and records what the request means for
//! the account holding it (`address_requests::job`), where the account's own
//! rules still apply: a request merged into an email still on its way, and
//! `EMAIL_PER_ADDRESS`. When Redis cannot take the job, every address gets
//! the same `503`: a `202` always means the request is queued.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use porter_jobs::{AddressAction, AddressRequest};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{Answer, Auth, BodyType, Operation, RequestBody, Tag},
        request,
        response::{Accepted, ApiError, Body, json_response},
    },
    services::AppState,
};
use crate::{domain::EmailAddress, platform::rate_limit::Budget};

const ANSWERS: &[Answer] = &[
    Answer::json::<Accepted>(202, "Queued; the same answer for every address"),
    Answer::error(
        429,
        "Too many requests from this client or for this address",
    ),
];

pub static RESEND: Operation = Operation {
    id: "resend",
    tag: Tag::SignUp,
    summary: "Ask for a new activation link",
    description: "If a registration with this address is waiting for activation, it is sent \
        a new link; the answer is the same for every address.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<EmailBody>()),
    answers: ANSWERS,
};

pub static PASSWORD_RESET: Operation = Operation {
    id: "password_reset_request",
    tag: Tag::PasswordReset,
    summary: "Ask for a password reset link",
    description: "If an account uses this address, it is emailed what to do next; the answer \
        is the same for every address.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<EmailBody>()),
    answers: ANSWERS,
};

/// A request about an email address: a new activation link, or a password
/// reset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailRequest, examples(json!({ "email": "ada@example.com" })))]
pub struct EmailBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
}

pub async fn accept(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
    action: AddressAction,
) -> Result<Response<Body>, ApiError> {
    let limits = &state.config.limits;
    let ((per_ip, ip_limit), (per_email, email_limit), message) = match action {
        AddressAction::Resend => (
            (Budget::ResendPerIp, limits.resend_per_ip),
            (Budget::ResendPerEmail, limits.resend_per_email),
            "If an account with this address is waiting for activation, a new link is on its way.",
        ),
        AddressAction::PasswordReset => (
            (Budget::ResetPerIp, limits.reset_per_ip),
            (Budget::ResetPerEmail, limits.reset_per_email),
            "If an account uses this address, we sent it an email with what to do next.",
        ),
    };
    // Before anything else: a refused request costs nothing.
    state
        .rate_limiter
        .admit(per_ip, ip_limit, &context.client_ip.to_string())
        .await?;
    let EmailBody { email } = request::json_body(request).await?;
    let email = EmailAddress::parse(&email).map_err(|e| ApiError::field("email", e.to_string()))?;
    // Spent by every address alike, known or not, so it reveals nothing.
    state
        .rate_limiter
        .admit(per_email, email_limit, email.canonical())
        .await?;
    let metadata = context.event_metadata();
    let job = AddressRequest {
        request_id: Uuid::now_v7(),
        action,
        email: email.canonical().to_owned(),
        http_request_id: metadata.http_request_id,
        client_ip_hash: metadata.client_ip_hash,
        failed_attempts: 0,
    };
    state
        .email_queue
        .push_address_request(job, None)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(json_response(StatusCode::ACCEPTED, &Accepted::new(message)))
}
