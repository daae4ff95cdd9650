//! The main path: sign up, receive the email, confirm, become active.

use serde_json::{Value, json};

use crate::helpers::{
    PUBLIC_BASE_URL, TestOptions, eventually, new_user, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn sign_up_email_confirm_and_the_account_is_active() {
    let app = spawn_app().await;
    let user = new_user();

    let response = app.sign_up(&user).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json();
    assert_eq!(body["status"], "accepted");

    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(
        mail.to,
        vec![user["email"].as_str().expect("email").to_owned()]
    );
    let content_type = mail.header("Content-Type").expect("content type");
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let link = mail.activation_link().expect("a link in the text part");
    assert!(
        link.starts_with(&format!("{PUBLIC_BASE_URL}activate/")),
        "{link}"
    );
    assert!(
        mail.html().contains(&link),
        "the HTML part carries the same link"
    );
    let key = mail.activation_key();
    assert_eq!(key.len(), 32);

    // The page behind the link only offers a button; fetching it changes nothing.
    let page = app.activation_page(&key).await;
    assert_eq!(page.status(), 200);
    let html = page.text();
    assert!(
        html.contains(&format!("action=\"/api/activate-account/{key}\"")),
        "{html}"
    );
    assert_eq!(app.count_events("AccountActivated").await, 0);

    let first = app.activate(&key).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json();
    assert_eq!(first["already_active"], false);

    let second = app.activate(&key).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json();
    assert_eq!(second["already_active"], true);
    assert_eq!(app.count_events("AccountActivated").await, 1);

    let email = user["email"].as_str().expect("email");
    eventually("the read model to show the account active", || async {
        (app.projected_status(email).await.as_deref() == Some("active")).then_some(())
    })
    .await;
    let emails_sent: i32 = sqlx::query_scalar("SELECT emails_sent FROM accounts WHERE email = $1")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .expect("account row");
    assert_eq!(emails_sent, 1);
}

#[tokio::test]
async fn a_browser_form_post_gets_html_pages() {
    let app = spawn_app().await;
    app.sign_up(&new_user()).await;
    let key = app.wait_for_mail(1).await[0].activation_key();
    let post = |key: String| {
        app.send(
            app.client
                .post(app.url(&format!("/api/activate-account/{key}")))
                .header("accept", "text/html")
                .header("content-type", "application/x-www-form-urlencoded"),
        )
    };
    let activated = post(key.clone()).await;
    assert_eq!(activated.status(), 200);
    assert!(activated.content_type().starts_with("text/html"));
    assert!(activated.text().contains("active"));

    let invalid = post("A".repeat(32)).await;
    assert_eq!(invalid.status(), 410);
    assert!(invalid.content_type().starts_with("text/html"));

    // A JSON request is answered in JSON whatever Accept says.
    let json = app
        .send(
            app.client
                .post(app.url(&format!("/api/activate-account/{key}")))
                .header("accept", "text/html")
                .json(&json!({})),
        )
        .await;
    assert_eq!(json.status(), 200);
    assert_eq!(json.json()["already_active"], true);
}

#[tokio::test]
async fn redis_holds_only_the_key_hash_with_a_bounded_ttl() {
    let app = spawn_app().await;
    app.sign_up(&new_user()).await;
    let key = app.wait_for_mail(1).await[0].activation_key();

    let dump = app.redis_dump().await;
    assert!(!dump.is_empty());
    for (name, contents) in &dump {
        assert!(
            !name.contains(&key) && !contents.contains(&key),
            "raw key stored at {name}"
        );
    }
    let entry = dump
        .iter()
        .map(|(name, _)| name)
        .find(|name| name.contains(":activation:key:"))
        .expect("a key entry");
    let ttl: i64 = redis::cmd("TTL")
        .arg(entry)
        .query_async(&mut app.redis.clone())
        .await
        .expect("TTL");
    assert!(ttl > 0 && ttl <= 15 * 60, "TTL {ttl}");
}

#[tokio::test]
async fn an_expired_key_answers_410() {
    let app = spawn_app_with(TestOptions::default().with("ACTIVATION_TTL", "1s")).await;
    app.sign_up(&new_user()).await;
    let mail = app.wait_for_mail(1).await.remove(0);
    assert!(
        mail.text().contains("expires in 1 second ("),
        "the email states the lifetime"
    );
    let key = mail.activation_key();
    eventually("the key to expire in Redis", || async {
        let dump = app.redis_dump().await;
        (!dump
            .iter()
            .any(|(name, _)| name.contains(":activation:key:")))
        .then_some(())
    })
    .await;

    let response = app.activate(&key).await;
    assert_eq!(response.status(), 410);
    let body: Value = response.json();
    assert_eq!(body["error"]["code"], "activation_link_invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("resend")
    );
    assert_eq!(app.count_events("AccountActivated").await, 0);
}

#[tokio::test]
async fn a_newer_key_revokes_the_older_one() {
    let app = spawn_app().await;
    let user = new_user();
    app.sign_up(&user).await;
    let old_key = app.wait_for_mail(1).await[0].activation_key();

    // A resend while pending sends a fresh link that replaces the old one
    // (once the first email is recorded; until then it merges into it).
    eventually("the first email to be recorded", || async {
        (app.count_events("ActivationEmailSent").await == 1).then_some(())
    })
    .await;
    let email = user["email"].as_str().expect("email");
    assert_eq!(app.resend(email).await.status(), 202);
    let new_key = app.wait_for_mail(2).await[1].activation_key();
    assert_ne!(old_key, new_key);

    assert_eq!(app.activate(&old_key).await.status(), 410);
    assert_eq!(app.activate(&new_key).await.status(), 200);
    assert_eq!(app.count_events("AccountRegistered").await, 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status(), 200);
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json();
    assert_eq!(body, json!({ "status": "ready" }));
}
