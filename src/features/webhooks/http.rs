//! `/api/admin/webhooks`: subscribing receivers to the public events, and
//! managing a subscription (pause, resume, rotate its secret, replay,
//! remove). What the routes do is in `crate::features::webhooks::manage`, shared with
//! `porter webhooks`.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::features::webhooks::{
    Secret,
    manage::{self, Change, WebhookError},
    subscriptions::{self, Listed},
};
use crate::platform::{
    http::{
        openapi::{self, Answer, Auth, BodyType, Operation, Parameter, RequestBody, Tag},
        request::{self, NoFields},
        response::{ApiError, Body, json_response, no_content},
    },
    services::AppState,
};

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        let message = error.to_string();
        match error {
            WebhookError::Refused(_) => Self::field("url", message),
            WebhookError::UnknownType { .. } => Self::field("types", message),
            WebhookError::BadPosition { .. } | WebhookError::NoSuchEvent { .. } => {
                Self::field("from", message)
            }
            WebhookError::NotFound(_) => Self::SubscriptionNotFound,
            WebhookError::WrongState { change, .. } => Self::Conflict {
                code: match change {
                    Change::Pause => "not_active",
                    Change::Resume | Change::Remove => "already_active",
                },
                message,
            },
            WebhookError::Database(error) => error.into(),
        }
    }
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhookSubscription)]
pub struct NewSubscription {
    /// http or https, no user or password, no control characters; a host
    /// that is or resolves to a non-public address is refused unless
    /// WEBHOOK_ALLOW_PRIVATE_NETWORKS
    #[schema(
        pattern = r#"^[Hh][Tt][Tt][Pp][Ss]?://[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+$"#
    )]
    url: String,
    /// Comma-separated public types to deliver (as the feed's `types`); all
    /// when absent
    #[serde(default)]
    #[schema(schema_with = crate::features::public_events::api_description::types_schema)]
    types: Option<String>,
}

/// Where a replay starts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplayWebhook)]
pub struct Replay {
    /// `start`, a feed cursor, or an event id (`evt_…`)
    #[schema(pattern = r#"^(start|[0-9]{1,18}\.[0-9]{1,18}|evt_[0-9a-f]{32})$"#)]
    from: String,
}

/// A subscription as listed, with its secret when it was just made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookSubscription)]
pub struct SubscriptionView {
    #[serde(flatten)]
    listed: Listed,
    /// Only when it was just made (create, rotate-secret)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$")]
    secret: Option<String>,
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookSubscriptionList)]
pub struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

const ID: Parameter = Parameter::path("id", "The webhook subscription's id", openapi::uuid);
const NOT_FOUND: Answer = Answer::error(404, "There is no webhook subscription with this id");
const SHOWN: Answer = Answer::json::<SubscriptionView>(200, "The subscription as it stands");

pub static LIST: Operation = Operation {
    id: "admin_list_webhooks",
    tag: Tag::AdminWebhooks,
    summary: "Every webhook subscription",
    description: "Each with its state and how far behind the log it is.",
    auth: Auth::ApiKey,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::json::<SubscriptionList>(200, "The subscriptions")],
};

/// `GET /api/admin/webhooks`: every subscription with its lag.
pub async fn list(state: &AppState) -> Result<Response<Body>, ApiError> {
    let subscriptions = subscriptions::list(&state.pool)
        .await?
        .into_iter()
        .map(|listed| SubscriptionView {
            listed,
            secret: None,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &SubscriptionList { subscriptions },
    ))
}

pub static SHOW: Operation = Operation {
    id: "admin_webhook",
    tag: Tag::AdminWebhooks,
    summary: "One webhook subscription",
    description: "Its state and how far behind the log it is.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::None,
    answers: &[SHOWN, Answer::error(400, "The id is not a UUID"), NOT_FOUND],
};

/// `GET /api/admin/webhooks/{id}`.
pub async fn show(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    respond(state, id, StatusCode::OK, None).await
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw)
        .map_err(|_| ApiError::field("id", "is not a webhook subscription id (a UUID)"))
}

/// A subscription as listed, with its secret when it was just made.
async fn respond(
    state: &AppState,
    id: Uuid,
    status: StatusCode,
    secret: Option<&Secret>,
) -> Result<Response<Body>, ApiError> {
    let listed = subscriptions::show(&state.pool, id)
        .await?
        .ok_or(ApiError::SubscriptionNotFound)?;
    let view = SubscriptionView {
        listed,
        secret: secret.map(|secret| secret.expose().to_owned()),
    };
    Ok(json_response(status, &view))
}

