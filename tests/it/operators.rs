//! Operator tools: replay, events, deliveries, status and metrics, against
//! the real app, Postgres, Redis and SMTP.

use std::collections::HashMap;

use porter::{
    domain::{AccountEvent, events::current_schema_version},
    features::{
        accounts::{
            self, ProjectionError, project_accounts,
            read_model::AccountRow,
            replay::{self, Progress, ReplayError, ReplayOptions, Silent},
        },
        emails::{
            self,
            deliveries::{DeliveriesError, RetryOutcome},
        },
        operations,
        public_events::{
            self,
            cli::{Format, ListOptions},
        },
    },
    platform::store::EventFilter,
};
use porter_test_support::generate;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, fresh_database, new_user, spawn_app};

pub(crate) async fn accounts(pool: &PgPool) -> Vec<AccountRow> {
    sqlx::query_as(
        "SELECT id, username, email, status, registered_at, activated_at, emails_sent, last_email_at, \
         version, locale, ended_at, blocked_at, outstanding_request, outstanding_since FROM accounts ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("read accounts")
}

async fn shadow_exists(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT to_regclass('accounts_shadow') IS NOT NULL")
        .fetch_one(pool)
        .await
        .expect("look up the shadow table")
}

/// Runs the projector until it has applied every event. (A round may apply
/// nothing while a transaction anywhere on the server is older than the
/// newest events; that is the ordering guarantee at work, so wait it out.)
async fn project_all(pool: &PgPool) {
    eventually("the projector to apply everything", || async {
        project_accounts(pool, 1000).await.expect("project");
        let lag = accounts::lag(pool, "accounts")
            .await
            .expect("lag")
            .expect("checkpoint");
        (lag.events_behind == 0).then_some(())
    })
    .await;
}

pub(crate) async fn replay(
    pool: &PgPool,
    options: ReplayOptions,
) -> Result<replay::ReplayReport, ReplayError> {
    replay::replay(pool, &options, &mut Silent, &CancellationToken::new()).await
}

pub(crate) async fn wait_until_projected(app: &TestApp) {
    eventually("the projector to catch up", || async {
        let lag = accounts::lag(&app.pool, "accounts")
            .await
            .expect("lag")
            .expect("checkpoint");
        (lag.events_behind == 0).then_some(())
    })
    .await;
}

async fn dead_jobs(app: &TestApp) -> Vec<porter::platform::queue::backend::DeadJob> {
    let mut redis = app.redis.clone();
    porter::platform::queue::backend::dead_jobs(&mut redis, &app.config.redis.namespace, 100)
        .await
        .expect("read the dead set")
}

#[tokio::test]
async fn replay_rebuilds_accounts_row_for_row_without_side_effects() {
    let app = spawn_app().await;
    // Given a history with an activation, a pending account, a repeated
    // sign-up and a permanent delivery failure...
    let (active, pending, refused) = (new_user(), new_user(), new_user());
    app.mail
        .refuse_recipient(refused["email"].as_str().expect("email"), 550);
    assert_eq!(app.sign_up(&active).await.status(), 202);
    let key = app.wait_for_mail(1).await.remove(0).activation_key();
    assert_eq!(app.activate(&key).await.status(), 200);
    assert_eq!(app.sign_up(&pending).await.status(), 202);
    assert_eq!(app.sign_up(&refused).await.status(), 202);
    let mut again = active.clone();
    again["username"] = Value::from(format!(
        "other_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    ));
    assert_eq!(app.sign_up(&again).await.status(), 202);
    app.wait_for_mail(3).await;
    eventually("the queue to settle", || async {
        let mut redis = app.redis.clone();
        let stats =
            porter::platform::queue::backend::stats(&mut redis, &app.config.redis.namespace)
                .await
                .expect("queue stats");
        (stats.dead == 1 && stats.done == 3 && stats.active == 0 && stats.running == 0)
            .then_some(())
    })
    .await;
    wait_until_projected(&app).await;
    let live = accounts(&app.pool).await;
    assert_eq!(
        live.len(),
        4,
        "the repeat holds its username as a registration"
    );
    let redis_before = app.redis_dump().await;
    let mail_before = app.mail.received().len();
    let indexes_before = index_names(&app.pool).await;

    // ...a dry run finds nothing to change, and two replays rebuild the same
    // rows without a job, a Redis write or an email.
    let dry = replay(
        &app.pool,
        ReplayOptions {
            dry_run: true,
            ..ReplayOptions::default()
        },
    )
    .await
    .expect("dry run");
    assert!(!dry.swapped);
    assert_eq!(
        dry.diff.as_ref().map(|d| d.is_empty()),
        Some(true),
        "{dry:?}"
    );
    assert!(!shadow_exists(&app.pool).await);
    for round in 1..=2 {
        let report = replay(
            &app.pool,
            ReplayOptions {
                batch_size: 3,
                ..ReplayOptions::default()
            },
        )
        .await
        .expect("replay");
        assert!(report.swapped);
        assert_eq!(
            report.events as i64,
            app.total_events().await,
            "round {round}"
        );
        assert_eq!(report.rows, 4);
        assert_eq!(accounts(&app.pool).await, live, "round {round}");
        assert!(!shadow_exists(&app.pool).await);
    }
    wait_until_projected(&app).await;
    assert_eq!(app.redis_dump().await, redis_before);
    assert_eq!(app.mail.received().len(), mail_before);

    // The swapped-in table is live: the projector keeps it up to date.
    app.sign_up(&new_user()).await;
    eventually("the new account to be projected", || async {
        (accounts(&app.pool).await.len() == 5).then_some(())
    })
    .await;
    assert_eq!(index_names(&app.pool).await, indexes_before);
}

/// The names of the `accounts` table's indexes, which a replay's swap keeps.
async fn index_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT indexname FROM pg_indexes WHERE tablename = 'accounts' ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("indexes")
}

/// Cancels the replay after its first batch.
struct CancelAfterFirstBatch(CancellationToken);

impl Progress for CancelAfterFirstBatch {
    fn applied(&mut self, _applied: u64) {
        self.0.cancel();
    }
}

/// Signals after the first batch, so the test can drop the replay future.
struct SignalFirstBatch(Option<tokio::sync::oneshot::Sender<()>>);

impl Progress for SignalFirstBatch {
    fn applied(&mut self, _applied: u64) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

#[tokio::test]
async fn generated_histories_are_stored_as_porter_writes_them() {
    let (_, pool) = fresh_database().await;
    assert_eq!(generate::events(&pool, 3).await.expect("generate"), 12);
    let stored: Vec<(String, i32, Value)> =
        sqlx::query_as("SELECT event_type, schema_version, payload FROM events ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("read the log");
    let types: Vec<&str> = stored.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            ["AccountRegistered"; 3],
            ["ActivationRequested"; 3],
            ["ActivationEmailSent"; 3],
            ["AccountActivated"; 3],
        ]
        .concat(),
        "streams interleave by kind"
    );
    for (event_type, version, payload) in stored {
        assert_eq!(
            Some(version),
            current_schema_version(&event_type),
            "{event_type}"
        );
        AccountEvent::decode(&event_type, version, payload).expect("decodes");
    }
    let claims: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(DISTINCT account_id) FROM unique_claims GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&pool)
    .await
    .expect("read the claims");
    assert_eq!(
        claims,
        [("email".to_owned(), 3), ("username".to_owned(), 3)]
    );
}

#[tokio::test]
async fn an_interrupted_replay_leaves_the_live_table_intact_and_usable() {
    let (url, pool) = fresh_database().await;
    generate::events(&pool, 300).await.expect("generate");
    project_all(&pool).await;
    let live = accounts(&pool).await;
    assert_eq!(live.len(), 300);
    let options = ReplayOptions {
        batch_size: 100,
        ..ReplayOptions::default()
    };

    // Cancelled between batches: the shadow is dropped.
    let cancel = CancellationToken::new();
    let result = replay::replay(
        &pool,
        &options,
        &mut CancelAfterFirstBatch(cancel.clone()),
        &cancel,
    )
    .await;
    assert!(
        matches!(result, Err(ReplayError::Interrupted)),
        "{result:?}"
    );
    assert_eq!(accounts(&pool).await, live);
    assert!(!shadow_exists(&pool).await);

    // Dropped mid-way, as a killed process would be: the shadow stays
    // behind, the live table does not change. The replay gets connections
    // of its own, closed afterwards as a dying process's would be (a
    // dropped future alone leaves its open transaction in the pool).
    let database = porter::platform::config::DatabaseConfig {
        url: porter::platform::config::SecretUrl::new(url),
        migration_url: None,
    };
    let doomed = porter::platform::connections::connect_postgres(&database)
        .await
        .expect("connect");
    let (signal, first_batch) = tokio::sync::oneshot::channel();
    let mut progress = SignalFirstBatch(Some(signal));
    let never = CancellationToken::new();
    tokio::select! {
        result = replay::replay(&doomed, &options, &mut progress, &never) => {
            panic!("the replay finished before it was dropped: {result:?}")
        }
        _ = first_batch => {}
    }
    doomed.close().await;
    assert_eq!(accounts(&pool).await, live);

    // The live table still takes new events...
    generate::events(&pool, 5).await.expect("generate more");
    project_all(&pool).await;
    let live = accounts(&pool).await;
    assert_eq!(live.len(), 305);
    // ...and the next replay starts over and swaps in the same rows.
    let report = replay(&pool, options)
        .await
        .expect("replay after an interruption");
    assert_eq!(report.events, 305 * 4);
    assert_eq!(accounts(&pool).await, live);
}

#[tokio::test]
async fn an_unreadable_event_stops_replay_and_the_projector_naming_its_position() {
    for (event_type, payload) in [
        (
            "AccountDeleted",
            serde_json::json!({"account_id": Uuid::new_v4()}),
        ),
        ("ActivationRequested", serde_json::json!({"reason": 42})),
    ] {
        let (_, pool) = fresh_database().await;
        generate::events(&pool, 3).await.expect("generate");
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload) \
             VALUES ($1, $2, 1, $3, 1, $4) RETURNING position",
        )
        .bind(Uuid::new_v4())
        .bind(format!("account-{}", Uuid::new_v4()))
        .bind(event_type)
        .bind(&payload)
        .fetch_one(&pool)
        .await
        .expect("insert a raw event");
        generate::events(&pool, 2).await.expect("generate");

        let error = replay(&pool, ReplayOptions::default())
            .await
            .expect_err("replay stops");
        let message = error.to_string();
        assert!(
            matches!(
                error,
                ReplayError::Projection(ProjectionError::Undecodable { position: p, .. }) if p == position
            ),
            "{message}"
        );
        assert!(
            message.contains(&format!("position {position}")),
            "{message}"
        );
        assert!(message.contains(event_type), "{message}");
        assert!(
            accounts(&pool).await.is_empty(),
            "the live table is untouched"
        );
        assert!(!shadow_exists(&pool).await);

        // One event per round, so everything before the bad event applies.
        let error = eventually("the projector to stop at the bad event", || async {
            project_accounts(&pool, 1).await.err()
        })
        .await;
        let message = error.to_string();
        assert!(
            message.contains(&format!("position {position}")),
            "{message}"
        );
        assert!(message.contains(event_type), "{message}");
        assert_eq!(
            accounts(&pool).await.len(),
            3,
            "everything before it applied"
        );
    }
}

