//! The outbox relay: every request in the log reaches the queue, by the
//! command side's own definition of a request, without holding back other
//! readers of the log while Redis is slow.

use std::time::Duration;

use porter::{
    domain::{
        AccountEvent,
        events::{
            AccountRegistered, ActivationReason, ActivationRequested, EmailFailed,
            EmailRetryRequested, PasswordHash,
        },
    },
    platform::store::{self, EventMetadata, NewEvent, account_stream},
};
use uuid::Uuid;

use crate::{
    helpers::{TestOptions, eventually, new_user, spawn_app, spawn_app_with},
    services::PrivateRedis,
};

#[tokio::test]
async fn an_operators_retry_whose_push_was_lost_is_relayed() {
    let app = spawn_app().await;
    let (account_id, failed, retry) = (Uuid::new_v4(), Uuid::now_v7(), Uuid::now_v7());
    // A history as `porter deliveries retry` leaves it when Redis went away
    // between its append and its push: nothing was pushed for `retry`.
    let history = [
        AccountEvent::AccountRegistered(AccountRegistered {
            account_id,
            username: "retried".into(),
            username_canonical: "retried".into(),
            email: "retried@example.com".into(),
            email_canonical: "retried@example.com".into(),
            password_hash: PasswordHash("$argon2id$test".into()),
            locale: "en".into(),
            registered_at: None,
            supersedes: None,
            address_owner: None,
        }),
        AccountEvent::ActivationRequested(ActivationRequested {
            request_id: failed,
            reason: ActivationReason::SignUp,
        }),
        AccountEvent::EmailFailed(EmailFailed {
            request_id: failed,
            reason: "550 mailbox unavailable".into(),
            permanent: true,
            attempts: 1,
        }),
        AccountEvent::EmailRetryRequested(EmailRetryRequested {
            request_id: retry,
            retry_of: failed,
        }),
    ];
    let events: Vec<NewEvent> = history
        .iter()
        .map(|event| NewEvent::from_domain(event).expect("encodes"))
        .collect();
    store::append(
        &app.pool,
        &account_stream(account_id),
        0,
        &events,
        &[],
        &EventMetadata::default(),
    )
    .await
    .expect("append");

    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(mail.to, ["retried@example.com"]);
    assert_eq!(
        app.activate(&mail.activation_key()).await.status(),
        200,
        "the retried request's link works"
    );
}

/// Sessions of the test database that have sat in a transaction holding a
/// transaction id for a while: each one holds back the read horizon of
/// every reader of the log (`pg_snapshot_xmin`).
async fn long_open_transactions(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_xid IS NOT NULL \
           AND state LIKE 'idle in transaction%' \
           AND now() - state_change > interval '500 milliseconds'",
    )
    .fetch_one(pool)
    .await
    .expect("read pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_holds_no_transaction_open_in_the_log() {
    let redis = PrivateRedis::start().await;
    let app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    redis.freeze();
    let user = new_user();
    assert_eq!(app.sign_up(&user).await.status(), 202);

    // The relay now finds a request it cannot push; every push waits for
    // Redis's timeout (2 s). Watch for longer than a few of its rounds.
    for _ in 0..80 {
        assert_eq!(
            long_open_transactions(&app.pool).await,
            0,
            "a transaction stayed open while Redis was stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let email = user["email"].as_str().expect("email");
    eventually("the read model to show the sign-up", || async {
        app.projected_status(email).await
    })
    .await;

    redis.thaw();
    let mail = app.wait_for_mail(1).await.remove(0);
    assert!(mail.to.iter().any(|to| to == email));
}
