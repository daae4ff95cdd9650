//! A real webhook receiver, in-process on a loopback port: what the tests
//! deliver to and the bench measures against.
//!
//! It checks every delivery's `webhook-signature` with its own HMAC-SHA256
//! code, written from the Standard Webhooks specification and not from
//! Porter's, against every secret it was told, and records which one
//! matched. It can be told to answer with another status (a `500` outage,
//! a `410`) or slowly, so delivery faults are caused for real. Every
//! attempt is recorded, answered `2xx` or not, with the instant its body
//! was read.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Sha256;
use tokio::net::TcpListener;

/// One attempt as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    /// Which of the receiver's secrets (by index) signed it; empty for a
    /// forgery.
    pub verified_by: Vec<usize>,
    /// The status the receiver answered.
    pub answered: u16,
    pub at: Instant,
}

impl Delivery {
    /// Whether the receiver answered `2xx`.
    pub fn was_delivered(&self) -> bool {
        (200..300).contains(&self.answered)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Debug, Default)]
struct State {
    secrets: Vec<String>,
    attempts: Vec<Delivery>,
    status: Option<u16>,
    delay: Duration,
}

/// The receiver; clones share it.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl WebhookReceiver {
    /// Starts a receiver on 127.0.0.1 that answers `204`.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts a receiver on 127.0.0.1:`port` (0 for any free port).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind a loopback port");
        let receiver = Self {
            address: listener.local_addr().expect("local address"),
            state: Arc::default(),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let receiver = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.receive(request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/porter", self.address)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("receiver state")
    }

    /// Checks signatures with `secret` too (the `whsec_…` text).
    pub fn trust(&self, secret: &str) {
        self.state().secrets.push(secret.to_owned());
    }

    /// Answers every attempt with `status` from now on; `None` for `204`.
    pub fn answer(&self, status: Option<u16>) {
        self.state().status = status;
    }

    /// Waits this long before answering.
    pub fn slow_down(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Every attempt so far, in arrival order.
    pub fn attempts(&self) -> Vec<Delivery> {
        self.state().attempts.clone()
    }

    /// The attempts answered `2xx`, in arrival order.
    pub fn delivered(&self) -> Vec<Delivery> {
        self.state()
            .attempts
            .iter()
            .filter(|d| d.was_delivered())
            .cloned()
            .collect()
    }

    /// How many attempts were answered `2xx`.
    pub fn delivered_count(&self) -> usize {
        self.state()
            .attempts
            .iter()
            .filter(|d| d.was_delivered())
            .count()
    }

    async fn receive(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (id, timestamp, signature) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        );
        let content_type = header("content-type");
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let at = Instant::now();
        let (delay, status) = {
            let state = self.state();
            (state.delay, state.status.unwrap_or(204))
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let verified_by = {
            let state = self.state();
            state
                .secrets
                .iter()
                .enumerate()
                .filter(|(_, secret)| {
                    let expected = expected_signature(secret, &id, &timestamp, &body);
                    signature.split(' ').any(|entry| entry == expected)
                })
                .map(|(index, _)| index)
                .collect()
        };
        self.state().attempts.push(Delivery {
            id,
            timestamp,
            signature,
            content_type,
            body,
            verified_by,
            answered: status,
            at,
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
        response
    }
}

/// `v1,` and base64(HMAC-SHA256(base64-decoded secret, "id.timestamp.body")),
/// as the Standard Webhooks specification defines it.
pub fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_receivers_check_reproduces_the_specifications_test_vector() {
        assert_eq!(
            super::expected_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
