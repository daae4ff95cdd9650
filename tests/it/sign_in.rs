//! Signing in and out, `GET /api/me`, changing the password, throttling.

use chrono::Utc;
use porter::{
    domain::{AccountCommand, EmailAddress, Locale, Password, Username},
    features::sign_up::{self, SignUp},
    platform::{
        config::{Argon2Cost, HashingConfig},
        hashing::PasswordHasher,
        store::EventMetadata,
    },
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{PASSWORD, TestApp, TestOptions, TestResponse, spawn_app, spawn_app_with};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

fn text(user: &Value, field: &str) -> String {
    user[field].as_str().expect("a string field").to_owned()
}

/// What a client can tell apart in two answers: everything but the request
/// id (in the header and the body), which differs for every request.
fn comparable(response: &TestResponse) -> (u16, Vec<(String, String)>, Value) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    let mut body = response.json();
    body.as_object_mut().map(|body| body.remove("request_id"));
    (response.status(), headers, body)
}

async fn password_changes(app: &TestApp, reason: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'PasswordChanged' AND payload->>'reason' = $1",
    )
    .bind(reason)
    .fetch_one(&app.pool)
    .await
    .expect("count password changes")
}

#[tokio::test]
async fn an_active_account_signs_in_by_username_or_email_and_reads_itself() {
    let app = spawn_app().await;
    let user = app.active_user().await;

    let response = app.sign_in(&text(&user, "username"), PASSWORD).await;
    assert_eq!(response.status(), 201);
    let session = response.json();
    let token = session["token"].as_str().expect("token");
    assert_eq!(token.len(), 64, "256 bits in hex");
    assert_eq!(session["account"]["email"], user["email"]);
    let expires_at: chrono::DateTime<Utc> = session["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("a timestamp");
    let week = chrono::Duration::days(7);
    assert!((expires_at - Utc::now() - week).num_seconds().abs() < 60);

    let me = app.me(token).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json(), session["account"]);

    // The email in another letter case names the same account.
    let by_email = app
        .sign_in(&text(&user, "email").to_uppercase(), PASSWORD)
        .await;
    assert_eq!(by_email.status(), 201);
    assert_ne!(by_email.json()["token"], session["token"]);
}

#[tokio::test]
async fn a_pending_account_is_refused_only_with_the_right_password() {
    let app = spawn_app().await;
    let user = crate::helpers::new_user();
    assert_eq!(app.sign_up(&user).await.status(), 202);

    let right = app.sign_in(&text(&user, "username"), PASSWORD).await;
    assert_eq!(right.status(), 403);
    assert_eq!(right.json()["error"]["code"], "account_not_active");
    assert!(
        right.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/activate-account/resend")
    );
    let wrong = app
        .sign_in(&text(&user, "username"), "not the password at all")
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json()["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn unknown_login_and_wrong_password_answer_byte_identically_for_one_hash_each() {
    let app = spawn_app().await;
    let user = app.active_user().await;

    let before = app.web.hasher.computed();
    let wrong = app
        .sign_in(&text(&user, "email"), "not the password at all")
        .await;
    assert_eq!(app.web.hasher.computed(), before + 1);
    let unknown = app
        .sign_in("nobody@example.com", "not the password at all")
        .await;
    assert_eq!(app.web.hasher.computed(), before + 2);
    let unknown_name = app.sign_in("nobody_here", "not the password at all").await;
    assert_eq!(app.web.hasher.computed(), before + 3);

    assert_eq!(wrong.status(), 401);
    assert_eq!(comparable(&wrong), comparable(&unknown));
    assert_eq!(comparable(&wrong), comparable(&unknown_name));
    // Only the request id differs in the bytes.
    let strip = |response: &TestResponse| {
        let id = response.header("x-request-id").to_owned();
        response.text().replace(&id, "")
    };
    assert_eq!(strip(&wrong), strip(&unknown));
}

#[tokio::test]
async fn a_throttled_login_gets_429_before_any_hash_even_with_the_right_password() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "3/1h"))
            .await;
    let user = app.active_user().await;
    let other = app.active_user().await;
    let login = text(&user, "username");

    for _ in 0..3 {
        let wrong = app.sign_in(&login, "not the password at all").await;
        assert_eq!(wrong.status(), 401);
    }
    let before = app.web.hasher.computed();
    // Counted per login as typed, in canonical form (the email has its own
    // budget: tests/it/budgets.rs).
    for (login, password) in [
        (login.as_str(), "not the password at all"),
        (login.as_str(), PASSWORD),
        (&login.to_uppercase(), PASSWORD),
    ] {
        let refused = app.sign_in(login, password).await;
        assert_eq!(refused.status(), 429, "{login}");
        assert_eq!(refused.json()["error"]["code"], "rate_limited");
        let retry_after: u64 = refused
            .header("retry-after")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=3600).contains(&retry_after));
    }
    assert_eq!(app.web.hasher.computed(), before, "429 costs no hash");

    // Another account is not held back.
    assert_eq!(
        app.sign_in(&text(&other, "username"), PASSWORD)
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_client_ip_across_logins() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_SIGN_IN_PER_IP", "3/1h"))
            .await;
    for n in 0..3 {
        let wrong = app
            .sign_in(
                &format!("someone{n}@example.com"),
                "not the password at all",
            )
            .await;
        assert_eq!(wrong.status(), 401);
    }
    let before = app.web.hasher.computed();
    let refused = app
        .sign_in("someone_else@example.com", "not the password at all")
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(app.web.hasher.computed(), before);
}

