//! SMTP failures, caused for real at the test SMTP server.

use serde_json::Value;

use crate::helpers::{eventually, new_user, spawn_app};

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
    let app = spawn_app().await;
    let mut poison = apalis_redis::RedisStorage::<serde_json::Value>::new(app.redis.clone())
        .with_config(porter::queue::backend::email_queue_config(
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

    let purged = porter::queue::backend::purge_finished_jobs(
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
