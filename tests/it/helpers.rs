//! `spawn_app()`: the real web server and worker, in-process, on port 0,
//! against a fresh database, their own Redis namespace and a real SMTP server.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use porter::platform::{
    config::Config,
    queue::backend::QueueKeys,
    services::{AppState, Services},
};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use porter_test_support::smtp::{MailServer, ReceivedMail};

use crate::openapi;

pub const PUBLIC_BASE_URL: &str = "https://porter.example/";
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a test waits for something that should happen, before failing.
/// Generous, so that a machine busy with other builds (load 10+ on 2 cores
/// has been seen) does not fail a test; a passing test never waits it out.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh, migrated database; its name starts with `porter_test_` so the test
/// script can drop leftovers.
pub async fn fresh_database() -> (String, PgPool) {
    fresh_database_on(&server_url()).await
}

/// A fresh, migrated database on the Postgres server at `server_url`.
pub async fn fresh_database_on(server_url: &str) -> (String, PgPool) {
    let name = format!("porter_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(server_url)
        .await
        .expect("connect to Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(server_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    let database = porter::platform::config::DatabaseConfig {
        url: porter::platform::config::SecretUrl::new(url.as_str()),
        migration_url: None,
    };
    let pool = porter::platform::connections::connect_postgres(&database)
        .await
        .expect("connect to test database");
    porter::shell::startup::migrate(&pool)
        .await
        .expect("migrate");
    (url.to_string(), pool)
}

/// Knobs a test may turn before the app starts.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Settings on top of [`test_environment`]'s, as the environment
    /// variables the app reads (`ACTIVATION_TTL=1s`).
    pub settings: Vec<(&'static str, String)>,
    /// Run the worker in-process; tests that kill workers run them as
    /// processes instead ([`TestApp::spawn_process`]).
    pub run_worker: bool,
    /// Another Redis than the shared one (a private instance to break).
    pub redis_url: Option<String>,
    /// Another Postgres server than the shared one.
    pub postgres_url: Option<String>,
    /// An existing, migrated database to run against as it is (a role other
    /// than the server's superuser), instead of a fresh one.
    pub database_url: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            settings: vec![],
            run_worker: true,
            redis_url: None,
            postgres_url: None,
            database_url: None,
        }
    }
}

impl TestOptions {
    /// Sets the environment variable `name` for the app.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.settings.push((name, value.into()));
        self
    }
}

/// A budget no test reaches unless it means to.
const GENEROUS: &str = "10000/1m";

/// The environment the app under test runs with: read by `Config` in-process
/// and handed to `porter` child processes as it is, so a setting is added in
/// one place.
fn test_environment(
    database_url: &str,
    redis_url: &str,
    smtp_url: &str,
    options: &TestOptions,
) -> BTreeMap<&'static str, String> {
    let mut env: BTreeMap<&'static str, String> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        (
            "REDIS_NAMESPACE",
            format!("porter-test-{}", Uuid::new_v4().simple()),
        ),
        ("PORT", "0".into()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.into()),
        ("SMTP_URL", smtp_url.to_owned()),
        ("MAIL_FROM", "Porter <no-reply@porter.example>".into()),
        (
            "SECRET_KEY",
            porter::platform::config::SecretKey::generate().expect("the OS generator works"),
        ),
        ("ACTIVATION_TTL", "15m".into()),
        ("EMAIL_MIN_INTERVAL", "1ms".into()),
        ("EMAIL_RETRY_ATTEMPTS", "5".into()),
        ("EMAIL_RETRY_BASE", "50ms".into()),
        ("EMAIL_RETRY_CAP", "400ms".into()),
        ("WORKER_CONCURRENCY", "8".into()),
        ("HASH_CONCURRENCY", "2".into()),
        ("HASH_QUEUE_LIMIT", "1000".into()),
        // Tests must not depend on the machine's speed: a burst waits for
        // the hashing threads as long as it takes.
        ("HASH_MAX_WAIT", "60s".into()),
        ("JOB_RETENTION", "1h".into()),
        ("RATE_LIMIT_SIGN_UP_PER_IP", GENEROUS.into()),
        ("RATE_LIMIT_SIGN_UP_GLOBAL", GENEROUS.into()),
        ("RATE_LIMIT_RESEND_PER_IP", GENEROUS.into()),
        ("RATE_LIMIT_RESEND_PER_EMAIL", GENEROUS.into()),
        ("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", GENEROUS.into()),
        ("EMAIL_PER_ADDRESS", GENEROUS.into()),
        ("RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP", GENEROUS.into()),
        ("RATE_LIMIT_SIGN_IN_PER_ACCOUNT", GENEROUS.into()),
        ("RATE_LIMIT_SIGN_IN_PER_IP", GENEROUS.into()),
        // Every test's clients connect from 127.0.0.1.
        ("MAX_CONNECTIONS_PER_CLIENT", "10000".into()),
        // The tests' webhook receivers listen on 127.0.0.1.
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("WEBHOOK_RETRY_BASE", "50ms".into()),
        ("WEBHOOK_RETRY_CAP", "500ms".into()),
        ("WEBHOOK_LEASE", "3s".into()),
    ]
    .into_iter()
    .collect();
    env.extend(options.settings.iter().cloned());
    env
}

