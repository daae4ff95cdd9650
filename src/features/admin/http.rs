//! `/api/admin/*`: the admin API, for the application that uses Porter.
//!
//! Every request needs `Authorization: Bearer <api key>`; anything else is
//! `401` before the route is even looked at (the router asks [`authorize`]
//! first for every path under `/api/admin/`), so the API cannot be probed
//! without a key, and failed attempts are budgeted per client address
//! (`RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP`). The key's id is the actor in
//! the metadata of every event an admin action appends. Here are the
//! account routes; what they do is in `crate::features::admin`, shared with
//! `porter accounts`. The webhook routes are `features::webhooks::http`, the feed
//! `features::public_events::http`.

use http::{Response, StatusCode, header};
use hyper::{Request, body::Incoming};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{self, Answer, Auth, BodyType, Operation, Parameter, RequestBody, Tag},
        request::{self, NoFields},
        response::{Accepted, ApiError, Body, FieldErrors, json_response},
    },
    services::AppState,
};
use crate::{
    domain::{EmailAddress, Username},
    features::{
        accounts::read_model::status_schema,
        admin::{self, AccountDetails, AdminError, HistoryEntry, Page, api_keys},
    },
    platform::rate_limit::Budget,
};

/// Longest block reason kept.
const MAX_REASON_CHARS: usize = 500;
/// Accounts per listing page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 50;
/// The parameters of a listing page, which a lookup does not take.
const LISTING: [&str; 3] = ["status", "after", "limit"];

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

/// An account's details with its open sessions, which only Redis knows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    #[serde(flatten)]
    details: AccountDetails,
    /// Sessions of the account that are live now
    open_sessions: u64,
}

/// What `GET /api/admin/accounts` finds: one account, or a listing page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = AccountsFound)]
pub enum Found {
    Account(Box<AdminAccount>),
    Page(Page),
}

/// An account's events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountHistory {
    account_id: Uuid,
    events: Vec<HistoryEntry>,
}

/// Why an account is blocked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BlockAccount)]
pub struct Block {
    /// Shown to operators as it is: control characters (ESC, BEL, CR, line
    /// breaks, …) and bidirectional overrides are refused with 400
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r#"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]([^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069])?[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"#
    )]
    reason: String,
}

const ID: Parameter = Parameter::path("id", "The account's id", openapi::uuid);
const BAD_ID: Answer = Answer::error(400, "The id is not a UUID");
const NOT_FOUND: Answer = Answer::error(404, "There is no account with this id");
const SHOWN: Answer = Answer::json::<AdminAccount>(200, "The account as it stands now");
const CONFLICT: Answer = Answer::error(
    409,
    "The action does not apply to the account as it stands; `error.code` says why",
);

pub static ACCOUNTS: Operation = Operation {
    id: "admin_accounts",
    tag: Tag::AdminAccounts,
    summary: "Look an account up by email or username, or list accounts",
    description: "With `email` or `username` (not both): that account, or 404. Without: a \
        page of accounts in registration order, filtered by `status`, after the cursor \
        `after`; a lookup takes none of the listing's parameters.",
    auth: Auth::ApiKey,
    parameters: &[
        Parameter::query("email", "Look the account holding this address up", || {
            openapi::string()
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Email,
                )))
                .min_length(Some(3))
                .max_length(Some(254))
                .into()
        }),
        Parameter::query("username", "Look the account with this username up", || {
            openapi::string()
                .min_length(Some(3))
                .max_length(Some(32))
                .into()
        }),
        Parameter::query(
            "status",
            "Listing only: accounts with this status",
            || match status_schema() {
                utoipa::openapi::RefOr::T(schema) => schema,
                utoipa::openapi::RefOr::Ref(_) => unreachable!("an inline enum"),
            },
        ),
        Parameter::query(
            "after",
            "Listing only: a `next_cursor` from the page before",
            || {
                openapi::pattern(
                    r#"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"#,
                )
            },
        ),
        Parameter::query(
            "limit",
            "Listing only: most accounts on the page (50 when absent)",
            || openapi::integer(1, admin::MAX_PAGE as u64),
        ),
    ],
    body: RequestBody::None,
    answers: &[
        Answer::json::<Found>(200, "The account looked up, or a listing page"),
        Answer::error(
            400,
            "A parameter is unknown, repeated or invalid, or a lookup was given a listing \
             parameter (`error.fields`)",
        ),
        Answer::error(404, "No account holds this email or username"),
    ],
};

