//! The router: one route table ([`ROUTES`]: methods, path template, name,
//! handler) and what every request gets (a request id, a tracing span,
//! standard headers, one log line).
//!
//! Each route is written once, here: the table decides the handler, the
//! `405` with its `Allow` header for a path served under other methods, the
//! `404` for anything else, and the route name that the metrics and the log
//! line carry. Each row carries its operation ([`Operation`]), from which
//! the OpenAPI document is assembled ([`openapi_document`]);
//! `tests/it/openapi.rs` fails for a row without one. Two rules stand
//! beside the table: every path under
//! `/api/admin/` needs an API key before it is even looked up, and the
//! `/dev/mail` routes are served only in `porter dev`.

use std::{net::IpAddr, pin::pin, time::Instant};

use futures::future::BoxFuture;
use http::{Method, Response};
use hyper::{Request, body::Incoming};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    features::admin,
    platform::{
        http::{
            context::RequestContext,
            openapi::Operation,
            request,
            response::{ApiError, Body, add_standard_headers},
        },
        services::AppState,
    },
};

mod table;

pub use table::{OPENAPI_TEXT, ROUTES, openapi_document};

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
    crate::platform::metrics::record_request(route, response.status(), started.elapsed());
    // The route name, never the raw path: paths carry link keys.
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
                    Err(ApiError::Unavailable(anyhow::anyhow!("handler deadline passed"))),
                );
            }
            tracing::warn!("handler deadline passed while committing; letting it finish");
            handler.await
        }
    }
}

/// Every path below these segments is the admin API: its API key is checked
/// before the path is looked up, so nothing there answers without one.
const ADMIN_PREFIX: [&str; 2] = ["api", "admin"];

/// Routes whose template starts with this are served only with a dev
/// mailbox (`porter dev`); elsewhere they are `404` (and still `405` for a
/// method they never serve).
const DEV_MAIL_PREFIX: &str = "/dev/mail";

/// Looks the request up in [`ROUTES`] and runs what it finds.
async fn route(state: &AppState, context: &RequestContext, request: Request<Incoming>) -> Handled {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let admin_context;
    let context = if segments.starts_with(&ADMIN_PREFIX) {
        match admin::http::authorize(state, context, &request).await {
            Ok(acting) => {
                admin_context = acting;
                &admin_context
            }
            Err(error) => return ("admin_unauthorized", Err(error)),
        }
    } else {
        context
    };
    match look_up(request.method(), &segments) {
        Lookup::Found(route)
            if route.path.starts_with(DEV_MAIL_PREFIX) && state.dev_mailbox.is_none() =>
        {
            ("not_found", Err(ApiError::NotFound))
        }
        Lookup::Found(route) => {
            let params = Params {
                template: route.path,
                segments: &segments,
            };
            (
                route.name,
                (route.handler)(state, context, request, params).await,
            )
        }
        Lookup::WrongMethod { name, allow } => (name, Err(ApiError::MethodNotAllowed(allow))),
        Lookup::NotFound => ("not_found", Err(ApiError::NotFound)),
    }
}

/// What [`look_up`] found for a method and path.
enum Lookup {
    Found(&'static Route),
    /// Rows match the path but none serves the method: `name` is the first
    /// such row's, `allow` the methods they serve.
    WrongMethod {
        name: &'static str,
        allow: String,
    },
    NotFound,
}

/// The row for `method` at `segments`; where several templates fit, the one
/// with fewer `{param}` segments wins (`/resend` over `/{key}`).
fn look_up(method: &Method, segments: &[&str]) -> Lookup {
    let fitting: Vec<&'static Route> = ROUTES.iter().filter(|route| route.fits(segments)).collect();
    let serving = fitting
        .iter()
        .filter(|route| route.methods.contains(method))
        .min_by_key(|route| route.parameter_count());
    if let Some(route) = serving {
        return Lookup::Found(route);
    }
    let Some(first) = fitting.first() else {
        return Lookup::NotFound;
    };
    let mut allowed: Vec<&Method> = fitting.iter().flat_map(|route| route.methods).collect();
    allowed.sort_by_key(|method| {
        ALLOW_ORDER
            .iter()
            .position(|listed| listed == *method)
            .unwrap_or(ALLOW_ORDER.len())
    });
    allowed.dedup();
    let allow = allowed
        .iter()
        .map(|method| method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Lookup::WrongMethod {
        name: first.name,
        allow,
    }
}

/// The order methods are listed in `Allow`: reads, then writes.
const ALLOW_ORDER: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A handler in the table: everything it may need, the path's `{param}`
/// values in `Params`.
type Handler = for<'a> fn(
    &'a AppState,
    &'a RequestContext,
    Request<Incoming>,
    Params<'a>,
) -> BoxFuture<'a, Result<Response<Body>, ApiError>>;

/// The `{param}` segments of the path a route matched.
#[derive(Clone, Copy)]
struct Params<'a> {
    template: &'static str,
    segments: &'a [&'a str],
}

impl<'a> Params<'a> {
    /// The path's segment where the template has `{name}`.
    ///
    /// # Panics
    /// When the route's template has no `{name}`: the table and its
    /// handler disagree, which every test of the route shows.
    fn get(&self, name: &str) -> &'a str {
        template_segments(self.template)
            .zip(self.segments)
            .find(|(part, _)| {
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) == Some(name)
            })
            .map(|(_, segment)| *segment)
            .unwrap_or_else(|| panic!("{} has no {{{name}}}", self.template))
    }
}

fn template_segments(template: &str) -> std::str::Split<'_, char> {
    template.trim_start_matches('/').split('/')
}

/// One row of [`ROUTES`].
#[derive(Debug)]
pub struct Route {
    methods: &'static [Method],
    path: &'static str,
    name: &'static str,
    /// `None` only for a path the document leaves out ([`undocumented`]).
    operation: Option<&'static Operation>,
    handler: Handler,
}

impl Route {
    /// The methods the route serves (`HEAD` beside `GET` where it is served).
    pub fn methods(&self) -> &'static [Method] {
        self.methods
    }

    /// The path template: literal segments and `{param}` segments.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The route's name: the `route` label of the request metrics and the
    /// log line's `route` field.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The operation the document shows for the row.
    pub fn operation(&self) -> Option<&'static Operation> {
        self.operation
    }

    fn fits(&self, segments: &[&str]) -> bool {
        let mut parts = template_segments(self.path);
        let fits = segments.iter().all(|segment| {
            parts
                .next()
                .is_some_and(|part| part.starts_with('{') || part == *segment)
        });
        fits && parts.next().is_none()
    }

    fn parameter_count(&self) -> usize {
        template_segments(self.path)
            .filter(|part| part.starts_with('{'))
            .count()
    }
}
