//! Sessions against an attacker who knows a password: no session outlives
//! a change or reset of the password it was opened with, however the
//! sign-in and the change interleave; an account holds a bounded number of
//! sessions, in an index whose upkeep does not grow with it; successful
//! sign-ins are budgeted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::future::{join, join_all};
use serde_json::Value;

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
