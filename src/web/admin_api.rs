//! `/api/admin/*`: the admin API, for the application that uses Porter.
//!
//! Every request needs `Authorization: Bearer <api key>`; anything else is
//! `401` before the route is even looked at (the router asks [`authorize`]
//! first for every path under `/api/admin/`), so the API cannot be probed
//! without a key, and failed attempts are budgeted per client address
//! (`RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP`). The key's id is the actor in
//! the metadata of every event an admin action appends. What the routes do
//! is in `crate::account_admin`, shared with `porter accounts`, and in
//! `crate::webhooks::manage`, shared with `porter webhooks`.

use http::{Response, StatusCode, header};
use hyper::{Request, body::Incoming};
use serde_json::json;
use uuid::Uuid;

use super::{
    AppState,
    context::RequestContext,
    request,
    response::{ApiError, Body, json_response, no_content},
};
use crate::{
    account_admin::{self, AccountDetails, AdminError},
    api_keys,
    domain::{EmailAddress, Username},
    public_events,
    rate_limit::Budget,
    webhooks::{
        Secret,
        manage::{self, Change, WebhookError},
        subscriptions,
    },
};

/// Longest block reason kept.
const MAX_REASON_CHARS: usize = 500;
/// Accounts per listing page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 50;
/// Public events per feed page unless `limit` says otherwise, and at most.
const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

/// The request's context acting as the API key it carries, or the refusal
/// ([`authenticate`]). The router asks this for every path under
/// `/api/admin/` before it looks the route up.
pub async fn authorize(
    state: &AppState,
    context: &RequestContext,
    request: &Request<Incoming>,
) -> Result<RequestContext, ApiError> {
    let key_id = authenticate(state, context, request).await?;
    Ok(context.acting_as(format!("api-key:{key_id}")))
}

/// The id of the live API key the request carries. The key is looked up
/// first, so a live key is never refused because others on the same address
/// failed; each failure spends the client's budget, and a client that has
/// spent it is answered `429` instead of `401`. Looking up first tells a
/// client over budget nothing it could use: a key is 256 random bits, so no
/// number of guesses finds one.
async fn authenticate(
    state: &AppState,
    context: &RequestContext,
    request: &Request<Incoming>,
) -> Result<Uuid, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let key_id = match presented {
        Some(key) => api_keys::authenticate(&state.pool, key).await?,
        None => None,
    };
    match key_id {
        Some(key_id) => Ok(key_id),
        None => {
            state
                .rate_limiter
                .admit(
                    Budget::FailedAdminAuthPerIp,
                    state.config.limits.failed_admin_auth_per_ip,
                    &context.client_ip.to_string(),
                )
                .await?;
            tracing::info!("admin request without a valid API key");
            Err(ApiError::Unauthorized)
        }
    }
}

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

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::NotFound => Self::AccountNotFound,
            AdminError::Conflict { code, source } => Self::Conflict {
                code,
                message: source.to_string(),
            },
            AdminError::Command(error) => error.into(),
            AdminError::Unavailable(cause) => Self::Unavailable(cause.into()),
        }
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::field("id", "is not an account id (a UUID)"))
}

