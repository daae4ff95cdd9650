//! Sessions against an attacker who knows a password: no session outlives
//! a change or reset of the password it was opened with, however the
//! sign-in and the change interleave; an account holds a bounded number of
//! sessions, in an index whose upkeep does not grow with it; successful
//! sign-ins are budgeted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::future::{join, join_all};
use redis::AsyncCommands as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    helpers::{PASSWORD, TestApp, TestOptions, TestResponse, eventually, spawn_app_with},
    password_reset::reset_key,
};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

/// Sign-ins kept in flight during a race: enough to keep the hashing
/// threads' queue full, so sign-ins that read the old hash are still
/// waiting for it when the change commits.
const IN_FLIGHT: usize = 24;

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().expect("a string field").to_owned()
}

/// A test app whose only session limit is the one under test: no success
/// budget or session cap hides a session that should have ended.
async fn race_app() -> TestApp {
    spawn_app_with(TestOptions::default().with("SESSIONS_PER_ACCOUNT", "100000")).await
}

/// Keeps [`IN_FLIGHT`] sign-ins of `login` with `password` going, starts
/// `change` once the first round of them has been answered, and stops
/// signing in when `change` has been answered (each loop finishes the
/// sign-in it has in flight then). Returns the change's answer and the
/// token of every sign-in answered `201`.
async fn sign_in_throughout(
    app: &TestApp,
    login: &str,
    password: &str,
    change: impl Future<Output = TestResponse>,
) -> (TestResponse, Vec<String>) {
    let answered = AtomicUsize::new(0);
    let changed = AtomicBool::new(false);
    let sign_ins = join_all((0..IN_FLIGHT).map(|_| async {
        let mut tokens = Vec::new();
        while !changed.load(Ordering::SeqCst) {
            let response = app.sign_in(login, password).await;
            answered.fetch_add(1, Ordering::SeqCst);
            match response.status() {
                201 => tokens.push(text(&response.json(), "token")),
                // The password changed (401), then its failures are
                // throttled (429).
                401 | 429 => {}
                other => panic!("sign-in answered {other}: {}", response.text()),
            }
        }
        tokens
    }));
    let change = async {
        eventually("a first round of sign-ins", || async {
            (answered.load(Ordering::SeqCst) >= IN_FLIGHT).then_some(())
        })
        .await;
        let answer = change.await;
        changed.store(true, Ordering::SeqCst);
        answer
    };
    let (answer, tokens) = join(change, sign_ins).await;
    (answer, tokens.into_iter().flatten().collect())
}

/// Asks `GET /api/me` with each token; returns how many still work.
async fn still_working(app: &TestApp, tokens: &[String]) -> usize {
    let answers = join_all(tokens.iter().map(|token| app.me(token))).await;
    answers
        .iter()
        .filter(|answer| {
            assert!(matches!(answer.status(), 200 | 401), "{}", answer.text());
            answer.status() == 200
        })
        .count()
}

