//! The worker's `GET /metrics` listener (`METRICS_PORT`): the shared gauges;
//! the worker's own counters are recorded where its work happens.

use std::future::Future;

use tokio::net::TcpListener;

use crate::features::operations::gauges;

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    sources: gauges::Sources,
    shutdown: impl Future<Output = ()>,
) {
    gauges::serve(listener, sources, || {}, shutdown).await;
}
