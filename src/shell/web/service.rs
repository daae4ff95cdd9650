//! What a load balancer and a client generator ask of any service: is it
//! alive, is it ready, and what is its API.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::{
    http::{
        openapi::{Answer, Auth, Content, Operation, RequestBody, Tag},
        response::{ApiError, Body, json_response, text_response},
    },
    services::AppState,
};

pub static HEALTH: Operation = Operation {
    id: "healthz",
    tag: Tag::Service,
    summary: "Alive",
    description: "The process answers; nothing else is checked.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::new(200, "`ok`", Content::Text)],
};

pub fn health() -> Response<Body> {
    text_response(StatusCode::OK, "ok\n")
}

pub static READINESS: Operation = Operation {
    id: "readyz",
    tag: Tag::Service,
    summary: "Ready: Postgres and Redis answer",
    description: "Never says which dependency failed (that is in the log).",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::None,
    answers: &[
        Answer::json::<Readiness>(200, "Ready"),
        Answer::json::<Readiness>(503, "Not ready"),
    ],
};

/// Whether Porter can take traffic.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    #[schema(inline)]
    status: Ready,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Ready {
    Ready,
    Unavailable,
}

/// Ready when Postgres and Redis both answer; a load balancer stops sending
/// traffic to a process that cannot record anything. The answer says ready
/// or not, never which dependency failed (that is in the log).
pub async fn readiness(state: &AppState) -> Result<Response<Body>, ApiError> {
    let timeout = std::time::Duration::from_secs(2);
    let postgres =
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let redis = tokio::time::timeout(
        timeout,
        redis::cmd("PING").query_async::<String>(&mut state.redis.clone()),
    )
    .await;
    let postgres_ok = matches!(postgres, Ok(Ok(_)));
    let redis_ok = matches!(redis, Ok(Ok(_)));
    if !postgres_ok {
        tracing::warn!("not ready: Postgres does not answer");
    }
    if !redis_ok {
        tracing::warn!("not ready: Redis does not answer");
    }
    let (status, ready) = if postgres_ok && redis_ok {
        (StatusCode::OK, Ready::Ready)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Ready::Unavailable)
    };
    Ok(json_response(status, &Readiness { status: ready }))
}

pub static OPENAPI: Operation = Operation {
    id: "openapi",
    tag: Tag::Service,
    summary: "This document",
    description: "The OpenAPI 3.1 description of the API, as `porter openapi` prints it.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::new(200, "The document", Content::Document)],
};

/// Serves `document`, the text of the API's description.
pub fn openapi(document: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(document.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
