//! Responses: the one error shape, JSON and HTML bodies, and the headers every
//! response carries.
//!
//! Every error body is `{"error": {"code", "message", "fields"?}, "request_id"}`
//! so clients handle errors one way. Internal causes are logged with the
//! request id and never sent: no SQL, stack traces or internal names.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use utoipa::{
    ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, schema::SchemaType},
};

pub use crate::platform::http::server::Body;
use crate::platform::{commands::CommandError, hashing::HashError, rate_limit::RateLimited};

/// Per-field messages, ordered for stable output.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request has invalid fields")]
    Validation(FieldErrors),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    /// The methods the path serves, as the `Allow` header lists them.
    MethodNotAllowed(String),
    #[error("activation link invalid")]
    LinkInvalid,
    #[error("the registration is contested and needs its password")]
    PasswordRequired,
    #[error("password reset link invalid")]
    ResetLinkInvalid,
    #[error("wrong login or password")]
    InvalidCredentials,
    #[error("the account is not active")]
    AccountNotActive,
    #[error("the account is blocked")]
    AccountBlocked,
    #[error("no valid session token")]
    Unauthenticated,
    #[error("too busy")]
    Overloaded,
    #[error("no valid API key")]
    Unauthorized,
    #[error("no such account")]
    AccountNotFound,
    #[error("no such webhook subscription")]
    SubscriptionNotFound,
    #[error("the action does not apply: {message}")]
    Conflict { code: &'static str, message: String },
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request URI is too long")]
    UriTooLong,
    #[error("the request took too long to arrive")]
    RequestTimeout,
    /// Its cause is logged with the whole chain; the client is told only
    /// that a dependency is away.
    #[error("a dependency is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Postgres being unreachable, restarting or out of connections is a `503`
/// the client can retry, not a `500`.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
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
            Self::Unavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Database(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Overloaded => Self::Overloaded,
            HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

/// A spent budget is a `429` whose `Retry-After` is the limiter's wait.
impl From<RateLimited> for ApiError {
    fn from(refusal: RateLimited) -> Self {
        Self::RateLimited {
            retry_after_secs: refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

impl ApiError {
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(name.to_owned(), vec![message.into()])]))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PasswordRequired => StatusCode::FORBIDDEN,
            Self::LinkInvalid | Self::ResetLinkInvalid => StatusCode::GONE,
            Self::InvalidCredentials | Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::AccountNotActive | Self::AccountBlocked => StatusCode::FORBIDDEN,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AccountNotFound | Self::SubscriptionNotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::MalformedJson(_) => "malformed_json",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::LinkInvalid => "activation_link_invalid",
            Self::PasswordRequired => "password_required",
            Self::ResetLinkInvalid => "reset_link_invalid",
            Self::InvalidCredentials => "invalid_credentials",
            Self::AccountNotActive => "account_not_active",
            Self::AccountBlocked => "account_blocked",
            Self::Unauthenticated => "unauthenticated",
            Self::Overloaded => "overloaded",
            Self::Unauthorized => "unauthorized",
            Self::AccountNotFound => "account_not_found",
            Self::SubscriptionNotFound => "subscription_not_found",
            Self::Conflict { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::UriTooLong => "uri_too_long",
            Self::RequestTimeout => "request_timeout",
            Self::Unavailable(_) => "temporarily_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The message the client sees; never carries internal detail.
    fn public_message(&self) -> String {
        match self {
            Self::Validation(_) => "Some fields are invalid; see `fields`.".into(),
            Self::MalformedJson(detail) => format!("The request body is not valid JSON: {detail}."),
            Self::PayloadTooLarge(limit) => {
                format!("The request body must be at most {limit} bytes.")
            }
            Self::UnsupportedMediaType => {
                "The request body must be sent as application/json.".into()
            }
            Self::NotFound => "There is nothing at this address.".into(),
            Self::MethodNotAllowed(allow) => format!("This address accepts only {allow}."),
            Self::LinkInvalid => {
                "This activation link is invalid, expired or was replaced by a newer one. \
                 Ask for a new link with POST /api/activate-account/resend and your email address."
                    .into()
            }
            Self::PasswordRequired => {
                "Another sign-up used this address shortly before or after this one, so \
                 confirming it needs the password chosen at this sign-up as well as the link. \
                 Send it as {\"password\": \"…\"}."
                    .into()
            }
            Self::ResetLinkInvalid => {
                "This password reset link is invalid, expired, already used or was replaced by a \
                 newer one. Ask for a new link with POST /api/password-reset and your email address."
                    .into()
            }
            Self::InvalidCredentials => "The login or the password is wrong.".into(),
            Self::AccountNotActive => {
                "This account is not active yet: confirm your email address with the link we \
                 sent. Ask for a new link with POST /api/activate-account/resend and your email \
                 address."
                    .into()
            }
            Self::AccountBlocked => {
                "This account is blocked; ask the service you signed up for.".into()
            }
            Self::Unauthenticated => {
                "Sign in first, and send the token as `Authorization: Bearer <token>`.".into()
            }
            Self::Overloaded => "Porter is busy right now; try again shortly.".into(),
            Self::Unauthorized => {
                "The admin API needs `Authorization: Bearer <api key>` with a live key.".into()
            }
            Self::AccountNotFound => "There is no account with this id.".into(),
            Self::SubscriptionNotFound => "There is no webhook subscription with this id.".into(),
            Self::Conflict { message, .. } => format!("The action does not apply: {message}."),
            Self::RateLimited { retry_after_secs } => {
                format!("Too many requests; try again in {retry_after_secs} seconds.")
            }
            Self::UriTooLong => "The request URI is too long.".into(),
            Self::RequestTimeout => "The request took too long to arrive.".into(),
            Self::Unavailable(_) => "Porter is temporarily unavailable; try again shortly.".into(),
            Self::Internal(_) => "Something went wrong on our side; it has been logged.".into(),
        }
    }

    /// Seconds a client should wait before retrying, where that makes sense.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Overloaded => Some(1),
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable(_) => Some(5),
            _ => None,
        }
    }

    pub fn into_response(self, http_request_id: &str) -> Response<Body> {
        let fields = match &self {
            Self::Validation(fields) => Some(fields),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                fields,
            },
            request_id: http_request_id,
        };
        let mut response = json_response(self.status(), &body);
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self, Self::Unauthorized | Self::Unauthenticated) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::MethodNotAllowed(allow) = &self {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_str(allow).expect("method names are header-safe"),
            );
        }
        response
    }
}

