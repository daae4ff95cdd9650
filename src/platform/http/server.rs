//! The HTTP accept loop with Porter's connection limits and graceful drain,
//! shared by the public API and the metrics listeners.
//!
//! The server takes a bound listener and a shutdown future, so tests bind
//! port 0 and the binary binds `PORT`. What it bounds:
//!
//! - open connections (`MAX_CONNECTIONS`): one over the cap is closed at
//!   once rather than left in the kernel's backlog;
//! - open connections per client (`MAX_CONNECTIONS_PER_CLIENT`, the API
//!   only): otherwise one client holding idle connections takes every slot
//!   and nobody else is served. A client is an IPv4 address or an IPv6
//!   network, as the rate limiter keys it (`rate_limit::client_network`);
//!   trusted proxies are not capped, since every client arrives through
//!   them;
//! - idle connections (`CONNECTION_IDLE_TIMEOUT`): a connection with no
//!   request in progress is closed once idle that long. This is the
//!   first-byte timeout too: hyper-util's protocol detection waits for 24
//!   bytes before it decides between HTTP/1 and HTTP/2, and hyper's header
//!   timeout only starts once it has, so a socket that sends nothing or a
//!   few bytes would otherwise be held for ever;
//! - HTTP/2 (`HTTP2=true`; off by default, so no detection runs): at most
//!   `HTTP2_MAX_STREAMS` streams, keep-alive pings, and a maximum age after
//!   which the connection is asked to go away (GOAWAY) and drains.
//!
//! On shutdown it stops accepting, asks every connection to finish its
//! in-flight requests, and waits for them up to a deadline.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::platform::{
    config::{ConnectionLimits, Http2Limits, IpRange},
    rate_limit::client_network,
};

/// Every response body Porter sends: small and fully buffered.
pub type Body = Full<Bytes>;

/// How long in-flight requests may run after shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/2 keep-alive ping not answered within this closes the connection.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head (line and headers) read; more is `431`.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How many connections one client may hold (`MAX_CONNECTIONS_PER_CLIENT`),
/// and who counts as one client.
#[derive(Debug, Clone)]
pub struct PerClient {
    pub max_connections: usize,
    /// An IPv6 peer counts by its network of this length
    /// (`RATE_LIMIT_IPV6_PREFIX`): one holder usually has the whole /64.
    pub ipv6_prefix: u8,
    /// Peers not capped: `TRUSTED_PROXIES`, through which every client
    /// may arrive.
    pub exempt: Vec<IpRange>,
}

/// Serves `handler` on `listener` within `limits` (and `per_client`, when
/// given) until `shutdown` resolves, then lets in-flight requests finish
/// up to a deadline. The handler gets the peer's address (IPv4-mapped IPv6
/// addresses as IPv4).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    per_client: Option<PerClient>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(IpAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let builders = Builders::new(limits.http2);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let clients = per_client.map(|limit| {
        Arc::new(OpenPerClient {
            limit,
            open: Mutex::default(),
        })
    });
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
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
        let client_slot = match &clients {
            Some(clients) => match clients.admit(peer_ip(peer)) {
                Some(client_slot) => client_slot,
                None => {
                    tracing::warn!(
                        max = clients.limit.max_connections,
                        "connection refused: MAX_CONNECTIONS_PER_CLIENT open from this client"
                    );
                    drop(stream);
                    continue;
                }
            },
            None => ClientSlot(None),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection refused: MAX_CONNECTIONS open"
            );
            drop(stream);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let handler = handler.clone();
        let tracked = activity.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let busy = tracked.begin();
            let response = handler(peer_ip(peer), request);
            async move {
                let response = response.await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(stream);
        let draining = draining.clone();
        // The same care for both kinds of connection; only their types differ.
        match &builders {
            Builders::Http1(builder) => {
                let connection = builder.serve_connection(io, service);
                connections.spawn(drive(
                    connection,
                    |c| c.graceful_shutdown(),
                    activity,
                    limits,
                    draining,
                    (slot, client_slot),
                ));
            }
            Builders::Auto(builder) => {
                let connection = builder.serve_connection(io, service).into_owned();
                connections.spawn(drive(
                    connection,
                    |c| c.graceful_shutdown(),
                    activity,
                    limits,
                    draining,
                    (slot, client_slot),
                ));
            }
        }
    }
    drop(listener);
    tracing::info!("http: draining in-flight requests");
    draining.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!("http: drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("http: drain deadline passed; closing"),
    }
}

/// HTTP/1 alone unless HTTP/2 is on: then hyper-util detects the protocol
/// from the first bytes.
enum Builders {
    Http1(http1::Builder),
    Auto(auto::Builder<TokioExecutor>),
}

impl Builders {
    fn new(http2: Option<Http2Limits>) -> Self {
        let Some(http2) = http2 else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES);
            return Self::Http1(builder);
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(http2.max_streams)
            .keep_alive_interval(http2.keep_alive_interval)
            .keep_alive_timeout(HTTP2_PING_TIMEOUT)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        Self::Auto(builder)
    }
}

/// Runs one connection: closes it once idle too long, asks it to go away
/// when it is too old (HTTP/2) or the server drains, and frees its slots.
async fn drive<C, E>(
    connection: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    draining: CancellationToken,
    slots: (OwnedSemaphorePermit, ClientSlot),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = pin!(connection);
    let opened = Instant::now();
    let max_age = limits.http2.map(|h2| opened + h2.max_connection_age);
    let mut closing = false;
    loop {
        // While a request runs, look again one timeout later.
        let idle_deadline = match activity.in_flight() {
            0 => activity.idle_since() + limits.idle_timeout,
            _ => Instant::now() + limits.idle_timeout,
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                break;
            }
            () = draining.cancelled(), if !closing => {
                graceful_shutdown(connection.as_mut());
                closing = true;
            }
            () = tokio::time::sleep_until(max_age.unwrap_or(opened)), if max_age.is_some() && !closing => {
                tracing::debug!("connection too old: going away");
                graceful_shutdown(connection.as_mut());
                closing = true;
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                if activity.in_flight() == 0
                    && activity.idle_since() + limits.idle_timeout <= Instant::now()
                {
                    tracing::debug!("connection closed: idle, or sent no request");
                    break;
                }
            }
        }
    }
    drop(slots);
}

/// The open connections of each client, for [`PerClient`].
#[derive(Debug)]
struct OpenPerClient {
    limit: PerClient,
    /// By [`client_network`]; a client with none has no entry.
    open: Mutex<HashMap<String, usize>>,
}

impl OpenPerClient {
    /// A place for one more connection from `peer`, or `None` when its
    /// client holds as many as it may.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        if self.limit.exempt.iter().any(|proxy| proxy.contains(peer)) {
            return Some(ClientSlot(None));
        }
        let client = client_network(peer, self.limit.ipv6_prefix);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client.clone()).or_default();
        if *count >= self.limit.max_connections {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((self.clone(), client))))
    }
}

/// One connection's place among its client's; given back when dropped.
/// Empty for a connection no client cap counts.
#[derive(Debug)]
struct ClientSlot(Option<(Arc<OpenPerClient>, String)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some((clients, client)) = self.0.take() else {
            return;
        };
        let mut open = clients.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// Requests in progress on one connection, and since when it has had none.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when the last request ended (or the
    /// connection opened).
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn idle_since(&self) -> Instant {
        self.started + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst))
    }
}

/// A request in progress; its end restarts the idle clock.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn peer_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}
