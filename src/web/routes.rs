//! The router: a `match` on method and path, plus what every request gets
//! (a request id, a tracing span, standard headers, one log line).

use std::{net::IpAddr, pin::pin, time::Instant};

use http::{Method, Response, StatusCode};
use hyper::{Request, body::Incoming};
use porter_jobs::AddressAction;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{
    AppState, activation, address_request, admin,
    context::RequestContext,
    dev_mail, password_reset, request,
    response::{ApiError, Body, add_standard_headers, json_response, text_response},
    sign_in, signup,
};

pub async fn handle(state: &AppState, peer: IpAddr, request: Request<Incoming>) -> Response<Body> {
    let context = RequestContext::new(
        Uuid::now_v7().to_string(),
        request::client_ip(peer, request.headers(), &state.config.web.trusted_proxies),
        &state.config.secret_key,
    );
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
    let hsts = state.config.mail.public_base_url.scheme() == "https";
    add_standard_headers(&mut response, &context.http_request_id, hsts);
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

/// Routes the request within `HANDLER_DEADLINE`. A handler still running
/// then gets `503` and its unfinished work is dropped (an open transaction
/// rolls back), unless it has begun committing events
/// ([`RequestContext::commit_begins`]): dropping it then could answer `503`
/// for a sign-up that happened, so it is left to finish and answer.
async fn dispatch(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Handled {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return ("uri_too_long", Err(ApiError::UriTooLong));
    }
    let mut handler = pin!(route(state, context, request));
    tokio::select! {
        handled = &mut handler => handled,
        () = tokio::time::sleep(state.config.web.handler_deadline) => {
            if !context.committing() {
                return (
                    "deadline",
                    Err(ApiError::Unavailable("handler deadline passed".into())),
                );
            }
            tracing::warn!("handler deadline passed while committing; letting it finish");
            handler.await
        }
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
        (&Method::GET | &Method::HEAD, ["activate", key]) => (
            "activation_page",
            activation::page(state, key, request.headers()).await,
        ),
        (_, ["activate", _]) => (
            "activation_page",
            Err(ApiError::MethodNotAllowed("GET, HEAD")),
        ),
        (&Method::POST, ["api", "activate-account", "resend"]) => (
            "resend",
            address_request::accept(state, context, request, AddressAction::Resend).await,
        ),
        (&Method::POST, ["api", "activate-account", key]) => (
            "activate",
            activation::activate(state, context, key, request).await,
        ),
        (_, ["api", "activate-account", _]) => {
            ("activate", Err(ApiError::MethodNotAllowed("POST")))
        }
        (&Method::POST, ["api", "activate-account", key, "cancel"]) => (
            "cancel_registration",
            activation::cancel(state, context, key, request).await,
        ),
        (_, ["api", "activate-account", _, "cancel"]) => (
            "cancel_registration",
            Err(ApiError::MethodNotAllowed("POST")),
        ),
        (_, ["api", "admin", path @ ..]) => admin::handle(state, context, request, path).await,
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
            address_request::accept(state, context, request, AddressAction::PasswordReset).await,
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
        (&Method::GET | &Method::HEAD, ["reset-password", key]) => (
            "reset_password_page",
            password_reset::page(state, key, request.headers()).await,
        ),
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
        // `porter dev` only: the state has a mailbox nowhere else.
        (&Method::GET | &Method::HEAD, ["dev", "mail", rest @ ..]) => match &state.dev_mailbox {
            Some(mailbox) => ("dev_mail", dev_mail::serve(mailbox, rest)),
            None => ("not_found", Err(ApiError::NotFound)),
        },
        (_, ["dev", "mail", ..]) => ("dev_mail", Err(ApiError::MethodNotAllowed("GET, HEAD"))),
        _ => ("not_found", Err(ApiError::NotFound)),
    }
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
/// traffic to a process that cannot record anything. The answer says ready
/// or not, never which dependency failed (that is in the log).
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
    if !postgres_ok {
        tracing::warn!("not ready: Postgres does not answer");
    }
    if !redis_ok {
        tracing::warn!("not ready: Redis does not answer");
    }
    let (status, ready) = if postgres_ok && redis_ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    Ok(json_response(
        status,
        &serde_json::json!({ "status": ready }),
    ))
}