#[tokio::test]
async fn events_lists_the_log_in_order_with_personal_data_masked() {
    let (_, pool) = fresh_database().await;
    generate::events(&pool, 3).await.expect("generate");
    let list = |filter: EventFilter, after: i64, limit: i64, format: Format, reveal: bool| {
        let pool = pool.clone();
        async move {
            let options = ListOptions {
                filter,
                after,
                limit,
                follow: false,
                format,
                reveal,
            };
            let mut out = Vec::new();
            public_events::cli::run(&pool, &options, &mut out, &CancellationToken::new())
                .await
                .expect("list events");
            String::from_utf8(out).expect("UTF-8")
        }
    };

    let registrations = EventFilter {
        event_type: Some("AccountRegistered".into()),
        ..EventFilter::default()
    };
    let text = list(registrations.clone(), 0, 2, Format::JsonLines, false).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["event_type"], "AccountRegistered");
        let email = line["payload"]["email"].as_str().expect("email");
        assert!(email.starts_with("g***@example.com"), "{email}");
        assert_eq!(line["payload"]["username"], "g***");
        assert!(line["payload"].get("password_hash").is_none());
    }
    assert!(!text.contains("argon2"));

    let first = lines[0]["position"].as_i64().expect("position");
    let after = list(registrations.clone(), first, 10, Format::JsonLines, false).await;
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(!after.contains(&format!("\"position\":{first},")));

    let revealed = list(registrations, 0, 1, Format::Table, true).await;
    assert!(revealed.starts_with("POSITION") || revealed.trim_start().starts_with("POSITION"));
    assert!(
        revealed.contains("@example.com") && revealed.contains("gen."),
        "{revealed}"
    );
    assert!(!revealed.contains("argon2"), "{revealed}");

    let stream = lines[0]["stream_id"].as_str().expect("stream").to_owned();
    let one_stream = list(
        EventFilter {
            stream: Some(stream.clone()),
            ..EventFilter::default()
        },
        0,
        100,
        Format::Table,
        false,
    )
    .await;
    assert_eq!(
        one_stream.lines().count(),
        5,
        "a header and four events:\n{one_stream}"
    );
    assert!(
        one_stream
            .lines()
            .skip(1)
            .all(|line| line.contains(&stream))
    );
}