#[tokio::test]
async fn me_refuses_missing_malformed_forged_and_revoked_tokens() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let token = app.token(&text(&user, "username"), PASSWORD).await;

    let missing = app.get("/api/me").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.header("www-authenticate"), "Bearer");
    assert_eq!(missing.json()["error"]["code"], "unauthenticated");
    let forged = hex::encode(Sha256::digest(token.as_bytes()));
    for bad in ["abc", &token.to_uppercase(), &forged] {
        let response = app.me(bad).await;
        assert_eq!(response.status(), 401, "{bad}");
        assert_eq!(comparable(&response), comparable(&missing));
    }
    assert_eq!(app.me(&token).await.status(), 200);
    assert_eq!(app.sign_out(&token).await.status(), 204);
    assert_eq!(app.me(&token).await.status(), 401);
    assert_eq!(app.sign_out(&token).await.status(), 401);
}

#[tokio::test]
async fn sign_out_ends_this_session_at_once_and_no_other() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let (first, second) = (
        app.token(&login, PASSWORD).await,
        app.token(&login, PASSWORD).await,
    );
    let signed_out = app.sign_out(&first).await;
    assert_eq!(signed_out.status(), 204);
    assert!(signed_out.body.is_empty());
    assert_eq!(app.me(&first).await.status(), 401);
    assert_eq!(app.me(&second).await.status(), 200);
}