/// `GET /api/admin/accounts`: a lookup by `email` or `username`, or a page
/// of the listing (`status`, `after`, `limit`).
pub async fn accounts(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params =
        request::query_params(request, &["email", "username", "status", "after", "limit"])?;
    let param = |name: &str| params.get(name).map(String::as_str);
    let lookup = match (param("email"), param("username")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "username",
                "look up by email or by username, not both",
            ));
        }
        (Some(email), None) => Some(
            admin::find_by_email(
                &state.commands,
                &EmailAddress::parse(email).map_err(|e| ApiError::field("email", e.to_string()))?,
            )
            .await?,
        ),
        (None, Some(username)) => Some(
            admin::find_by_username(
                &state.commands,
                &Username::parse(username)
                    .map_err(|e| ApiError::field("username", e.to_string()))?,
            )
            .await?,
        ),
        (None, None) => None,
    };
    if let Some(found) = lookup {
        let listing: FieldErrors = LISTING
            .iter()
            .filter(|name| param(name).is_some())
            .map(|name| {
                let message = "is a listing parameter; a lookup by email or username takes none";
                ((*name).to_owned(), vec![message.to_owned()])
            })
            .collect();
        if !listing.is_empty() {
            return Err(ApiError::Validation(listing));
        }
        let details = found.ok_or(ApiError::AccountNotFound)?;
        return Ok(json_response(
            StatusCode::OK,
            &Found::Account(Box::new(admin_account(state, details).await?)),
        ));
    }
    let status = param("status")
        .map(|name| {
            admin::parse_status(name).ok_or_else(|| {
                ApiError::field(
                    "status",
                    "is not one of pending, active, blocked, superseded, cancelled, expired",
                )
            })
        })
        .transpose()?;
    let after = param("after")
        .map(|cursor| {
            admin::decode_cursor(cursor)
                .ok_or_else(|| ApiError::field("after", "is not a cursor this API returned"))
        })
        .transpose()?;
    let limit = param("limit")
        .map(|raw| {
            raw.parse::<i64>()
                .ok()
                .filter(|limit| (1..=admin::MAX_PAGE).contains(limit))
                .ok_or_else(|| {
                    ApiError::field(
                        "limit",
                        format!("is not a number from 1 to {}", admin::MAX_PAGE),
                    )
                })
        })
        .transpose()?
        .unwrap_or(DEFAULT_PAGE);
    let page = admin::list(&state.pool, status, after, limit).await?;
    Ok(json_response(StatusCode::OK, &Found::Page(page)))
}

pub static SHOW: Operation = Operation {
    id: "admin_account",
    tag: Tag::AdminAccounts,
    summary: "One account",
    description: "Its status, dates, latest email delivery and open sessions.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::None,
    answers: &[SHOWN, BAD_ID, NOT_FOUND],
};

pub async fn show(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let details = admin::details(&state.pool, parse_id(raw_id)?).await?;
    details_response(state, details).await
}

pub static HISTORY: Operation = Operation {
    id: "admin_account_events",
    tag: Tag::AdminAccounts,
    summary: "An account's events",
    description: "Every event of the account's stream, decoded and upcast, password hashes \
        removed.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::None,
    answers: &[
        Answer::json::<AccountHistory>(200, "The account's events, oldest first"),
        BAD_ID,
        NOT_FOUND,
    ],
};

pub async fn history(state: &AppState, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let events = admin::history(&state.pool, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &AccountHistory {
            account_id: id,
            events,
        },
    ))
}

pub static BLOCK: Operation = Operation {
    id: "admin_block",
    tag: Tag::AdminAccounts,
    summary: "Block an account",
    description: "Ends its sessions and open links; signing in is refused until it is \
        unblocked.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Json(BodyType::of::<Block>()),
    answers: &[SHOWN, NOT_FOUND, CONFLICT],
};

/// `POST /api/admin/accounts/{id}/block` `{reason}`: blocks the account
/// and ends its sessions and open links.
pub async fn block(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_id(raw_id)?;
    let Block { reason } = request::json_body(request).await?;
    let reason = request::free_text("reason", reason.trim())?;
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::field(
            "reason",
            format!("must be 1 to {MAX_REASON_CHARS} characters"),
        ));
    }
    context.commit_begins();
    let access = admin::Access {
        sessions: &state.sessions,
        activation_keys: &state.activation_keys,
        reset_keys: &state.reset_keys,
    };
    let details = admin::block(
        &state.commands,
        access,
        id,
        reason.to_owned(),
        &context.event_metadata(),
    )
    .await?;
    details_response(state, details).await
}

pub static UNBLOCK: Operation = Operation {
    id: "admin_unblock",
    tag: Tag::AdminAccounts,
    summary: "Unblock an account",
    description: "It may sign in again.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[SHOWN, NOT_FOUND, CONFLICT],
};

/// `POST /api/admin/accounts/{id}/unblock`.
pub async fn unblock(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    let details = admin::unblock(&state.commands, id, &context.event_metadata()).await?;
    details_response(state, details).await
}

pub static ACTIVATE: Operation = Operation {
    id: "admin_activate",
    tag: Tag::AdminAccounts,
    summary: "Activate a pending account without its link",
    description: "For an owner who cannot receive the email.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[SHOWN, NOT_FOUND, CONFLICT],
};

/// `POST /api/admin/accounts/{id}/activate`: activates a pending account
/// without its link.
pub async fn activate(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    let details = admin::activate(&state.commands, id, &context.event_metadata()).await?;
    details_response(state, details).await
}

pub static RESEND_ACTIVATION: Operation = Operation {
    id: "admin_resend_activation",
    tag: Tag::AdminAccounts,
    summary: "Send a pending account a new activation link",
    description: "Within the address's email budget; the earlier links stop working.",
    auth: Auth::ApiKey,
    parameters: &[ID],
    body: RequestBody::Empty,
    answers: &[
        Answer::json::<Accepted>(202, "A new link is on its way"),
        NOT_FOUND,
        CONFLICT,
    ],
};

/// `POST /api/admin/accounts/{id}/resend-activation`.
pub async fn resend_activation(
    state: &AppState,
    context: &RequestContext,
    raw_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = bodiless_action(context, raw_id, request).await?;
    admin::resend_activation(&state.commands, id, &context.event_metadata()).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Accepted::new("A new activation link is on its way, within the address's email budget."),
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
    let (NoFields {}, _) = request::optional_body(request).await?;
    context.commit_begins();
    Ok(id)
}

/// An account's details with its open sessions, which only Redis knows.
async fn admin_account(
    state: &AppState,
    details: AccountDetails,
) -> Result<AdminAccount, ApiError> {
    let open_sessions = state
        .sessions
        .count(details.id)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(AdminAccount {
        details,
        open_sessions,
    })
}

async fn details_response(
    state: &AppState,
    details: AccountDetails,
) -> Result<Response<Body>, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &admin_account(state, details).await?,
    ))
}