#[tokio::test]
async fn a_dead_email_is_listed_and_a_retry_sends_it_once_the_recipient_accepts() {
    let app = spawn_app().await;
    let user = new_user();
    let email = user["email"].as_str().expect("email");
    app.mail.refuse_recipient(email, 550);
    assert_eq!(app.sign_up(&user).await.status(), 202);
    let dead = eventually("the email to be dead-lettered", || async {
        dead_jobs(&app).await.pop()
    })
    .await;

    let mut redis = app.redis.clone();
    let namespace = &app.config.redis.namespace;
    let overview = emails::deliveries::overview(&app.pool, &mut redis, namespace, 10)
        .await
        .expect("overview");
    assert_eq!(overview.stats.dead, 1);
    assert_eq!(overview.dead.len(), 1);
    let letter = &overview.dead[0];
    let job = letter.job.job.as_ref().expect("job payload");
    assert_eq!(letter.job.job_id, dead.job_id);
    assert_eq!(letter.job.job_id, job.request_id.to_string());
    let failure = letter.failure.as_ref().expect("failure from the log");
    assert!(failure.permanent);
    assert_eq!(failure.attempts, 1);
    assert!(failure.reason.contains("550"), "{}", failure.reason);
    let text = emails::deliveries::render(&overview);
    assert!(text.contains(&format!("job {}", dead.job_id)), "{text}");
    assert!(
        text.contains(&format!("account {}", job.account_id)),
        "{text}"
    );
    assert!(
        text.contains("failed permanently after 1 attempt"),
        "{text}"
    );

    let status = operations::status::gather(&app.pool, &mut redis, namespace)
        .await
        .expect("status");
    assert_eq!(status.queue.dead, 1);
    let screen = operations::status::render(&status);
    assert!(screen.contains("dead letters: 1"), "{screen}");
    assert!(screen.contains("projector accounts:"), "{screen}");
    assert!(screen.contains("maxmemory-policy"), "{screen}");

    // Once the address accepts mail again, a retry sends a working link.
    app.mail.accept_recipient(email);
    let outcome = emails::deliveries::retry(&app.web.commands, &mut redis, namespace, &dead.job_id)
        .await
        .expect("retry");
    let RetryOutcome::Redriven { job_id } = outcome else {
        panic!("expected a re-drive, got {outcome:?}");
    };
    assert_ne!(job_id, job.request_id);
    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(mail.to, vec![email.to_owned()]);
    assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
    assert_eq!(app.count_events("EmailRetryRequested").await, 1);
    assert!(dead_jobs(&app).await.is_empty());
    let finished: bool = redis::cmd("SISMEMBER")
        .arg(app.queue_keys().done())
        .arg(&dead.job_id)
        .query_async(&mut redis)
        .await
        .expect("SISMEMBER");
    assert!(
        finished,
        "a re-driven dead letter counts as finished, so housekeeping purges it"
    );

    // A second retry of the same job finds nothing dead.
    let again =
        emails::deliveries::retry(&app.web.commands, &mut redis, namespace, &dead.job_id).await;
    assert!(
        matches!(again, Err(DeliveriesError::NotDead(_))),
        "{again:?}"
    );
    let all = emails::deliveries::retry_all(&app.web.commands, &mut redis, namespace)
        .await
        .expect("retry all");
    assert!(all.is_empty());
    assert_eq!(app.count_events("EmailRetryRequested").await, 1);
    assert_eq!(app.mail.received().len(), 1);
}

