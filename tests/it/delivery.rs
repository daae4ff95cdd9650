//! SMTP failures, caused for real at the test SMTP server.

use std::time::Duration;

use porter_jobs::SendAccountEmail;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestOptions, eventually, new_user, spawn_app, spawn_app_with, spawn_worker};

#[tokio::test]
async fn a_permanent_refusal_is_recorded_and_other_mail_still_flows() {
    let app = spawn_app().await;
    let refused = new_user();
    let refused_email = refused["email"].as_str().expect("email");
    app.mail.refuse_recipient(refused_email, 550);

    assert_eq!(app.sign_up(&refused).await.status(), 202);
    eventually("the failure to be recorded", || async {
        (app.count_events("ActivationEmailFailed").await == 1).then_some(())
    })
    .await;
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'ActivationEmailFailed'")
            .fetch_one(&app.pool)
            .await
            .expect("failure event");
    assert_eq!(payload["permanent"], true);
    assert_eq!(app.mail.refusals(), 1, "a 5xx is not retried");
    let dead = eventually("the job in the dead-letter set", || async {
        let dead = app.dead_letters().await;
        (dead > 0).then_some(dead)
    })
    .await;
    assert_eq!(dead, 1);

    app.sign_up(&new_user()).await;
    app.wait_for_mail(1).await;
    eventually("the delivery to be recorded", || async {
        (app.count_events("ActivationEmailSent").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_email_goes_out() {
    let app = spawn_app().await;
    app.mail.fail_next(2, 451);
    app.sign_up(&new_user()).await;
    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(app.mail.refusals(), 2);
    assert_eq!(app.count_events("ActivationEmailFailed").await, 0);
    assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_without_blocking_others() {
    // One slot, so the email below is sent only if the poison job leaves it.
    let app = spawn_app_with(TestOptions {
        settings: vec![("WORKER_CONCURRENCY", "1".into())],
        ..TestOptions::default()
    })
    .await;
    let mut poison = apalis_redis::RedisStorage::<serde_json::Value>::new(app.redis.clone())
        .with_config(porter::platform::queue::backend::email_queue_config(
            &app.config.redis.namespace,
        ));
    apalis::prelude::TaskSink::push(&mut poison, serde_json::json!({ "not": "a job" }))
        .await
        .expect("push a malformed job");
    app.sign_up(&new_user()).await;
    app.wait_for_mail(1).await;
    let dead = eventually("the poison job in the dead-letter set", || async {
        let dead = app.dead_letters().await;
        (dead > 0).then_some(dead)
    })
    .await;
    assert_eq!(dead, 1);
}

#[tokio::test]
async fn housekeeping_purges_finished_jobs_but_keeps_dead_ones() {
    let app = spawn_app().await;
    app.mail.refuse_recipient("dead.letter@example.com", 550);
    let mut refused = new_user();
    refused["email"] = serde_json::json!("dead.letter@example.com");
    app.sign_up(&refused).await;
    for _ in 0..3 {
        app.sign_up(&new_user()).await;
    }
    app.wait_for_mail(3).await;
    let mut redis = app.redis.clone();
    let count = |key: String, command: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd(command)
                .arg(key)
                .query_async::<i64>(&mut redis)
                .await
                .expect("count")
        }
    };
    eventually("three done jobs and one dead", || async {
        let done = count(app.queue_keys().done(), "SCARD").await;
        let dead = count(app.queue_keys().dead(), "SCARD").await;
        (done == 3 && dead == 1).then_some(())
    })
    .await;

    let purged = porter::platform::queue::backend::purge_finished_jobs(
        &app.redis,
        &app.config.redis.namespace,
        std::time::Duration::ZERO,
    )
    .await
    .expect("purge");
    assert_eq!(purged, 3);
    assert_eq!(count(app.queue_keys().done(), "SCARD").await, 0);
    assert_eq!(
        count(app.queue_keys().dead(), "SCARD").await,
        1,
        "dead letters stay"
    );
    let payloads: i64 = redis::cmd("HLEN")
        .arg(app.queue_keys().data())
        .query_async(&mut redis)
        .await
        .expect("HLEN");
    assert_eq!(payloads, 1, "only the dead job's payload is left");
}

#[tokio::test]
async fn an_email_waiting_to_retry_leaves_its_worker_slot_to_others() {
    // One slot, and a backoff far longer than the test: a retry that slept
    // in its slot would keep every other email out until the deadline.
    let app = spawn_app_with(
        TestOptions::default()
            .with("WORKER_CONCURRENCY", "1")
            .with("EMAIL_RETRY_ATTEMPTS", "3")
            .with("EMAIL_RETRY_BASE", "1h")
            .with("EMAIL_RETRY_CAP", "1h"),
    )
    .await;
    let waiting = new_user();
    app.mail
        .refuse_recipient(waiting["email"].as_str().expect("email"), 451);
    assert_eq!(app.sign_up(&waiting).await.status(), 202);
    eventually("the first refusal", || async {
        (app.mail.refusals() >= 1).then_some(())
    })
    .await;

    let other = new_user();
    assert_eq!(app.sign_up(&other).await.status(), 202);
    let mail = app.wait_for_mail(1).await;
    assert_eq!(mail[0].to, [other["email"].as_str().expect("email")]);

    let mut redis = app.redis.clone();
    let namespace = &app.config.redis.namespace;
    let keys = app.queue_keys();
    let retry = eventually("the retry waiting in the schedule, not in a slot", || {
        let (mut redis, scheduled) = (redis.clone(), keys.scheduled());
        async move {
            let stats = porter::platform::queue::backend::stats(&mut redis, namespace)
                .await
                .expect("stats");
            let scheduled: Vec<String> = redis::cmd("ZRANGE")
                .arg(scheduled)
                .arg(0)
                .arg(-1)
                .query_async(&mut redis)
                .await
                .expect("ZRANGE");
            (stats.running == 0 && scheduled.len() == 1).then(|| scheduled[0].clone())
        }
    })
    .await;
    let payload: String = redis::cmd("HGET")
        .arg(keys.data())
        .arg(&retry)
        .query_async(&mut redis)
        .await
        .expect("the retry's payload");
    let job: SendAccountEmail = serde_json::from_str(&payload).expect("a job");
    assert!(job.failed_attempts >= 1, "{job:?}");
    assert_eq!(retry, job.job_id());
    assert_eq!(app.count_events("ActivationEmailFailed").await, 0);
    assert_eq!(app.dead_letters().await, 0);
}

#[tokio::test]
async fn a_relay_without_smtputf8_fails_a_non_ascii_address_at_once() {
    // The test server, like many relays, does not offer SMTPUTF8.
    let app = spawn_app().await;
    let mut user = new_user();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    user["email"] = serde_json::json!(format!("jürgen.{id}@example.com"));
    assert_eq!(app.sign_up(&user).await.status(), 202);
    eventually("the failure to be recorded", || async {
        (app.count_events("ActivationEmailFailed").await == 1).then_some(())
    })
    .await;
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'ActivationEmailFailed'")
            .fetch_one(&app.pool)
            .await
            .expect("failure event");
    assert_eq!(payload["permanent"], true, "{payload}");
    assert_eq!(payload["attempts"], 1, "not retried: {payload}");
    assert!(
        payload["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("SMTPUTF8")),
        "{payload}"
    );
    assert!(app.mail.received().is_empty());
    eventually("the job in the dead-letter set", || async {
        (app.dead_letters().await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn housekeeping_expires_dead_letters_after_their_retention() {
    let app = spawn_app().await;
    app.mail.refuse_recipient("expiring@example.com", 550);
    let mut refused = new_user();
    refused["email"] = serde_json::json!("expiring@example.com");
    app.sign_up(&refused).await;
    app.sign_up(&new_user()).await;
    app.wait_for_mail(1).await;
    let mut redis = app.redis.clone();
    let count = |key: String, command: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd(command)
                .arg(key)
                .query_async::<i64>(&mut redis)
                .await
                .expect("count")
        }
    };
    eventually("one done job and one dead letter", || async {
        let done = count(app.queue_keys().done(), "SCARD").await;
        let dead = count(app.queue_keys().dead(), "SCARD").await;
        (done == 1 && dead == 1).then_some(())
    })
    .await;

    // The app's own worker keeps dead letters for the default 30 days; a
    // second worker on the same queue keeps them for a second.
    let mut config = app.config.clone();
    config.worker.dead_letter_retention = Duration::from_secs(1);
    let stop = CancellationToken::new();
    spawn_worker(config, app.pool.clone(), stop.clone());
    eventually("the dead letter purged", || async {
        (count(app.queue_keys().dead(), "SCARD").await == 0).then_some(())
    })
    .await;
    stop.cancel();
    assert_eq!(
        count(app.queue_keys().done(), "SCARD").await,
        1,
        "the finished job stays for JOB_RETENTION"
    );
    let payloads: i64 = redis::cmd("HLEN")
        .arg(app.queue_keys().data())
        .query_async(&mut redis)
        .await
        .expect("HLEN");
    assert_eq!(payloads, 1, "only the finished job's payload is left");
    assert_eq!(
        app.count_events("ActivationEmailFailed").await,
        1,
        "the failure stays in the log"
    );
}