/// `GET /api/admin/accounts`: a lookup by `email` or `username`, or a page
/// of the listing (`status`, `after`, `limit`).
pub async fn accounts(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(request, &["email", "username", "status", "after", "limit"])?;
    let param = |name: &str| params.get(name).map(String::as_str);
    let lookup = match (param("email"), param("username")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "username",
                "look up by email or by username, not both",
            ));
        }
        (Some(email), None) => Some(
            account_admin::find_by_email(
                &state.commands,
                &EmailAddress::parse(email).map_err(|e| ApiError::field("email", e.to_string()))?,
            )
            .await?,
        ),
        (None, Some(username)) => Some(
            account_admin::find_by_username(
                &state.commands,
                &Username::parse(username)
                    .map_err(|e| ApiError::field("username", e.to_string()))?,
            )
            .await?,
        ),
        (None, None) => None,
    };
    if let Some(found) = lookup {
        if ["status", "after", "limit"]
            .iter()
            .any(|name| param(name).is_some())
        {
            return Err(ApiError::field(
                "status",
                "a lookup by email or username takes no listing parameters",
            ));
        }
        let details = found.ok_or(ApiError::AccountNotFound)?;
        return details_response(state, &details).await;
    }
    let status = param("status")
        .map(|name| {
            account_admin::parse_status(name).ok_or_else(|| {
                ApiError::field(
                    "status",
                    "is not one of pending, active, blocked, superseded, cancelled, expired",
                )
            })
        })
        .transpose()?;
    let after = param("after")
        .map(|cursor| {
            account_admin::decode_cursor(cursor)
                .ok_or_else(|| ApiError::field("after", "is not a cursor this API returned"))
        })
        .transpose()?;
    let limit = param("limit")
        .map(|raw| {
            raw.parse::<i64>()
                .ok()
                .filter(|limit| (1..=account_admin::MAX_PAGE).contains(limit))
                .ok_or_else(|| {
                    ApiError::field(
                        "limit",
                        format!("is not a number from 1 to {}", account_admin::MAX_PAGE),
                    )
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_PAGE);
    let page = account_admin::list(&state.pool, status, after, limit).await?;
    Ok(json_response(StatusCode::OK, &page))
}

/// `GET /api/admin/events`: the public events after `after`, in log order.
pub async fn events(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(request, &["after", "limit", "types", "wait"])?;
    let param = |name: &str| params.get(name).map(String::as_str);
    let after = param("after")
        .map(|cursor| {
            public_events::decode_cursor(cursor)
                .ok_or_else(|| ApiError::field("after", "is not a cursor this API returned"))
        })
        .transpose()?
        .unwrap_or_default();
    let limit = param("limit")
        .map(|raw| {
            raw.parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_EVENTS).contains(limit))
                .ok_or_else(|| {
                    ApiError::field("limit", format!("is not a number from 1 to {MAX_EVENTS}"))
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_EVENTS);
    let types = param("types")
        .map(|raw| {
            raw.split(',')
                .map(|name| {
                    public_events::TYPES
                        .contains(&name)
                        .then(|| name.to_owned())
                        .ok_or_else(|| {
                            ApiError::field(
                                "types",
                                format!(
                                    "{name:?} is not one of {}",
                                    public_events::TYPES.join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let max_wait = public_events::MAX_WAIT.as_secs();
    let wait = param("wait")
        .map(|raw| {
            raw.parse::<u64>()
                .ok()
                .filter(|seconds| *seconds <= max_wait)
                .ok_or_else(|| {
                    ApiError::field(
                        "wait",
                        format!("is not a number of seconds from 0 to {max_wait}"),
                    )
                })
        })
        .transpose()?
        .unwrap_or(0);
    let page = public_events::feed(
        &state.pool,
        after,
        limit,
        types.as_deref(),
        std::time::Duration::from_secs(wait),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &page))
}

/// The query's parameters, each known and given once, or `400` per field.
fn query_params(
    request: &Request<Incoming>,
    known: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let mut params = std::collections::BTreeMap::new();
    let mut errors = super::response::FieldErrors::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()).into_owned() {
        if !known.contains(&name.as_str()) {
            errors
                .entry(name.chars().take(64).collect())
                .or_default()
                .push("is not a known parameter".into());
        } else if params.insert(name.clone(), value).is_some() {
            errors
                .entry(name)
                .or_default()
                .push("is given more than once".into());
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::Validation(errors))
    }
}

pub async fn show(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let details = account_admin::details(&state.pool, parse_id(raw_id)?).await?;
    details_response(state, &details).await
}

pub async fn history(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let events = account_admin::history(&state.pool, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "account_id": id, "events": events }),
    ))
}

/// `POST /api/admin/accounts/{id}/block` `{reason}`: blocks the account
/// and ends its sessions and open links.
pub async fn block(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let [reason] = request::json_fields(request, ["reason"]).await?;
    let reason = request::free_text("reason", reason.trim())?;
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field(
            "reason",
            format!("must be 1 to {MAX_REASON_CHARS} characters"),
        ));
    }
    context.commit_begins();
    let access = account_admin::Access {
        sessions: &state.sessions,
        activation_keys: &state.activation_keys,
        reset_keys: &state.reset_keys,
    };
    let details = account_admin::block(
        &state.commands,
        access,
        id,
        reason.to_owned(),
        &context.event_metadata(),
    )
    .await?;
    details_response(state, &details).await
}

/// `POST /api/admin/accounts/{id}/unblock`.
pub async fn unblock(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    let details = account_admin::unblock(&state.commands, id, &context.event_metadata()).await?;
    details_response(state, &details).await
}

/// `POST /api/admin/accounts/{id}/activate`: activates a pending account
/// without its link.
pub async fn activate(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    let details = account_admin::activate(&state.commands, id, &context.event_metadata()).await?;
    details_response(state, &details).await
}

/// `POST /api/admin/accounts/{id}/resend-activation`.
pub async fn resend_activation(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    account_admin::resend_activation(&state.commands, id, &context.event_metadata()).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "status": "accepted",
            "message": "A new activation link is on its way, within the address's email budget.",
        }),
    ))
}

