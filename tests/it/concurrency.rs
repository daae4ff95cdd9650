//! Races decided by the database, not by luck.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, eventually, new_user, spawn_app};

/// How many claims of each kind the app's database holds, by kind.
async fn claims_by_kind(app: &TestApp) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT kind, count(*) FROM unique_claims GROUP BY kind ORDER BY kind")
        .fetch_all(&app.pool)
        .await
        .expect("count claims")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sign_ups_with_one_email_leave_one_live_registration() {
    let app = spawn_app().await;
    let email = new_user()["email"].clone();
    let requests = (0..50).map(|n| {
        let body = json!({
            "username": format!("racer_{n}_{}", &uuid::Uuid::new_v4().simple().to_string()[..6]),
            "email": email,
            "password": PASSWORD,
        });
        let app = &app;
        async move { app.sign_up(&body).await.status() }
    });
    let statuses = join_all(requests).await;
    assert!(statuses.iter().all(|status| *status == 202), "{statuses:?}");
    // Each sign-up superseded the registration that held the address when
    // it committed: one chain, never two registrations holding it.
    assert_eq!(app.count_events("AccountRegistered").await, 50);
    assert_eq!(app.count_events("RegistrationSuperseded").await, 49);
    assert_eq!(
        claims_by_kind(&app).await,
        [("email".to_owned(), 1), ("username".to_owned(), 1)],
        "only the live registration holds claims"
    );
    // The live registration's link arrives (superseded ones send nothing
    // once their job sees them ended) and confirms it, with its password:
    // it superseded another, so it is contested.
    let live_username: String =
        sqlx::query_scalar("SELECT value FROM unique_claims WHERE kind = 'username'")
            .fetch_one(&app.pool)
            .await
            .expect("the live username");
    let mail = eventually("the live registration's link", || async {
        app.mail
            .received()
            .into_iter()
            .find(|mail| mail.activation_link().is_some() && mail.text().contains(&live_username))
    })
    .await;
    let confirm = format!("/api/activate-account/{}", mail.activation_key());
    assert_eq!(app.post_json(&confirm, &json!({})).await.status(), 403);
    let confirmed = app
        .post_json(&confirm, &json!({ "password": PASSWORD }))
        .await;
    assert_eq!(confirmed.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_confirmations_activate_once() {
    let app = spawn_app().await;
    app.sign_up(&new_user()).await;
    let key = app.wait_for_mail(1).await[0].activation_key();
    let confirmations = (0..50).map(|_| {
        let (app, key) = (&app, key.clone());
        async move {
            let response = app.activate(&key).await;
            let status = response.status();
            let body: serde_json::Value = response.json();
            (status, body["already_active"].as_bool())
        }
    });
    let results = join_all(confirmations).await;
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "{results:?}"
    );
    let first_activations = results
        .iter()
        .filter(|(_, already)| *already == Some(false))
        .count();
    assert_eq!(first_activations, 1, "{results:?}");
    assert_eq!(app.count_events("AccountActivated").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sign_ups_with_one_username_leave_one_registration() {
    // Different addresses, so no address lock serialises them: only the
    // username's claim, taken in the append's transaction, decides.
    let app = spawn_app().await;
    let username = new_user()["username"].clone();
    let requests = (0..50).map(|_| {
        let body = json!({
            "username": username,
            "email": new_user()["email"],
            "password": PASSWORD,
        });
        let app = &app;
        async move {
            let response = app.sign_up(&body).await;
            (response.status(), response.json())
        }
    });
    let answers = join_all(requests).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    let accepted = statuses.iter().filter(|status| **status == 202).count();
    assert_eq!(accepted, 1, "one 202, the rest refused: {statuses:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 202) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(
            body["error"]["fields"]["username"],
            json!(["is already taken"]),
            "{body}"
        );
    }
    assert_eq!(app.count_events("AccountRegistered").await, 1);
    assert_eq!(
        claims_by_kind(&app).await,
        [("email".to_owned(), 1), ("username".to_owned(), 1)],
        "one registration holds the username and its own address"
    );
}