/// Every error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    /// The request's id, also sent as the X-Request-Id header
    request_id: &'a str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ErrorDetail<'a> {
    #[schema(schema_with = error_codes)]
    code: &'static str,
    message: String,
    /// Per-field messages, for validation_failed
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Vec<String>>>)]
    fields: Option<&'a FieldErrors>,
}

/// Every `error.code` an answer may carry: [`ApiError::code`]'s, and the
/// conflicts of admin actions (`crate::features::admin`, `crate::features::webhooks::manage`).
/// The tests check every error any of them sees against this list.
pub const ERROR_CODES: [&str; 30] = [
    "validation_failed",
    "malformed_json",
    "password_required",
    "payload_too_large",
    "unsupported_media_type",
    "not_found",
    "method_not_allowed",
    "activation_link_invalid",
    "overloaded",
    "rate_limited",
    "uri_too_long",
    "request_timeout",
    "temporarily_unavailable",
    "internal_error",
    "unauthorized",
    "account_not_found",
    "subscription_not_found",
    "already_active",
    "not_active",
    "already_blocked",
    "not_blocked",
    "not_pending",
    "registration_ended",
    "address_owned_elsewhere",
    "not_applicable",
    "reset_link_invalid",
    "invalid_credentials",
    "account_not_active",
    "account_blocked",
    "unauthenticated",
];

fn error_codes() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(utoipa::openapi::Type::String))
        .enum_values(Some(ERROR_CODES))
        .into()
}

/// What every `202` says: an email follows where one is due.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    #[schema(inline)]
    status: AcceptedStatus,
    message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum AcceptedStatus {
    Accepted,
}

/// A password set anew, by its owner or through a reset link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChanged {
    #[schema(inline)]
    status: ChangedStatus,
    message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ChangedStatus {
    Changed,
}

impl PasswordChanged {
    pub fn new(message: &'static str) -> Self {
        Self {
            status: ChangedStatus::Changed,
            message,
        }
    }
}

impl Accepted {
    pub fn new(message: &'static str) -> Self {
        Self {
            status: AcceptedStatus::Accepted,
            message,
        }
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    with_content_type(status, Bytes::from(bytes), "application/json")
}

pub fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut response = with_content_type(status, Bytes::from(html), "text/html; charset=utf-8");
    // Pages are static apart from escaped text: no scripts, no external assets.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `204 No Content`.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    with_content_type(
        status,
        Bytes::from_static(text.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn with_content_type(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Adds the headers every response carries, whatever produced it; `hsts`
/// when Porter is reached over https (`PUBLIC_BASE_URL`), so browsers never
/// try it in clear again.
pub fn add_standard_headers(response: &mut Response<Body>, http_request_id: &str, hsts: bool) {
    let headers = response.headers_mut();
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    if let Ok(value) = HeaderValue::from_str(http_request_id) {
        headers.insert("x-request-id", value);
    }
}