/// The account id of an action that takes no fields (an empty or absent
/// body), once the body is read and the handler is about to commit.
async fn bodiless_action(
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Uuid, ApiError> {
    let id = parse_id(raw_id)?;
    let [] = request::optional_fields(request, []).await?;
    context.commit_begins();
    Ok(id)
}

fn parse_subscription_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw)
        .map_err(|_| ApiError::field("id", "is not a webhook subscription id (a UUID)"))
}

/// `GET /api/admin/webhooks`: every subscription with its lag.
pub async fn list_webhooks(state: &AppState) -> Result<Response<Body>, ApiError> {
    let listed = subscriptions::list(&state.pool).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "subscriptions": listed }),
    ))
}

/// `GET /api/admin/webhooks/{id}`.
pub async fn show_webhook(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_subscription_id(raw_id)?;
    subscription_response(state, id, StatusCode::OK, None).await
}

/// A subscription as listed, with its secret when it was just made.
async fn subscription_response(
    state: &AppState,
    id: Uuid,
    status: StatusCode,
    secret: Option<&Secret>,
) -> Result<Response<Body>, ApiError> {
    let listed = subscriptions::show(&state.pool, id)
        .await?
        .ok_or(ApiError::SubscriptionNotFound)?;
    let mut body = serde_json::to_value(listed).map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(secret) = secret {
        body["secret"] = json!(secret.expose());
    }
    Ok(json_response(status, &body))
}

/// `POST /api/admin/webhooks` `{url, types?}`: subscribes `url` from now
/// on; the answer holds the secret, the only time it is shown.
pub async fn add_webhook(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let ([url], [types]) = request::json_fields_and_optional(request, ["url"], ["types"]).await?;
    let url = request::free_text("url", &url)?;
    let types = types
        .as_deref()
        .map(|raw| request::free_text("types", raw))
        .transpose()?
        .map(|raw| raw.split(',').map(str::to_owned).collect());
    let added = manage::add(&state.pool, &state.config.webhooks, url, types).await?;
    subscription_response(state, added.id, StatusCode::CREATED, Some(&added.secret)).await
}

/// `DELETE /api/admin/webhooks/{id}`, `POST …/pause`, `POST …/resume`.
pub async fn change_webhook(
    state: &AppState,
    raw_id: &str,
    change: Change,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_subscription_id(raw_id)?;
    let [] = request::optional_fields(request, []).await?;
    manage::change(&state.pool, id, change).await?;
    match change {
        Change::Remove => Ok(no_content()),
        Change::Pause | Change::Resume => {
            subscription_response(state, id, StatusCode::OK, None).await
        }
    }
}

/// `POST /api/admin/webhooks/{id}/rotate-secret`: a new secret, shown once;
/// the old one signs beside it for `WEBHOOK_SECRET_OVERLAP`.
pub async fn rotate_webhook_secret(
    state: &AppState,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_subscription_id(raw_id)?;
    let [] = request::optional_fields(request, []).await?;
    let secret =
        subscriptions::rotate_secret(&state.pool, id, state.config.webhooks.secret_overlap)
            .await?
            .ok_or(ApiError::SubscriptionNotFound)?;
    subscription_response(state, id, StatusCode::OK, Some(&secret)).await
}

/// `POST /api/admin/webhooks/{id}/replay` `{from}`: delivers again from
/// `start`, a feed cursor or an event id, with the same event ids.
pub async fn replay_webhook(
    state: &AppState,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_subscription_id(raw_id)?;
    let [from] = request::json_fields(request, ["from"]).await?;
    manage::replay(&state.pool, id, request::free_text("from", &from)?).await?;
    subscription_response(state, id, StatusCode::OK, None).await
}

/// An account's details with its open sessions, which only Redis knows.
async fn details_response(
    state: &AppState,
    details: &AccountDetails,
) -> Result<Response<Body>, ApiError> {
    let open_sessions = state
        .sessions
        .count(details.id)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let mut body = serde_json::to_value(details).map_err(|e| ApiError::Internal(e.into()))?;
    body["open_sessions"] = json!(open_sessions);
    Ok(json_response(StatusCode::OK, &body))
}