#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// The web process's metrics listener (`METRICS_PORT`).
    pub metrics_address: String,
    pub config: Config,
    /// The environment `config` was read from; child processes get it too.
    pub env: BTreeMap<&'static str, String>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub mail: MailServer,
    pub client: reqwest::Client,
    /// The web process's state, to look inside (the hasher's counters).
    pub web: Arc<AppState>,
    /// What the web process's `/metrics` listener reads the shared gauges from.
    pub gauges: porter::features::operations::gauges::Sources,
    /// Every response seen through [`TestApp::send`], checked against the
    /// OpenAPI document when the app drops.
    seen: Mutex<Vec<(String, String, TestResponse)>>,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::thread::panicking() {
            return;
        }
        let document = openapi::document();
        let seen = self.seen.lock().expect("lock");
        let violations: Vec<String> = seen
            .iter()
            .filter_map(|(method, path, response)| {
                openapi::violation(&document, method, path, response)
            })
            .collect();
        assert!(
            violations.is_empty(),
            "responses the OpenAPI document does not describe: {violations:#?}"
        );
    }
}

/// A response read in full, so tests and the OpenAPI check can both look.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Runs a worker until `shutdown`, on services of its own, as `porter
/// worker` runs beside `porter web`.
pub fn spawn_worker(config: Config, pool: PgPool, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let services = Services::connect(config, pool).await?;
        porter::shell::startup::run_worker(&services, shutdown).await
    });
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    // `RUST_LOG=porter=debug` shows the app's logs for a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (database_url, pool) = match &options.database_url {
        Some(url) => {
            let database = porter::platform::config::DatabaseConfig {
                url: porter::platform::config::SecretUrl::new(url.as_str()),
                migration_url: None,
            };
            let pool = porter::platform::connections::connect_postgres(&database)
                .await
                .expect("connect to the given database");
            (url.clone(), pool)
        }
        None => fresh_database_on(&options.postgres_url.clone().unwrap_or_else(server_url)).await,
    };
    let mail = MailServer::start().await;
    let redis_url = options.redis_url.clone().unwrap_or_else(redis_url);
    let env = test_environment(&database_url, &redis_url, &mail.url(), &options);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration");
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let metrics_address = format!("http://{}", metrics.local_addr().expect("local address"));
    let services = Services::connect(config.clone(), pool.clone())
        .await
        .expect("services");
    let web = Arc::new(porter::platform::services::web_state(&services).expect("web state"));
    let listeners = porter::shell::startup::WebListeners {
        api: listener,
        metrics: Some(metrics),
    };
    let gauges = porter::shell::startup::gauge_sources(&services);
    tokio::spawn(porter::shell::startup::serve_web(
        web.clone(),
        listeners,
        gauges.clone(),
        shutdown.clone(),
    ));
    if options.run_worker {
        spawn_worker(config.clone(), pool.clone(), shutdown.clone());
    }
    let redis = porter::platform::connections::connect_redis(&config.redis.url)
        .await
        .expect("connect to Redis");
    TestApp {
        address,
        metrics_address,
        config,
        env,
        pool,
        redis,
        mail,
        client: http_client(),
        web,
        gauges,
        seen: Mutex::new(Vec::new()),
        shutdown,
    }
}

