//! Races decided by the database, not by luck.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{PASSWORD, new_user, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sign_ups_with_one_email_make_one_account() {
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
    assert_eq!(app.count_events("AccountRegistered").await, 1);
    // Repeated sign-ups coalesce while an email is on its way, so the owner
    // gets one email per recorded request, far fewer than 50.
    let requests = 1 + app.count_events("SignUpAttemptedForExistingEmail").await;
    assert!(requests < 50, "{requests} requests");
    app.wait_for_mail(usize::try_from(requests).expect("small"))
        .await;
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE kind = 'email'")
        .fetch_one(&app.pool)
        .await
        .expect("count claims");
    assert_eq!(claims, 1);
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
