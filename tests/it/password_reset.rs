//! Password reset: the request that answers alike for every address, the
//! emailed link, the form, the single use.

use futures::future::join_all;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    helpers::{PASSWORD, TestApp, TestOptions, TestResponse, new_user, spawn_app, spawn_app_with},
    services::{PrivatePostgres, PrivateRedis},
};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

fn text(user: &Value, field: &str) -> String {
    user[field].as_str().expect("a string field").to_owned()
}

/// Asks for a reset of `user`'s password and returns the emailed key, the
/// `nth` email to the address.
pub(crate) async fn reset_key(app: &TestApp, user: &Value, nth: usize) -> String {
    let email = text(user, "email");
    assert_eq!(app.request_reset(&email).await.status(), 202);
    let mail = app.wait_for_mail_to(&email, nth).await.remove(nth - 1);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Reset your Porter password")
    );
    mail.find_link_key("reset-password")
        .expect("a reset link in the email")
}

fn headers_and_body(response: &TestResponse) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    (response.status(), headers, response.body.clone())
}

#[tokio::test]
async fn an_emailed_reset_link_sets_the_password_once_and_the_owner_is_told() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let (login, email) = (text(&user, "username"), text(&user, "email"));
    let key = reset_key(&app, &user, 2).await;
    assert_eq!(key.len(), 32);
    assert_eq!(app.count_events("PasswordResetRequested").await, 1);

    // The page only shows a form; fetching it changes nothing.
    let page = app.get(&format!("/reset-password/{key}")).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .contains(&format!("action=\"/api/password-reset/{key}\"")),
        "{}",
        page.text()
    );

    let weak = app.reset_password(&key, "short").await;
    assert_eq!(weak.status(), 400);
    assert!(weak.json()["error"]["fields"]["password"].is_array());
    let done = app.reset_password(&key, NEW_PASSWORD).await;
    assert_eq!(done.status(), 200);
    assert_eq!(done.json()["status"], "changed");

    let again = app.reset_password(&key, "yet another passphrase 7").await;
    assert_eq!(again.status(), 410);
    assert_eq!(again.json()["error"]["code"], "reset_link_invalid");
    assert_eq!(app.sign_in(&login, PASSWORD).await.status(), 401);
    assert_eq!(app.sign_in(&login, NEW_PASSWORD).await.status(), 201);

    let notice = app.wait_for_mail_to(&email, 3).await.remove(2);
    assert_eq!(
        notice.header("Subject").as_deref(),
        Some("Your Porter password was changed")
    );
    // The reset email's key is in the log only as a fingerprint.
    let fingerprint: String = sqlx::query_scalar(
        "SELECT e.payload->'key'->>'fingerprint' FROM events e \
         JOIN events r ON r.payload->>'request_id' = e.payload->>'request_id' \
         WHERE e.event_type = 'ActivationEmailSent' AND r.event_type = 'PasswordResetRequested'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the reset email's record");
    assert_eq!(
        fingerprint,
        hex::encode(Sha256::digest(key.as_bytes()))[..16]
    );
    let reset: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'PasswordChanged'")
            .fetch_one(&app.pool)
            .await
            .expect("one PasswordChanged");
    assert_eq!(reset["reason"], "reset");
}

#[tokio::test]
async fn a_reset_request_answers_alike_for_every_address_and_emails_only_active_and_pending() {
    let app = spawn_app().await;
    let active = app.active_user().await;
    let pending = new_user();
    assert_eq!(app.sign_up(&pending).await.status(), 202);
    let pending_email = text(&pending, "email");
    app.wait_for_mail_to(&pending_email, 1).await;

    let answers = [
        app.request_reset(&text(&active, "email")).await,
        app.request_reset(&pending_email.to_uppercase()).await,
        app.request_reset("nobody.at.all@example.com").await,
    ];
    for answer in &answers {
        assert_eq!(answer.status(), 202);
        assert_eq!(headers_and_body(answer), headers_and_body(&answers[0]));
    }
    // Two activation emails, one reset request, one reset email and the
    // three address requests.
    app.wait_for_queue_to_drain(7).await;
    let to_active = app.wait_for_mail_to(&text(&active, "email"), 2).await;
    assert!(to_active[1].find_link_key("reset-password").is_some());
    let to_pending = app.wait_for_mail_to(&pending_email, 2).await;
    let key = to_pending[1]
        .find_activation_key()
        .expect("a pending account gets its activation link");
    assert!(to_pending[1].find_link_key("reset-password").is_none());
    assert_eq!(app.activate(&key).await.status(), 200);
    assert_eq!(
        app.mail.received().len(),
        4,
        "nothing for the unknown address"
    );
    assert!(
        !app.mail
            .received()
            .iter()
            .any(|mail| mail.to.iter().any(|to| to.contains("nobody.at.all")))
    );
    assert_eq!(app.count_events("PasswordResetRequested").await, 1);
}

