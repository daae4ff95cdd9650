//! The HTTP API: a thin hyper router that validates, records and enqueues.
//!
//! Inside `web` the router (`routes`) sits above the handlers (`signup`,
//! `address_request`, `activation`, `sign_in`, `password_reset`,
//! `admin_accounts`, `admin_webhooks`, `feed`, `service`, `dev_mail`), which
//! sit above what they share (`context`, `openapi`, `request`,
//! `request_locale`, `response`); a handler
//! never imports the router or another handler. `tests/it/layers.rs` holds
//! both rules.

use std::{future::Future, net::IpAddr, sync::Arc};

use hyper::{Request, body::Incoming};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    commands::Commands,
    config::Config,
    gauges,
    hashing::PasswordHasher,
    http_server,
    link_keys::LinkKeys,
    mail::{DevMailbox, Templates},
    queue::EmailQueue,
    rate_limit::RateLimiter,
    sessions::Sessions,
};

mod activation;
mod address_request;
mod admin_accounts;
mod admin_webhooks;
mod context;
mod dev_mail;
mod feed;
pub mod openapi;
mod password_reset;
mod request;
mod request_locale;
pub mod response;
mod routes;
mod service;
mod sign_in;
mod signup;

pub use routes::{OPENAPI_TEXT, ROUTES, Route, openapi_document};

/// Everything a request handler may use; shared by all connections.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub commands: Commands,
    pub activation_keys: LinkKeys,
    pub reset_keys: LinkKeys,
    pub sessions: Sessions,
    /// For address requests, which the web process pushes without a command.
    pub email_queue: EmailQueue,
    pub templates: Templates,
    pub hasher: PasswordHasher,
    pub rate_limiter: RateLimiter,
    /// What the metrics listener reads shared gauges from.
    pub gauges: gauges::Sources,
    /// `porter dev` only: the emails its worker sent, served on `/dev/mail`.
    pub dev_mailbox: Option<DevMailbox>,
}

/// Serves the API on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.config.web.connections;
    let per_client = http_server::PerClient {
        max_connections: state.config.web.max_connections_per_client,
        ipv6_prefix: state.config.limits.ipv6_prefix,
        exempt: state.config.web.trusted_proxies.clone(),
    };
    let handler = move |peer: IpAddr, request: Request<Incoming>| {
        let state = state.clone();
        async move { routes::handle(&state, peer, request).await }
    };
    http_server::serve(listener, limits, Some(per_client), handler, shutdown).await;
}

/// Serves `GET /metrics` on its own listener (`METRICS_PORT`), never on
/// the public port: the shared gauges and this process's hashing queue.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let sources = state.gauges.clone();
    let before_scrape = move || crate::metrics::set_hash_queue_depth(state.hasher.queue_depth());
    gauges::serve(listener, sources, before_scrape, shutdown).await;
}