#[tokio::test]
async fn sign_out_everywhere_ends_every_session_of_the_account_only() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let other = app.active_user().await;
    let login = text(&user, "username");
    let tokens = [
        app.token(&login, PASSWORD).await,
        app.token(&text(&user, "email"), PASSWORD).await,
        app.token(&login, PASSWORD).await,
    ];
    let others = app.token(&text(&other, "username"), PASSWORD).await;

    assert_eq!(app.sign_out_everywhere(&tokens[1]).await.status(), 204);
    for token in &tokens {
        assert_eq!(app.me(token).await.status(), 401);
    }
    assert_eq!(app.me(&others).await.status(), 200);
    // Signing in again works.
    let fresh = app.token(&login, PASSWORD).await;
    assert_eq!(app.me(&fresh).await.status(), 200);
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_emails_the_owner() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let (login, email) = (text(&user, "username"), text(&user, "email"));
    let current = app.token(&login, PASSWORD).await;
    let other = app.token(&login, PASSWORD).await;

    let wrong = app
        .change_password(&current, "not the password at all", NEW_PASSWORD)
        .await;
    assert_eq!(wrong.status(), 400);
    assert!(wrong.json()["error"]["fields"]["current_password"].is_array());
    let weak = app.change_password(&current, PASSWORD, "short").await;
    assert_eq!(weak.status(), 400);
    assert!(weak.json()["error"]["fields"]["new_password"].is_array());
    assert_eq!(
        app.change_password(&other, PASSWORD, NEW_PASSWORD)
            .await
            .status(),
        200,
        "any live session may change it"
    );
    assert_eq!(
        app.me(&other).await.status(),
        200,
        "the changing session stays"
    );
    assert_eq!(app.me(&current).await.status(), 401, "the others end");

    assert_eq!(app.sign_in(&login, PASSWORD).await.status(), 401);
    assert_eq!(app.sign_in(&login, NEW_PASSWORD).await.status(), 201);
    assert_eq!(password_changes(&app, "change").await, 1);
    let notice = app.wait_for_mail_to(&email, 2).await.remove(1);
    assert_eq!(
        notice.header("Subject").as_deref(),
        Some("Your Porter password was changed")
    );
    assert!(notice.text().contains("signed out"));

    assert_eq!(app.get("/api/me").await.status(), 401);
    let unauthenticated = app.change_password("nope", PASSWORD, NEW_PASSWORD).await;
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn a_hash_made_with_older_argon2_parameters_is_upgraded_at_sign_in() {
    let app = spawn_app().await;
    let older_cost = Argon2Cost {
        memory_kib: 9216,
        iterations: 4,
    };
    let older = PasswordHasher::new(HashingConfig {
        argon2: older_cost,
        ..app.config.web.hashing
    })
    .expect("hashing threads")
    .hash(Password::parse(PASSWORD, None).expect("valid password"))
    .await
    .expect("hashes");
    assert!(older.0.contains("m=9216,t=4"));
    let asked = SignUp {
        username: Username::parse("old_timer").expect("username"),
        email: EmailAddress::parse("old.timer@example.com").expect("email"),
        password_hash: older,
        locale: Locale::english(),
    };
    let commands = &app.web.commands;
    let account_id = sign_up::sign_up(commands, asked, &EventMetadata::default())
        .await
        .expect("registers")
        .registration
        .id;
    commands
        .execute(
            account_id,
            AccountCommand::ActivateManually { at: Utc::now() },
            &EventMetadata::default(),
        )
        .await
        .expect("activates");

    assert_eq!(app.sign_in("old_timer", PASSWORD).await.status(), 201);
    assert_eq!(password_changes(&app, "rehash").await, 1);
    let account = commands
        .load(account_id)
        .await
        .expect("loads")
        .expect("exists");
    assert!(
        account.password_hash.0.contains("m=19456,t=2"),
        "upgraded to today's parameters"
    );
    assert_eq!(app.sign_in("old_timer", PASSWORD).await.status(), 201);
    assert_eq!(password_changes(&app, "rehash").await, 1, "once only");
    assert_eq!(
        app.sign_in("old_timer", "not the password at all")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn redis_holds_only_hashes_of_session_tokens() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let token = app.token(&text(&user, "username"), PASSWORD).await;
    let dump = app.redis_dump().await;
    let everything = format!("{dump:?}");
    assert!(!everything.contains(&token));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    assert!(
        dump.iter()
            .any(|(key, _)| key.ends_with(&format!(":session:{hash}"))),
        "{everything}"
    );
}

#[tokio::test]
async fn a_session_unused_for_its_idle_timeout_ends() {
    let app = spawn_app_with(TestOptions::default().with("SESSION_IDLE", "1s")).await;
    let user = app.active_user().await;
    let token = app.token(&text(&user, "username"), PASSWORD).await;
    assert_eq!(app.me(&token).await.status(), 200);
    // Watch Redis, not the API: every use would push the timeout back.
    let entry = format!(
        "{}:session:{}",
        app.config.redis.namespace,
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    crate::helpers::eventually("the idle session to expire", || async {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&entry)
            .query_async(&mut app.redis.clone())
            .await
            .ok()?;
        (exists == 0).then_some(())
    })
    .await;
    assert_eq!(app.me(&token).await.status(), 401);
}

#[tokio::test]
async fn a_session_in_use_still_ends_at_its_absolute_expiry() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("SESSION_TTL", "2s")
            .with("SESSION_IDLE", "1h"),
    )
    .await;
    let user = app.active_user().await;
    let session = app.sign_in(&text(&user, "username"), PASSWORD).await.json();
    let token = session["token"].as_str().expect("token");
    let expires_at: chrono::DateTime<Utc> = session["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("a timestamp");
    assert!(expires_at - Utc::now() <= chrono::Duration::seconds(2));
    assert_eq!(app.me(token).await.status(), 200);
    crate::helpers::eventually("the session to reach its end", || async {
        (app.me(token).await.status() == 401).then_some(())
    })
    .await;
    assert!(Utc::now() >= expires_at - chrono::Duration::seconds(1));
}
