//! Load against Porter's HTTP API on 127.0.0.1: closed loops (N clients, each
//! sending its next request when the last one answered) and open loops (a
//! fixed arrival rate, whatever the answers), both bounded in count and time.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

/// A request that takes longer than this is recorded as a transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The password every bench user signs up with: long enough, not common.
const PASSWORD: &str = "porter bench passphrase, not a common one";

/// One finished request.
#[derive(Debug, Clone)]
pub struct Sample<T> {
    pub latency: Duration,
    pub finished: Instant,
    pub value: T,
}

/// Everything a loop recorded, and how long it ran.
#[derive(Debug)]
pub struct Run<T> {
    pub samples: Vec<Sample<T>>,
    pub elapsed: Duration,
}

impl<T> Run<T> {
    pub fn latencies(&self, keep: impl Fn(&T) -> bool) -> Vec<Duration> {
        self.samples
            .iter()
            .filter(|s| keep(&s.value))
            .map(|s| s.latency)
            .collect()
    }

    pub fn count(&self, keep: impl Fn(&T) -> bool) -> usize {
        self.samples.iter().filter(|s| keep(&s.value)).count()
    }

    pub fn rate(&self, keep: impl Fn(&T) -> bool) -> f64 {
        self.count(keep) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// `concurrency` clients, each sending its next request as soon as the
/// previous one is answered, until `duration` has passed or `max_requests`
/// were started. `op` receives a request's sequence number.
pub async fn closed_loop<T, F, Fut>(
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    op: F,
) -> Run<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let sequence = next.fetch_add(1, Ordering::Relaxed);
                    if sequence >= max_requests {
                        break;
                    }
                    let sent = Instant::now();
                    let value = op(sequence).await;
                    let finished = Instant::now();
                    samples.push(Sample {
                        latency: finished - sent,
                        finished,
                        value,
                    });
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for client in clients {
        // A panicking client loses its samples; the counts will show it.
        if let Ok(mut client_samples) = client.await {
            samples.append(&mut client_samples);
        }
    }
    Run {
        samples,
        elapsed: started.elapsed(),
    }
}

/// `count` requests sent at `rate` per second, each at its scheduled time
/// whether or not earlier ones have been answered.
pub async fn open_loop<T, F, Fut>(rate: f64, count: u64, op: F) -> Run<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let started = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(count as usize);
    for sequence in 0..count {
        tokio::time::sleep_until(started + Duration::from_secs_f64(sequence as f64 / rate)).await;
        let request = op(sequence);
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let value = request.await;
            let finished = Instant::now();
            Sample {
                latency: finished - sent,
                finished,
                value,
            }
        }));
    }
    let mut samples = Vec::with_capacity(requests.len());
    for request in requests {
        if let Ok(sample) = request.await {
            samples.push(sample);
        }
    }
    Run {
        samples,
        elapsed: started.elapsed(),
    }
}

/// The HTTP status of a request, or why it got none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Code(u16),
    Transport(String),
}

impl Status {
    pub fn is(&self, code: u16) -> bool {
        *self == Self::Code(code)
    }
}

/// A sign-up and the address it used.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub status: Status,
    pub email: String,
}

impl SignUp {
    pub fn accepted(&self) -> bool {
        self.status.is(202)
    }
}

/// An activation: its status and whether Porter said it was the first one.
#[derive(Debug, Clone)]
pub struct Activation {
    pub status: Status,
    pub first: bool,
}

impl Activation {
    pub fn activated(&self) -> bool {
        self.status.is(200) && self.first
    }
}

/// A sign-in and the token it got.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub status: Status,
    pub token: Option<String>,
}

impl SignIn {
    pub fn signed_in(&self) -> bool {
        self.status.is(201)
    }
}

/// Porter's API, for a load generator: one pooled HTTP client.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    /// Makes usernames and addresses unique across runs sharing a database.
    tag: String,
    users: Arc<AtomicU64>,
}

impl Api {
    pub fn new(base: &str, tag: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            tag: tag.to_owned(),
            users: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A username and address no one has used.
    pub fn new_user(&self) -> (String, String) {
        let n = self.users.fetch_add(1, Ordering::Relaxed);
        (
            format!("b{}_{n}", self.tag),
            format!("u{n}.{}@bench.example.com", self.tag),
        )
    }

    pub async fn ready(&self) -> bool {
        matches!(
            self.client.get(format!("{}/readyz", self.base)).send().await,
            Ok(response) if response.status().as_u16() == 200
        )
    }

    /// Signs up a new, unique user.
    pub async fn sign_up(&self) -> SignUp {
        let (username, email) = self.new_user();
        let body = json!({ "username": username, "email": email, "password": PASSWORD });
        let status = status_of(
            self.client
                .post(format!("{}/api/users", self.base))
                .json(&body),
        )
        .await;
        SignUp { status, email }
    }

    /// Asks for a new activation link for `email`.
    pub async fn resend(&self, email: &str) -> Status {
        self.post_email("/api/activate-account/resend", email).await
    }

    /// POSTs `{"email": email}` to `path`.
    async fn post_email(&self, path: &str, email: &str) -> Status {
        status_of(
            self.client
                .post(format!("{}{path}", self.base))
                .json(&json!({ "email": email })),
        )
        .await
    }

    /// Signs in with an address and the password every bench user has.
    pub async fn sign_in(&self, email: &str) -> SignIn {
        let body = json!({ "login": email, "password": PASSWORD });
        match self
            .client
            .post(format!("{}/api/sessions", self.base))
            .json(&body)
            .send()
            .await
        {
            Ok(response) => {
                let code = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                SignIn {
                    status: Status::Code(code),
                    token: body["token"].as_str().map(str::to_owned),
                }
            }
            Err(error) => SignIn {
                status: Status::Transport(error.to_string()),
                token: None,
            },
        }
    }

    /// Asks for a password reset of `email`.
    pub async fn request_reset(&self, email: &str) -> Status {
        self.post_email("/api/password-reset", email).await
    }

    /// Reads the signed-in account with `token`.
    pub async fn me(&self, token: &str) -> Status {
        status_of(
            self.client
                .get(format!("{}/api/me", self.base))
                .bearer_auth(token),
        )
        .await
    }

    /// Confirms an activation key, as the page's button does (JSON answer).
    pub async fn activate(&self, key: &str) -> Activation {
        match self
            .client
            .post(format!("{}/api/activate-account/{key}", self.base))
            .header("accept", "application/json")
            .send()
            .await
        {
            Ok(response) => {
                let code = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                Activation {
                    status: Status::Code(code),
                    first: body["already_active"] == json!(false),
                }
            }
            Err(error) => Activation {
                status: Status::Transport(error.to_string()),
                first: false,
            },
        }
    }
}

/// Sends `request` and reads the whole answer; only its status counts.
async fn status_of(request: reqwest::RequestBuilder) -> Status {
    match request.send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            // Read the body so the connection goes back to the pool.
            let _ = response.bytes().await;
            Status::Code(code)
        }
        Err(error) => Status::Transport(error.to_string()),
    }
}
