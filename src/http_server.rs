//! The HTTP accept loop with Porter's connection limits and graceful drain,
//! shared by the public API (`web`) and the worker's metrics listener.
//!
//! The server takes a bound listener and a shutdown future, so tests bind
//! port 0 and the binary binds `PORT`. On shutdown it stops accepting and
//! lets in-flight requests finish, up to a deadline.

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;

/// Every response body Porter sends: small and fully buffered.
pub type Body = Full<Bytes>;

/// How long in-flight requests may run after shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish up to a deadline. The handler gets the peer's
/// address (IPv4-mapped IPv6 addresses as IPv4).
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(IpAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = handler(peer_ip(peer), request);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("http: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("http: drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("http: drain deadline passed; closing"),
    }
}

fn peer_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}