#[tokio::test]
async fn no_old_password_session_outlives_a_change_however_it_races() {
    let app = race_app().await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let changer = app.token(&login, PASSWORD).await;

    let (answer, tokens) = sign_in_throughout(
        &app,
        &login,
        PASSWORD,
        app.change_password(&changer, PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert!(!tokens.is_empty(), "sign-ins ran before the change");

    let alive = still_working(&app, &tokens).await;
    assert_eq!(
        alive,
        0,
        "{alive} of {} old-password sessions outlived the change",
        tokens.len()
    );
    assert_eq!(app.me(&changer).await.status(), 200, "the changer's stays");
}

#[tokio::test]
async fn no_old_password_session_outlives_a_reset_however_it_races() {
    let app = race_app().await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let key = reset_key(&app, &user, 2).await;

    let (answer, tokens) = sign_in_throughout(
        &app,
        &login,
        PASSWORD,
        app.reset_password(&key, NEW_PASSWORD),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert!(!tokens.is_empty(), "sign-ins ran before the reset");

    let alive = still_working(&app, &tokens).await;
    assert_eq!(
        alive,
        0,
        "{alive} of {} old-password sessions outlived the reset",
        tokens.len()
    );
}
/// The Redis key of an account's session index.
fn index_key(app: &TestApp, account_id: &str) -> String {
    format!(
        "{}:session:account:{account_id}",
        app.config.redis.namespace
    )
}

#[tokio::test]
async fn an_account_keeps_its_newest_sessions_up_to_the_cap() {
    let app = spawn_app_with(TestOptions::default().with("SESSIONS_PER_ACCOUNT", "3")).await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(app.token(&login, PASSWORD).await);
    }

    assert_eq!(app.me(&tokens[0]).await.status(), 401, "the oldest ended");
    for token in &tokens[1..] {
        assert_eq!(app.me(token).await.status(), 200);
    }
    let account_id = text(&app.me(&tokens[3]).await.json(), "id");
    let indexed: u64 = app
        .redis
        .clone()
        .zcard(index_key(&app, &account_id))
        .await
        .expect("ZCARD");
    assert_eq!(indexed, 3);

    // Signing out everywhere still reaches every session.
    assert_eq!(app.sign_out_everywhere(&tokens[3]).await.status(), 204);
    for token in &tokens {
        assert_eq!(app.me(token).await.status(), 401);
    }
}

#[tokio::test]
async fn a_sign_in_does_not_walk_the_accounts_session_index() {
    let app = spawn_app_with(TestOptions::default().with("SESSIONS_PER_ACCOUNT", "10000")).await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let first = app.token(&login, PASSWORD).await;
    let account_id = text(&app.me(&first).await.json(), "id");
    let index = index_key(&app, &account_id);

    // 5 000 members whose sessions no longer exist but whose absolute end
    // (the score, in microseconds) is a day away. A create that looked at
    // each member would drop them; one that only trims by score and by
    // rank leaves them.
    let day_away_us = (chrono::Utc::now() + chrono::Duration::days(1)).timestamp_micros();
    let members: Vec<(i64, String)> = (0..5_000)
        .map(|n| (day_away_us + n, format!("gone-{n}")))
        .collect();
    let _: () = app
        .redis
        .clone()
        .zadd_multiple(&index, &members)
        .await
        .expect("ZADD");

    let second = app.token(&login, PASSWORD).await;
    let indexed: u64 = app.redis.clone().zcard(&index).await.expect("ZCARD");
    assert_eq!(indexed, 5_002, "create looked at members it did not need");
    assert_eq!(app.me(&first).await.status(), 200);
    assert_eq!(app.me(&second).await.status(), 200);
}

#[tokio::test]
async fn successful_sign_ins_are_budgeted_per_account_before_any_hash() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_SIGN_IN_PER_ACCOUNT", "2/1h")).await;
    let user = app.active_user().await;
    let login = text(&user, "username");

    // Failures do not spend the budget of successes.
    for _ in 0..3 {
        let wrong = app.sign_in(&login, "not the password at all").await;
        assert_eq!(wrong.status(), 401);
    }
    for _ in 0..2 {
        assert_eq!(app.sign_in(&login, PASSWORD).await.status(), 201);
    }
    let before = app.web.hasher.computed();
    let refused = app.sign_in(&login, PASSWORD).await;
    assert_eq!(refused.status(), 429, "{}", refused.text());
    assert!(
        refused
            .header("retry-after")
            .parse::<u64>()
            .expect("Retry-After")
            > 0
    );
    assert_eq!(app.web.hasher.computed(), before, "refused before hashing");

    // Another account is not affected.
    let other = app.active_user().await;
    assert_eq!(
        app.sign_in(&text(&other, "email"), PASSWORD).await.status(),
        201
    );
}

#[tokio::test]
async fn successful_sign_ins_are_budgeted_per_client_ip() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_SIGN_IN_PER_IP", "2/1h")).await;
    let first = app.active_user().await;
    let second = app.active_user().await;

    assert_eq!(
        app.sign_in(&text(&first, "username"), PASSWORD)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.sign_in(&text(&second, "username"), PASSWORD)
            .await
            .status(),
        201
    );
    let refused = app.sign_in(&text(&first, "email"), PASSWORD).await;
    assert_eq!(refused.status(), 429, "{}", refused.text());
    assert!(
        refused
            .header("retry-after")
            .parse::<u64>()
            .expect("Retry-After")
            > 0
    );
}

#[tokio::test]
async fn a_session_indexed_before_the_index_was_sorted_is_still_revoked() {
    let app = spawn_app_with(TestOptions::default()).await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let current = app.token(&login, PASSWORD).await;
    let account_id = text(&app.me(&current).await.json(), "id");
    let index = index_key(&app, &account_id);
    let _: () = app.redis.clone().del(&index).await.expect("DEL");

    // A session as an earlier release stored it: its hash in a plain set.
    let token = "ab".repeat(32);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let entry = format!("{}:session:{hash}", app.config.redis.namespace);
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp();
    let mut redis = app.redis.clone();
    let _: () = redis
        .hset_multiple(
            &entry,
            &[
                ("account", account_id.clone()),
                ("username", text(&user, "username")),
                ("email", text(&user, "email")),
                ("expires", expires.to_string()),
            ],
        )
        .await
        .expect("HSET");
    let _: () = redis.expire(&entry, 3600).await.expect("EXPIRE");
    let _: () = redis.sadd(&index, &hash).await.expect("SADD");
    assert_eq!(app.me(&token).await.status(), 200);

    assert_eq!(app.sign_out_everywhere(&token).await.status(), 204);
    assert_eq!(app.me(&token).await.status(), 401);
    let indexed: u64 = redis.zcard(&index).await.expect("a sorted set now");
    assert_eq!(indexed, 0);
}
