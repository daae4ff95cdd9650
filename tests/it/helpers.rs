//! `spawn_app()`: the real web server and worker, in-process, on port 0,
//! against a fresh database, their own Redis namespace and a real SMTP server.

use std::{future::Future, time::Duration};

use porter::config::{Config, LogFormat, RetryPolicy};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::smtp::{MailServer, ReceivedMail};

pub const PUBLIC_BASE_URL: &str = "https://porter.example/";
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a test waits for something that should happen, before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh, migrated database; its name starts with `porter_test_` so the test
/// script can drop leftovers.
pub async fn fresh_database() -> (String, PgPool) {
    let name = format!("porter_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server_url())
        .await
        .expect("connect to Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    let pool = porter::connect_postgres(url.as_str())
        .await
        .expect("connect to test database");
    porter::startup::migrate(&pool).await.expect("migrate");
    (url.to_string(), pool)
}

/// Knobs a test may turn before the app starts.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub activation_ttl: Duration,
    pub run_worker: bool,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            activation_ttl: Duration::from_secs(15 * 60),
            run_worker: true,
        }
    }
}

#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub mail: MailServer,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
    let (database_url, pool) = fresh_database().await;
    let mail = MailServer::start().await;
    let config = Config {
        database_url,
        redis_url: redis_url(),
        redis_namespace: format!("porter-test-{}", Uuid::new_v4().simple()),
        port: 0,
        public_base_url: PUBLIC_BASE_URL.parse().expect("valid URL"),
        smtp_url: mail.url(),
        mail_from: "Porter <no-reply@porter.example>"
            .parse()
            .expect("valid mailbox"),
        activation_ttl: options.activation_ttl,
        worker_concurrency: 8,
        hash_concurrency: 2,
        trusted_proxies: vec![],
        log_format: LogFormat::Text,
        email_retry: RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
        },
        metrics_port: None,
    };
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(porter::startup::run_web(
        config.clone(),
        pool.clone(),
        listener,
        shutdown.clone(),
    ));
    if options.run_worker {
        tokio::spawn(porter::startup::run_worker(
            config.clone(),
            pool.clone(),
            shutdown.clone(),
        ));
    }
    let redis = porter::connect_redis(&config.redis_url)
        .await
        .expect("connect to Redis");
    TestApp {
        address,
        config,
        pool,
        redis,
        mail,
        client: reqwest::Client::new(),
        shutdown,
    }
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
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
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn sign_up(&self, body: &Value) -> reqwest::Response {
        self.post_json("/api/users", body).await
    }

    pub async fn activation_page(&self, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/activate/{key}")))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn activate(&self, key: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/activate-account/{key}")))
            .send()
            .await
            .expect("request sent")
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

    pub async fn total_events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// The read model's status of the account with `email`, once projected.
    pub async fn projected_status(&self, email: &str) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM accounts WHERE email = $1")
            .bind(email.to_lowercase())
            .fetch_optional(&self.pool)
            .await
            .expect("query accounts")
    }

    /// Every key in this app's Redis namespace with its contents, flattened.
    pub async fn redis_dump(&self) -> Vec<(String, String)> {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.config.redis_namespace))
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
            let contents = match kind.as_str() {
                "string" => {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<String>(&mut redis)
                        .await
                }
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut redis)
                    .await
                    .map(|fields| fields.join(" ")),
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut redis)
                    .await
                    .map(|items| items.join(" ")),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut redis)
                    .await
                    .map(|items| items.join(" ")),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut redis)
                    .await
                    .map(|items| items.join(" ")),
                _ => Ok(String::new()),
            }
            .unwrap_or_default();
            dump.push((key, contents));
        }
        dump
    }
}
