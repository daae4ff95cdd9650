//! The worker's `GET /metrics` listener (`METRICS_PORT`): the worker serves
//! no other HTTP, so this listener answers only the scrape.

use std::{future::Future, net::IpAddr};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::{Request, body::Incoming};
use tokio::net::TcpListener;

use crate::{gauges, http_server};

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    sources: gauges::Sources,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |_peer: IpAddr, request: Request<Incoming>| {
        let sources = sources.clone();
        async move {
            if request.method() == Method::GET && request.uri().path() == "/metrics" {
                return gauges::scrape(&sources).await;
            }
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"only GET /metrics here\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    http_server::serve(listener, handler, shutdown).await;
}