/// Polls `check` until it yields a value or [`DEADLINE`] passes.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// The tests' HTTP client: a request ends within two minutes (the longest
/// long poll is 30 s), so a server that never answers fails its test
/// instead of hanging the run.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

/// Polls `check` until it yields a value or `limit` passes.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A unique, valid sign-up body.
pub fn new_user() -> Value {
    let id = &Uuid::new_v4().simple().to_string()[..10];
    json!({
        "username": format!("user_{id}"),
        "email": format!("user.{id}@example.com"),
        "password": PASSWORD,
    })
}

impl TestApp {
    /// Starts `porter <role>` as a separate process with this app's
    /// configuration, for tests that kill or signal processes.
    pub fn spawn_process(&self, role: &str, port: u16) -> tokio::process::Child {
        self.spawn_process_with(role, port, &[])
    }

    /// [`Self::spawn_process`] with some variables set otherwise.
    pub fn spawn_process_with(
        &self,
        role: &str,
        port: u16,
        overrides: &[(&str, String)],
    ) -> tokio::process::Child {
        self.porter(&[role])
            .env("PORT", port.to_string())
            .envs(overrides.iter().map(|(name, value)| (*name, value)))
            .kill_on_drop(true)
            .spawn()
            .expect("start a porter process")
    }

    /// `porter <args>` with this app's configuration and nothing else of the
    /// test's environment.
    pub fn porter(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_porter"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends `request`, reads the whole response and records it.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let request = request.build().expect("a valid request");
        let (method, path) = (
            request.method().to_string(),
            request.url().path().to_owned(),
        );
        let response = self.client.execute(request).await.expect("request sent");
        let response = TestResponse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body read").to_vec(),
        };
        self.seen
            .lock()
            .expect("lock")
            .push((method, path, response.clone()));
        response
    }

    /// Starts an in-process worker for an app spawned without one; it stops
    /// with the app.
    pub fn start_worker(&self) {
        spawn_worker(
            self.config.clone(),
            self.pool.clone(),
            self.shutdown.clone(),
        );
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn sign_up(&self, body: &Value) -> TestResponse {
        self.post_json("/api/users", body).await
    }

    pub async fn resend(&self, email: &str) -> TestResponse {
        self.post_json("/api/activate-account/resend", &json!({ "email": email }))
            .await
    }

    pub async fn activation_page(&self, key: &str) -> TestResponse {
        self.get(&format!("/activate/{key}")).await
    }

    pub async fn activate(&self, key: &str) -> TestResponse {
        self.send(
            self.client
                .post(self.url(&format!("/api/activate-account/{key}"))),
        )
        .await
    }

    pub async fn sign_in(&self, login: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/sessions",
            &json!({ "login": login, "password": password }),
        )
        .await
    }

    /// Signs in and returns the session token.
    pub async fn token(&self, login: &str, password: &str) -> String {
        let response = self.sign_in(login, password).await;
        assert_eq!(response.status(), 201, "{}", response.text());
        response.json()["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    pub async fn me(&self, token: &str) -> TestResponse {
        self.send(self.client.get(self.url("/api/me")).bearer_auth(token))
            .await
    }

    pub async fn sign_out(&self, token: &str) -> TestResponse {
        self.send(
            self.client
                .delete(self.url("/api/sessions/current"))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn sign_out_everywhere(&self, token: &str) -> TestResponse {
        self.send(
            self.client
                .delete(self.url("/api/sessions"))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> TestResponse {
        self.send(
            self.client
                .post(self.url("/api/me/password"))
                .bearer_auth(token)
                .json(&json!({ "current_password": current, "new_password": new })),
        )
        .await
    }

    pub async fn request_reset(&self, email: &str) -> TestResponse {
        self.post_json("/api/password-reset", &json!({ "email": email }))
            .await
    }

    pub async fn reset_password(&self, key: &str, password: &str) -> TestResponse {
        self.post_json(
            &format!("/api/password-reset/{key}"),
            &json!({ "password": password }),
        )
        .await
    }

    /// Signs a new user up and confirms the emailed link; returns the
    /// sign-up body (username, email, password).
    pub async fn active_user(&self) -> Value {
        let user = new_user();
        assert_eq!(self.sign_up(&user).await.status(), 202);
        let email = user["email"].as_str().expect("email");
        let key = self.wait_for_mail_to(email, 1).await[0].activation_key();
        assert_eq!(self.activate(&key).await.status(), 200);
        user
    }

    /// Waits until exactly `count` messages to `address` have arrived, and
    /// returns them in order.
    pub async fn wait_for_mail_to(&self, address: &str, count: usize) -> Vec<ReceivedMail> {
        let to = |mail: &ReceivedMail| mail.to.iter().any(|to| to.eq_ignore_ascii_case(address));
        let received = eventually(&format!("{count} emails to {address}"), || async {
            let received: Vec<ReceivedMail> = self.mail.received().into_iter().filter(to).collect();
            (received.len() >= count).then_some(received)
        })
        .await;
        assert_eq!(
            received.len(),
            count,
            "more emails to {address} than expected"
        );
        received
    }

    /// Waits until the email queue has run dry: nothing waiting, scheduled
    /// or running, and at least `done` jobs finished.
    pub async fn wait_for_queue_to_drain(&self, done: i64) {
        let keys = self.queue_keys();
        eventually("the email queue to drain", || async {
            let mut redis = self.redis.clone();
            let mut pipe = redis::pipe();
            pipe.cmd("LLEN")
                .arg(keys.active())
                .cmd("ZCARD")
                .arg(keys.scheduled())
                .cmd("SCARD")
                .arg(keys.done());
            let (active, scheduled, finished): (i64, i64, i64) =
                pipe.query_async(&mut redis).await.ok()?;
            (active == 0 && scheduled == 0 && finished >= done).then_some(())
        })
        .await;
    }

    /// Waits until exactly `count` messages have arrived, and returns them.
    pub async fn wait_for_mail(&self, count: usize) -> Vec<ReceivedMail> {
        let received = eventually(&format!("{count} emails"), || async {
            let received = self.mail.received();
            (received.len() >= count).then_some(received)
        })
        .await;
        assert_eq!(received.len(), count, "more emails than expected");
        received
    }

    pub async fn count_events(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// The email queue's Redis keys, as Porter's queue backend names them.
    pub fn queue_keys(&self) -> QueueKeys {
        QueueKeys::email(&self.config.redis.namespace)
    }

    pub async fn total_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// The read model's status of the newest registration with `email`, once
    /// projected.
    pub async fn projected_status(&self, email: &str) -> Option<String> {
        sqlx::query_scalar(
            "SELECT status FROM accounts WHERE email = $1 ORDER BY registered_at DESC LIMIT 1",
        )
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .expect("query accounts")
    }

    /// Every key in this app's Redis namespace with its contents, flattened.
    pub async fn redis_dump(&self) -> Vec<(String, String)> {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.config.redis.namespace))
            .query_async(&mut redis)
            .await
            .expect("list keys");
        let mut dump = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .expect("type");
            let read = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&key).clone(),
                "hash" => redis::cmd("HGETALL").arg(&key).clone(),
                "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
                "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
                "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
                _ => continue,
            };
            let contents: Vec<String> = read.query_async(&mut redis).await.unwrap_or_default();
            dump.push((key, contents.join(" ")));
        }
        dump
    }

    /// How many jobs sit in the email queue's dead-letter set.
    pub async fn dead_letters(&self) -> i64 {
        redis::cmd("SCARD")
            .arg(self.queue_keys().dead())
            .query_async(&mut self.redis.clone())
            .await
            .expect("SCARD")
    }
}

/// A log sink for one test: everything the app logs on the installing
/// thread, as JSON lines. Use it on a current-thread runtime so the app's
/// tasks log there too.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("trace")
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("UTF-8 logs")
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