/// Every line of an OpenMetrics text exposition, checked strictly.
fn assert_exposition_format(text: &str) {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "unexpected comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels: {line}");
        }
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
    }
}

fn samples(text: &str) -> HashMap<String, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("parses as Prometheus text");
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            Some((format!("{}{{{}}}", sample.metric, labels.join(",")), value))
        })
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .expect("scrape the metrics listener");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.expect("body")
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_sign_ups() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_exposition_format(&before);
    let before = samples(&before);
    let signups = |samples: &HashMap<String, f64>| {
        samples
            .get("porter_signups_total{}")
            .copied()
            .unwrap_or(0.0)
    };

    assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    app.wait_for_mail(1).await;
    let after = scrape(&app).await;
    assert_exposition_format(&after);
    let after = samples(&after);
    // Other tests in this process may sign up too; ours is at least one.
    assert!(signups(&after) >= signups(&before) + 1.0, "{after:#?}");
    for series in [
        "porter_email_queue_depth{state=active}",
        "porter_email_dead_letters{}",
        "porter_email_workers_live{}",
        "porter_projector_lag_events{read_model=accounts}",
        "porter_projector_lag_seconds{read_model=accounts}",
        "porter_password_hash_queue_depth{}",
        "porter_emails_sent_total{}",
    ] {
        assert!(
            after.contains_key(series),
            "{series} missing from {after:#?}"
        );
    }
    assert!(
        after.keys().any(
            |k| k.starts_with("porter_http_request_duration_seconds_count")
                && k.contains("route=sign_up")
                && k.contains("status=202")
        ),
        "{after:#?}"
    );

    // The worker's own listener serves the same registry.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    tokio::spawn(porter::shell::worker::metrics_listener::serve(
        listener,
        porter::features::operations::gauges::Sources::new(
            app.pool.clone(),
            app.redis.clone(),
            &app.config.redis.namespace,
        ),
        shutdown.clone().cancelled_owned(),
    ));
    let text = app
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape the worker listener")
        .text()
        .await
        .expect("body");
    assert_exposition_format(&text);
    assert!(samples(&text).contains_key("porter_email_dead_letters{}"));
    shutdown.cancel();
}