#[tokio::test]
async fn a_reset_ends_every_session() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let tokens = [
        app.token(&login, PASSWORD).await,
        app.token(&login, PASSWORD).await,
    ];
    let key = reset_key(&app, &user, 2).await;
    assert_eq!(app.reset_password(&key, NEW_PASSWORD).await.status(), 200);
    for token in &tokens {
        assert_eq!(app.me(token).await.status(), 401);
    }
}

#[tokio::test]
async fn a_newer_reset_link_replaces_the_older_one() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let older = reset_key(&app, &user, 2).await;
    let newer = reset_key(&app, &user, 3).await;
    assert_eq!(app.reset_password(&older, NEW_PASSWORD).await.status(), 410);
    assert_eq!(app.reset_password(&newer, NEW_PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_reset_key_is_in_redis_only_as_a_hash() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let key = reset_key(&app, &user, 2).await;
    let dump = app.redis_dump().await;
    let everything = format!("{dump:?}");
    assert!(!everything.contains(&key));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert!(
        dump.iter()
            .any(|(name, _)| name.ends_with(&format!(":reset:key:{hash}"))),
        "{everything}"
    );
    // An activation key with the same text would not open it, nor the
    // other way round: the purposes have their own keys.
    assert_eq!(app.activate(&key).await.status(), 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uses_of_one_reset_key_record_one_password_change() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let key = reset_key(&app, &user, 2).await;
    let answers = join_all((0..50).map(|n| {
        let app = &app;
        let key = &key;
        async move {
            app.reset_password(key, &format!("concurrent passphrase number {n}"))
                .await
                .status()
        }
    }))
    .await;
    assert_eq!(answers.iter().filter(|status| **status == 200).count(), 1);
    assert_eq!(answers.iter().filter(|status| **status == 410).count(), 49);
    assert_eq!(app.count_events("PasswordChanged").await, 1);
}

#[tokio::test]
async fn the_reset_form_posts_and_answers_in_html() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let key = reset_key(&app, &user, 2).await;
    let post = |password: &str| {
        app.client
            .post(app.url(&format!("/api/password-reset/{key}")))
            .header("accept", "text/html")
            .form(&[("password", password)])
    };
    let weak = app.send(post("short")).await;
    assert_eq!(weak.status(), 400);
    assert!(weak.content_type().starts_with("text/html"));
    // A JSON request is answered in JSON whatever Accept says, as the
    // document promises a generated client.
    let json = app
        .send(
            app.client
                .post(app.url(&format!("/api/password-reset/{key}")))
                .header("accept", "text/html")
                .json(&serde_json::json!({ "password": "short" })),
        )
        .await;
    assert_eq!(json.status(), 400);
    assert!(json.content_type().starts_with("application/json"));
    assert!(json.json()["error"]["fields"]["password"].is_array());
    assert!(
        weak.text().contains("at least 12 characters"),
        "{}",
        weak.text()
    );
    let done = app.send(post(NEW_PASSWORD)).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().contains("Your password has been changed"));
    let again = app.send(post(NEW_PASSWORD)).await;
    assert_eq!(again.status(), 410);
    assert!(again.content_type().starts_with("text/html"));
    assert_eq!(
        app.sign_in(&text(&user, "username"), NEW_PASSWORD)
            .await
            .status(),
        201
    );
    let malformed = app.get("/reset-password/not-a-key").await;
    assert_eq!(malformed.status(), 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_while_redis_is_down_is_503_for_every_address_alike() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        ..TestOptions::default()
    })
    .await;
    let user = app.active_user().await;
    redis.stop().await;
    let known = app.request_reset(&text(&user, "email")).await;
    let unknown = app.request_reset("nobody.at.all@example.com").await;
    assert_eq!(known.status(), 503);
    assert!(!known.header("retry-after").is_empty());
    let strip = |response: &TestResponse| {
        let (status, headers, body) = headers_and_body(response);
        let id = response.header("x-request-id").to_owned();
        (
            status,
            headers,
            String::from_utf8_lossy(&body).replace(&id, ""),
        )
    };
    assert_eq!(strip(&known), strip(&unknown));
    assert_eq!(app.count_events("PasswordResetRequested").await, 0);

    redis.restart().await;
    let key = reset_key(&app, &user, 2).await;
    assert_eq!(app.reset_password(&key, NEW_PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn logs_of_sign_in_and_reset_hold_no_password_token_device_token_key_or_link() {
    // A current-thread runtime: the app's tasks run here and log here.
    let (logs, _guard) = crate::helpers::CapturedLogs::install();
    let app = spawn_app().await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let signed_in = app.sign_in(&login, PASSWORD).await;
    let token = signed_in.json()["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let device_token = signed_in.json()["device_token"]
        .as_str()
        .expect("a device token")
        .to_owned();
    assert_eq!(app.me(&token).await.status(), 200);
    assert_eq!(
        app.sign_in(&login, "a wrong passphrase 99").await.status(),
        401
    );
    let key = reset_key(&app, &user, 2).await;
    assert_eq!(
        app.get(&format!("/reset-password/{key}")).await.status(),
        200
    );
    assert_eq!(app.reset_password(&key, NEW_PASSWORD).await.status(), 200);
    assert_eq!(
        app.change_password(
            &app.token(&login, NEW_PASSWORD).await,
            NEW_PASSWORD,
            "another passphrase 77"
        )
        .await
        .status(),
        200
    );
    drop(app);

    let text = logs.text();
    assert!(text.contains("signed in") && text.contains("password reset"));
    let token_hash = hex::encode(Sha256::digest(token.as_bytes()));
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        "another passphrase 77",
        "a wrong passphrase 99",
        token.as_str(),
        token_hash.as_str(),
        device_token.as_str(),
        key.as_str(),
        "/reset-password/",
        "$argon2id$",
    ] {
        assert!(!text.contains(secret), "{secret:?} appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_whose_lookup_kept_failing_is_dead_lettered_and_retried_by_an_operator() {
    let postgres = PrivatePostgres::start().await;
    let app = spawn_app_with(TestOptions {
        postgres_url: Some(postgres.url()),
        ..TestOptions::default()
    })
    .await;
    let user = app.active_user().await;
    postgres.halt();
    // The web process never reads Postgres for it: still the usual answer.
    assert_eq!(app.request_reset(&text(&user, "email")).await.status(), 202);
    crate::helpers::eventually("the address request to be dead-lettered", || async {
        (app.dead_letters().await == 1).then_some(())
    })
    .await;
    postgres.resume().await;

    let namespace = &app.config.redis.namespace;
    let mut redis = app.redis.clone();
    let dead = porter::platform::queue::backend::dead_job_ids(&mut redis, namespace)
        .await
        .expect("dead letters");
    assert!(dead[0].starts_with("address-request-"), "{dead:?}");
    let listed =
        porter::features::emails::deliveries::overview(&app.pool, &mut redis, namespace, 10)
            .await
            .expect("listing");
    assert!(listed.dead[0].job.address_request.is_some());
    porter::features::emails::deliveries::retry(&app.web.commands, &mut redis, namespace, &dead[0])
        .await
        .expect("retried");
    assert_eq!(app.dead_letters().await, 0);
    let mail = app
        .wait_for_mail_to(&text(&user, "email"), 2)
        .await
        .remove(1);
    let key = mail.find_link_key("reset-password").expect("a reset link");
    assert_eq!(app.reset_password(&key, NEW_PASSWORD).await.status(), 200);
}
