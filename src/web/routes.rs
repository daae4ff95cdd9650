//! The router: a `match` on method and path, plus what every request gets
//! (a request id, a tracing span, standard headers, one log line).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use http::{Method, Response, StatusCode};
use hyper::{Request, body::Incoming};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{
    AppState, activation,
    context::RequestContext,
    password_reset, request, resend,
    response::{ApiError, Body, add_standard_headers, json_response, text_response},
    sign_in, signup,
};
use crate::gauges;

pub async fn handle(state: &AppState, peer: IpAddr, request: Request<Incoming>) -> Response<Body> {
    let context = RequestContext {
        http_request_id: Uuid::now_v7().to_string(),
        client_ip: request::client_ip(peer, request.headers(), &state.config.web.trusted_proxies),
    };
    // Every line logged while the request is handled, in the store, Redis
    // and mail code too, carries the HTTP request id through this span.
    let span = tracing::info_span!("http_request", http_request_id = %context.http_request_id);
    respond(state, &context, request).instrument(span).await
}

async fn respond(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let (route, result) = dispatch(state, context, request).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            match &error {
                ApiError::Internal(_) => {
                    tracing::error!(route, error = %error, "request failed")
                }
                ApiError::Unavailable(_) => {
                    tracing::warn!(route, error = %error, "dependency unavailable")
                }
                _ => {}
            }
            error.into_response(&context.http_request_id)
        }
    };
    add_standard_headers(&mut response, &context.http_request_id);
    crate::metrics::record_request(route, response.status(), started.elapsed());
    // The route name, never the raw path: paths carry activation keys.
    tracing::info!(
        method = %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

type Handled = (&'static str, Result<Response<Body>, ApiError>);

/// Longest request URI accepted; Porter's own URIs are far shorter.
const MAX_URI_BYTES: usize = 2048;
/// A request that has not been answered by then gets `503`; its unfinished
/// work is dropped (an open transaction rolls back).
const HANDLER_DEADLINE: Duration = Duration::from_secs(30);

async fn dispatch(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Handled {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return ("uri_too_long", Err(ApiError::UriTooLong));
    }
    match tokio::time::timeout(HANDLER_DEADLINE, route(state, context, request)).await {
        Ok(handled) => handled,
        Err(_) => (
            "deadline",
            Err(ApiError::Unavailable("handler deadline passed".into())),
        ),
    }
}

async fn route(state: &AppState, context: &RequestContext, request: Request<Incoming>) -> Handled {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["api", "users"]) => {
            ("sign_up", signup::sign_up(state, context, request).await)
        }
        (_, ["api", "users"]) => ("sign_up", Err(ApiError::MethodNotAllowed("POST"))),
        (&Method::GET | &Method::HEAD, ["activate", key]) => {
            ("activation_page", activation::page(state, key))
        }
        (_, ["activate", _]) => (
            "activation_page",
            Err(ApiError::MethodNotAllowed("GET, HEAD")),
        ),
        (&Method::POST, ["api", "activate-account", "resend"]) => {
            ("resend", resend::resend(state, context, request).await)
        }
        (&Method::POST, ["api", "activate-account", key]) => {
            let wants_html = request::wants_html(request.headers());
            (
                "activate",
                activation::activate(state, context, key, wants_html).await,
            )
        }
        (_, ["api", "activate-account", _]) => {
            ("activate", Err(ApiError::MethodNotAllowed("POST")))
        }
        (&Method::POST, ["api", "sessions"]) => {
            ("sign_in", sign_in::sign_in(state, context, request).await)
        }
        (&Method::DELETE, ["api", "sessions"]) => (
            "sign_out_everywhere",
            sign_in::sign_out_everywhere(state, request.headers()).await,
        ),
        (_, ["api", "sessions"]) => ("sign_in", Err(ApiError::MethodNotAllowed("POST, DELETE"))),
        (&Method::DELETE, ["api", "sessions", "current"]) => (
            "sign_out",
            sign_in::sign_out(state, request.headers()).await,
        ),
        (_, ["api", "sessions", "current"]) => {
            ("sign_out", Err(ApiError::MethodNotAllowed("DELETE")))
        }
        (&Method::GET | &Method::HEAD, ["api", "me"]) => {
            ("me", sign_in::me(state, request.headers()).await)
        }
        (_, ["api", "me"]) => ("me", Err(ApiError::MethodNotAllowed("GET, HEAD"))),
        (&Method::POST, ["api", "me", "password"]) => (
            "change_password",
            sign_in::change_password(state, context, request).await,
        ),
        (_, ["api", "me", "password"]) => {
            ("change_password", Err(ApiError::MethodNotAllowed("POST")))
        }
        (&Method::POST, ["api", "password-reset"]) => (
            "password_reset_request",
            password_reset::request_reset(state, context, request).await,
        ),
        (_, ["api", "password-reset"]) => (
            "password_reset_request",
            Err(ApiError::MethodNotAllowed("POST")),
        ),
        (&Method::POST, ["api", "password-reset", key]) => (
            "password_reset",
            password_reset::reset(state, context, key, request).await,
        ),
        (_, ["api", "password-reset", _]) => {
            ("password_reset", Err(ApiError::MethodNotAllowed("POST")))
        }
        (&Method::GET | &Method::HEAD, ["reset-password", key]) => {
            ("reset_password_page", password_reset::page(state, key))
        }
        (_, ["reset-password", _]) => (
            "reset_password_page",
            Err(ApiError::MethodNotAllowed("GET, HEAD")),
        ),
        (&Method::GET | &Method::HEAD, ["api", "openapi.json"]) => ("openapi", Ok(openapi())),
        (&Method::GET | &Method::HEAD, ["healthz"]) => {
            ("healthz", Ok(text_response(StatusCode::OK, "ok\n")))
        }
        (&Method::GET | &Method::HEAD, ["readyz"]) => ("readyz", readiness(state).await),
        (_, ["healthz" | "readyz"]) => ("health", Err(ApiError::MethodNotAllowed("GET, HEAD"))),
        (&Method::GET, ["metrics"]) => ("metrics", Ok(metrics(state).await)),
        _ => ("not_found", Err(ApiError::NotFound)),
    }
}

/// The web process's scrape: the shared gauges and its hashing queue.
async fn metrics(state: &AppState) -> Response<Body> {
    crate::metrics::set_hash_queue_depth(state.hasher.queue_depth());
    let sources = gauges::Sources {
        pool: state.pool.clone(),
        redis: state.redis.clone(),
        redis_namespace: state.config.redis.namespace.clone(),
    };
    gauges::scrape(&sources).await
}

/// The API description, embedded at build time.
fn openapi() -> Response<Body> {
    let mut response = text_response(StatusCode::OK, include_str!("openapi.json"));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Ready when Postgres and Redis both answer; a load balancer stops sending
/// traffic to a process that cannot record anything.
async fn readiness(state: &AppState) -> Result<Response<Body>, ApiError> {
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
    let status = if postgres_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "postgres": if postgres_ok { "ok" } else { "unavailable" },
        "redis": if redis_ok { "ok" } else { "unavailable" },
    });
    Ok(json_response(status, &body))
}
