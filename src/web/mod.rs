//! The HTTP API: a thin hyper router that validates, records and enqueues.
//!
//! Inside `web` the router (`routes`) sits above the handlers (`signup`,
//! `resend`, `activation`, `sign_in`, `password_reset`), which sit above what they share (`context`,
//! `request`, `response`, `rate_limit`); a handler never imports the router
//! or another handler. `tests/it/layers.rs` holds both rules.

use std::{future::Future, net::IpAddr, sync::Arc};

use hyper::{Request, body::Incoming};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    commands::Commands, config::Config, hashing::PasswordHasher, http_server, keys::LinkKeys,
    mail::Templates, queue::EmailQueue, sessions::Sessions,
};

mod activation;
mod context;
mod password_reset;
mod rate_limit;
mod request;
mod resend;
pub mod response;
mod routes;
mod sign_in;
mod signup;

pub use rate_limit::RateLimiter;

/// Everything a request handler may use; shared by all connections.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub commands: Commands,
    /// Activation keys.
    pub keys: LinkKeys,
    /// Password reset keys.
    pub reset_keys: LinkKeys,
    pub sessions: Sessions,
    /// For address requests, which the web process pushes without a command.
    pub email_queue: EmailQueue,
    pub templates: Templates,
    pub hasher: PasswordHasher,
    pub rate_limiter: RateLimiter,
}

/// Serves the API on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |peer: IpAddr, request: Request<Incoming>| {
        let state = state.clone();
        async move { routes::handle(&state, peer, request).await }
    };
    http_server::serve(listener, handler, shutdown).await;
}
