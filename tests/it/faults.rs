//! Faults caused for real: Redis and Postgres going away, Redis losing its
//! data, workers killed, processes told to stop in the middle of a burst.
//! Each test breaks its own private instance, never the shared services.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::future::join_all;
use serde_json::Value;

use crate::{
    helpers::{
        CapturedLogs, TestApp, TestOptions, eventually, eventually_within, new_user, spawn_app_with,
    },
    services::{PrivatePostgres, PrivateRedis, free_port},
};

/// Long enough for a dead worker's jobs to be taken back (3 missed 5 s
/// heartbeats) and finished elsewhere.
const ORPHAN_DEADLINE: Duration = Duration::from_secs(60);

async fn sent_requests(app: &TestApp) -> i64 {
    app.count_events("ActivationEmailSent").await
}

/// Request ids with more than one `ActivationEmailSent`.
async fn requests_recorded_twice(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload->>'request_id' FROM events WHERE event_type = 'ActivationEmailSent' \
         GROUP BY 1 HAVING count(*) > 1",
    )
    .fetch_all(&app.pool)
    .await
    .expect("query events")
}

async fn registered(app: &TestApp, username: &str) -> bool {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'AccountRegistered' AND payload->>'username' = $1",
    )
    .bind(username)
    .fetch_one(&app.pool)
    .await
    .expect("query events");
    count == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_while_redis_is_down_is_emailed_once_redis_is_back() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    redis.stop().await;

    let user = new_user();
    assert_eq!(
        app.sign_up(&user).await.status(),
        202,
        "the event is durable; Redis can wait"
    );
    assert_eq!(app.count_events("ActivationRequested").await, 1);
    assert!(app.mail.received().is_empty());

    redis.restart().await;
    let mail = app.wait_for_mail(1).await.remove(0);
    eventually("the delivery to be recorded", || async {
        (sent_requests(&app).await == 1).then_some(())
    })
    .await;
    assert_eq!(app.mail.received().len(), 1, "exactly one email");
    assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_loses_links_but_no_accounts_and_resends_nothing() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    let user = new_user();
    let email = user["email"].as_str().expect("email");
    app.sign_up(&user).await;
    let old_key = app.wait_for_mail(1).await[0].activation_key();
    eventually("the delivery to be recorded", || async {
        (sent_requests(&app).await == 1).then_some(())
    })
    .await;

    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut app.redis.clone())
        .await
        .expect("FLUSHALL");

    assert_eq!(
        app.activate(&old_key).await.status(),
        410,
        "the key is gone, not a 500"
    );
    let other = new_user();
    assert_eq!(app.sign_up(&other).await.status(), 202);
    app.wait_for_mail(2).await;
    assert_eq!(app.resend(email).await.status(), 202);
    let mails = app.wait_for_mail(3).await;
    assert!(mails[2].to.iter().any(|to| to == email));
    assert_eq!(app.activate(&mails[2].activation_key()).await.status(), 200);
    eventually("three deliveries recorded", || async {
        (sent_requests(&app).await == 3).then_some(())
    })
    .await;
    assert_eq!(app.mail.received().len(), 3, "the relay sent nothing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_finish_on_another_worker() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    app.mail.slow_down(Duration::from_millis(300));
    let mut doomed = app.spawn_process("worker", 0);

    let users: Vec<Value> = (0..20).map(|_| new_user()).collect();
    for response in join_all(users.iter().map(|user| app.sign_up(user))).await {
        assert_eq!(response.status(), 202);
    }
    eventually("the first worker to be sending", || async {
        (!app.mail.received().is_empty()).then_some(())
    })
    .await;
    doomed.start_kill().expect("SIGKILL the worker");
    doomed.wait().await.expect("the worker is gone");
    let killed_at = Instant::now();
    let sent_before = app.mail.received().len();

    let _survivor = app.spawn_process("worker", 0);
    eventually_within(ORPHAN_DEADLINE, "every request to be emailed", || async {
        (sent_requests(&app).await == 20).then_some(())
    })
    .await;
    eprintln!(
        "killed after {sent_before} emails; all 20 done {:.1} s later; {} emails for 20 requests",
        killed_at.elapsed().as_secs_f64(),
        app.mail.received().len()
    );
    assert!(requests_recorded_twice(&app).await.is_empty());
    // Whatever was sent twice, the newest link each person got works.
    let mut newest: HashMap<String, String> = HashMap::new();
    for mail in app.mail.received() {
        newest.insert(mail.to[0].clone(), mail.activation_key());
    }
    assert_eq!(newest.len(), 20);
    for key in newest.values() {
        assert_eq!(app.activate(key).await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_and_loses_nothing() {
    let postgres = PrivatePostgres::start().await;
    let app = spawn_app_with(TestOptions {
        postgres_url: Some(postgres.url()),
        ..TestOptions::default()
    })
    .await;
    let outcomes: Mutex<Vec<(Value, u16)>> = Mutex::new(Vec::new());
    let client = |requests: usize| {
        let outcomes = &outcomes;
        let app = &app;
        async move {
            for _ in 0..requests {
                let user = new_user();
                let status = app.sign_up(&user).await.status();
                outcomes.lock().expect("lock").push((user, status));
            }
        }
    };
    let chaos = async {
        let answered = || outcomes.lock().expect("lock").len();
        eventually("some sign-ups before the restart", || async {
            (answered() >= 8).then_some(())
        })
        .await;
        postgres.halt();
        let down_at = answered();
        eventually("sign-ups answered while Postgres is down", || async {
            (answered() >= down_at + 4).then_some(())
        })
        .await;
        postgres.resume().await;
    };
    futures::join!(client(30), client(30), chaos);

    let outcomes = outcomes.into_inner().expect("lock");
    let accepted: Vec<&Value> = outcomes
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(u, _)| u)
        .collect();
    let unavailable = outcomes.iter().filter(|(_, s)| *s == 503).count();
    eprintln!("{} accepted, {unavailable} answered 503", accepted.len());
    let statuses: Vec<u16> = outcomes.iter().map(|(_, s)| *s).collect();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 503),
        "only 202 or 503: {statuses:?}"
    );
    assert!(unavailable > 0, "the outage was seen");
    for user in &accepted {
        let username = user["username"].as_str().expect("username");
        assert!(
            registered(&app, username).await,
            "{username} was acknowledged but not recorded"
        );
    }
    // A 503 means Porter could not learn that the sign-up committed: its
    // deadline never cuts a commit short, so a recorded sign-up answered 503
    // can only be one whose COMMIT was on the wire when the connection died,
    // at most one per client (each has one request in flight).
    let mut recorded_yet_503 = Vec::new();
    for (user, _) in outcomes.iter().filter(|(_, s)| *s == 503) {
        let username = user["username"].as_str().expect("username");
        if registered(&app, username).await {
            recorded_yet_503.push(username);
        }
    }
    assert!(
        recorded_yet_503.len() <= 2,
        "recorded, yet answered 503 beyond the commits the outage cut: {recorded_yet_503:?}"
    );
    // Every acknowledged sign-up gets its email. A few extra may go out: for
    // the sign-ups above, and an email sent just before Postgres went away
    // is sent again with a second working link.
    eventually_within(
        ORPHAN_DEADLINE,
        "an email for every acknowledged sign-up",
        || async {
            let received = app.mail.received();
            accepted
                .iter()
                .all(|user| {
                    received.iter().any(|mail| {
                        mail.to
                            .iter()
                            .any(|to| to == user["email"].as_str().unwrap_or_default())
                    })
                })
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "{} emails for {} acknowledged sign-ups",
        app.mail.received().len(),
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_keeps_every_acknowledged_sign_up_and_job() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    app.mail.slow_down(Duration::from_millis(200));
    let port = free_port();
    let mut web = app.spawn_process("web", port);
    let mut worker = app.spawn_process("worker", 0);
    let base = format!("http://127.0.0.1:{port}");
    eventually("the web process to listen", || async {
        app.client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let users: Vec<Value> = (0..40).map(|_| new_user()).collect();
    let burst = join_all(users.iter().map(|user| {
        let request = app
            .client
            .post(format!("{base}/api/users"))
            .json(user)
            .send();
        async move {
            request
                .await
                .map(|response| response.status().as_u16())
                .ok()
        }
    }));
    let terminate = async {
        eventually("the first email", || async {
            (!app.mail.received().is_empty()).then_some(())
        })
        .await;
        for child in [&web, &worker] {
            let pid = child.id().expect("running").to_string();
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status();
            assert!(status.expect("kill runs").success());
        }
    };
    let (statuses, ()) = futures::join!(burst, terminate);
    assert!(
        web.wait().await.expect("web exits").success(),
        "web drains and exits 0"
    );
    assert!(
        worker.wait().await.expect("worker exits").success(),
        "worker drains and exits 0"
    );

    let accepted = users
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| **status == Some(202))
        .map(|(user, _)| user["username"].as_str().expect("username"));
    for username in accepted {
        assert!(
            registered(&app, username).await,
            "{username} was acknowledged but not recorded"
        );
    }
    // Every request was either emailed or is back in the queue.
    let requests: Vec<String> = sqlx::query_scalar(
        "SELECT event_id::text FROM events WHERE event_type = 'ActivationRequested'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("requests");
    let emailed: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'request_id' FROM events WHERE event_type = 'ActivationEmailSent'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("deliveries");
    let mut redis = app.redis.clone();
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg(app.queue_keys().active())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("active list");
    let scheduled: Vec<String> = redis::cmd("ZRANGE")
        .arg(app.queue_keys().scheduled())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("scheduled set");
    let stranded: Vec<&String> = requests
        .iter()
        .filter(|id| !emailed.contains(id) && !queued.contains(id) && !scheduled.contains(id))
        .collect();
    eprintln!(
        "{} requests: {} emailed, {} back in the queue",
        requests.len(),
        emailed.len(),
        requests.len() - emailed.len()
    );
    let mut diagnosis = Vec::new();
    for id in &stranded {
        let meta: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(app.queue_keys().meta(id))
            .query_async(&mut redis)
            .await
            .expect("meta");
        let holders: Vec<String> = app
            .redis_dump()
            .await
            .into_iter()
            .filter(|(_, contents)| contents.contains(id.as_str()))
            .map(|(key, _)| key)
            .collect();
        diagnosis.push(format!("{id}: meta {meta:?}, held by {holders:?}"));
    }
    assert!(
        stranded.is_empty(),
        "requests neither emailed nor queued: {diagnosis:#?}"
    );
}

#[tokio::test]
async fn the_worker_warns_when_redis_may_evict_keys() {
    let (logs, _guard) = CapturedLogs::install();
    let redis = PrivateRedis::start().await;
    let client = redis::Client::open(redis.url()).expect("URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut connection)
        .await
        .expect("CONFIG SET");
    let _app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    eventually("the eviction warning", || async {
        logs.text()
            .contains("maxmemory-policy is not noeviction")
            .then_some(())
    })
    .await;
}