pub static ADD: Operation = Operation {
    id: "admin_add_webhook",
    tag: Tag::AdminWebhooks,
    summary: "Subscribe a receiver",
    description: "Public events from now on are delivered to `url`. The answer holds the \
        signing secret, the only time it is shown.",
    auth: Auth::ApiKey,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<NewSubscription>()),
    answers: &[Answer::json::<SubscriptionView>(
        201,
        "Subscribed; `secret` signs its deliveries",
    )],
};

/// `POST /api/admin/webhooks` `{url, types?}`: subscribes `url` from now
/// on; the answer holds the secret, the only time it is shown.
pub async fn add(state: &AppState, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let NewSubscription { url, types } = request::json_body(request).await?;
    let url = request::free_text("url", &url)?;
    let types = types
        .as_deref()
        .map(|raw| request::free_text("types", raw))
        .transpose()?
        .map(|raw| raw.split(',').map(str::to_owned).collect());
    let added = manage::add(&state.pool, &state.config.webhooks, url, types).await?;
    respond(state, added.id, StatusCode::CREATED, Some(&added.secret)).await
}

pub static REMOVE: Operation = Operation {
    id: "admin_remove_webhook",
    tag: Tag::AdminWebhooks,
    summary: "Remove a paused or disabled subscription",
    description: "Pause an active subscription first.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[
        Answer::new(204, "Removed", openapi::Content::Nothing),
        NOT_FOUND,
        Answer::error(409, "The subscription is active; pause it first"),
    ],
};

pub static PAUSE: Operation = Operation {
    id: "admin_webhook_pause",
    tag: Tag::AdminWebhooks,
    summary: "Pause deliveries",
    description: "Events keep their place in the log and are delivered on resume.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[
        SHOWN,
        NOT_FOUND,
        Answer::error(409, "The subscription is not active"),
    ],
};

pub static RESUME: Operation = Operation {
    id: "admin_webhook_resume",
    tag: Tag::AdminWebhooks,
    summary: "Resume a paused or disabled subscription",
    description: "Deliveries go on from where they stopped.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[
        SHOWN,
        NOT_FOUND,
        Answer::error(409, "The subscription is already active"),
    ],
};

/// `DELETE /api/admin/webhooks/{id}`, `POST …/pause`, `POST …/resume`.
pub async fn change(
    state: &AppState,
    raw_id: &str,
    change: Change,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let (NoFields {}, _) = request::optional_body(request).await?;
    manage::change(&state.pool, id, change).await?;
    match change {
        Change::Remove => Ok(no_content()),
        Change::Pause | Change::Resume => respond(state, id, StatusCode::OK, None).await,
    }
}

pub static ROTATE_SECRET: Operation = Operation {
    id: "admin_webhook_rotate_secret",
    tag: Tag::AdminWebhooks,
    summary: "A new signing secret",
    description: "Shown once, in the answer; the old secret signs beside it for \
        WEBHOOK_SECRET_OVERLAP.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[
        Answer::json::<SubscriptionView>(200, "Rotated; `secret` is the new one"),
        NOT_FOUND,
    ],
};

/// `POST /api/admin/webhooks/{id}/rotate-secret`: a new secret, shown once;
/// the old one signs beside it for `WEBHOOK_SECRET_OVERLAP`.
pub async fn rotate_secret(
    state: &AppState,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let (NoFields {}, _) = request::optional_body(request).await?;
    let secret =
        subscriptions::rotate_secret(&state.pool, id, state.config.webhooks.secret_overlap)
            .await?
            .ok_or(ApiError::SubscriptionNotFound)?;
    respond(state, id, StatusCode::OK, Some(&secret)).await
}

pub static REPLAY: Operation = Operation {
    id: "admin_webhook_replay",
    tag: Tag::AdminWebhooks,
    summary: "Deliver again from a point of the log",
    description: "From `start`, a feed cursor or an event id, with the same event ids.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Json(BodyType::of::<Replay>()),
    answers: &[SHOWN, NOT_FOUND],
};

/// `POST /api/admin/webhooks/{id}/replay` `{from}`: delivers again from
/// `start`, a feed cursor or an event id, with the same event ids.
pub async fn replay(
    state: &AppState,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let Replay { from } = request::json_body(request).await?;
    manage::replay(&state.pool, id, request::free_text("from", &from)?).await?;
    respond(state, id, StatusCode::OK, None).await
}
