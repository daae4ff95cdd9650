//! `GET /api/admin/events`: the feed of public events, for the application
//! that uses Porter (the same events webhooks push). What it reads is
//! `crate::features::public_events`.

use http::{Response, StatusCode};
use hyper::{Request, body::Incoming};

use crate::features::public_events::{self, FeedError, FeedPage};
use crate::platform::{
    http::{
        openapi::{self, Answer, Auth, Operation, Parameter, RequestBody, Tag},
        request,
        response::{ApiError, Body, json_response},
    },
    services::AppState,
};

/// Public events per feed page unless `limit` says otherwise, and at most.
const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

pub static EVENTS: Operation = Operation {
    id: "admin_events",
    tag: Tag::AdminEvents,
    summary: "The public events after a cursor, in log order",
    description: "Each event once, in commit order; `next_cursor` is where the next page starts \
        (also when this page is empty). With `wait`, a request that finds none waits for one.",
    auth: Auth::ApiKey,
    parameters: &[
        Parameter::query(
            "after",
            "A `next_cursor` from an earlier page; the start of the log when absent",
            || openapi::pattern(r#"^[0-9]{1,18}\.[0-9]{1,18}$"#),
        ),
        Parameter::query("limit", "Most events on the page (100 when absent)", || {
            openapi::integer(1, MAX_EVENTS as u64)
        }),
        Parameter::query(
            "types",
            "Comma-separated public types; every type when absent",
            crate::features::public_events::api_description::types_schema,
        ),
        Parameter::query(
            "wait",
            "Seconds to wait for a first event when there is none (0 when absent)",
            || openapi::integer(0, public_events::MAX_WAIT.as_secs()),
        ),
    ],
    body: RequestBody::None,
    answers: &[
        Answer::json::<FeedPage>(200, "A page of events"),
        Answer::error(
            400,
            "A parameter is unknown, repeated or invalid (`error.fields`)",
        ),
    ],
};

/// `GET /api/admin/events`: the public events after `after`, in log order.
pub async fn events(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = request::query_params(request, &["after", "limit", "types", "wait"])?;
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

impl From<FeedError> for ApiError {
    fn from(error: FeedError) -> Self {
        match error {
            FeedError::Database(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}
