//! The web process: the route table (`routes`) that puts each feature's
//! handlers behind their paths and from which 404, 405, metric labels and the
//! OpenAPI document follow, the service routes (`service`: health, readiness,
//! the document), and the listeners for the API and `/metrics`.

use std::{future::Future, net::IpAddr, sync::Arc};

use hyper::{Request, body::Incoming};
use tokio::net::TcpListener;

use crate::{
    features::operations::gauges,
    platform::{http::server, services::AppState},
};

mod routes;
mod service;

pub use routes::{OPENAPI_TEXT, ROUTES, Route, openapi_document};

/// Serves the API on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.config.web.connections;
    let per_client = server::PerClient {
        max_connections: state.config.web.max_connections_per_client,
        ipv6_prefix: state.config.limits.ipv6_prefix,
        exempt: state.config.web.trusted_proxies.clone(),
    };
    let handler = move |peer: IpAddr, request: Request<Incoming>| {
        let state = state.clone();
        async move { routes::handle(&state, peer, request).await }
    };
    server::serve(listener, limits, Some(per_client), handler, shutdown).await;
}

/// Serves `GET /metrics` on its own listener (`METRICS_PORT`), never on
/// the public port: the shared gauges and this process's hashing queue.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    sources: gauges::Sources,
    shutdown: impl Future<Output = ()>,
) {
    let before_scrape =
        move || crate::platform::metrics::set_hash_queue_depth(state.hasher.queue_depth());
    gauges::serve(listener, sources, before_scrape, shutdown).await;
}
