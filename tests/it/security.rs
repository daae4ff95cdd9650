//! Abuse resistance: enumeration-safe answers, budgets, load shedding,
//! links that ignore request headers, security headers, clean logs.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    CapturedLogs, PASSWORD, PUBLIC_BASE_URL, TestApp, TestOptions, TestResponse, eventually,
    new_user, spawn_app, spawn_app_with,
};

/// What a client could compare between two answers: everything but the
/// request id and the date.
fn observable(response: &TestResponse) -> (u16, Vec<(String, String)>, Value) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    headers.sort();
    (response.status(), headers, response.json())
}

fn assert_security_headers(response: &TestResponse) {
    assert_eq!(response.header("x-content-type-options"), "nosniff");
    assert_eq!(response.header("cache-control"), "no-store");
    assert_eq!(response.header("referrer-policy"), "no-referrer");
    assert!(
        response
            .header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    assert!(
        response.headers.get("server").is_none(),
        "no version banner"
    );
}

async fn activate_new_account(app: &TestApp) -> Value {
    let user = new_user();
    app.sign_up(&user).await;
    let email = user["email"].as_str().expect("email");
    let mail = eventually("the activation email", || async {
        app.mail
            .received()
            .into_iter()
            .find(|m| m.to.iter().any(|to| to == email))
    })
    .await;
    assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
    user
}

#[tokio::test]
async fn resend_answers_alike_for_unknown_pending_and_active_addresses() {
    let app = spawn_app().await;
    let active = activate_new_account(&app).await;
    let pending = new_user();
    app.sign_up(&pending).await;
    let old_key = app.wait_for_mail(2).await[1].activation_key();

    let unknown = app.resend("nobody.here@example.com").await;
    let for_pending = app.resend(pending["email"].as_str().expect("email")).await;
    let for_active = app.resend(active["email"].as_str().expect("email")).await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(observable(&unknown), observable(&for_pending));
    assert_eq!(observable(&unknown), observable(&for_active));

    let mails = app.wait_for_mail(3).await;
    assert!(
        mails[2]
            .to
            .iter()
            .any(|to| to == pending["email"].as_str().expect("email"))
    );
    let new_key = mails[2].activation_key();
    assert_eq!(
        app.activate(&old_key).await.status(),
        410,
        "the new link revoked the old"
    );
    assert_eq!(app.activate(&new_key).await.status(), 200);
}

#[tokio::test]
async fn resends_within_the_minimum_interval_coalesce() {
    let app = spawn_app_with(TestOptions::default().with("EMAIL_MIN_INTERVAL", "2s")).await;
    let user = new_user();
    let email = user["email"].as_str().expect("email");
    app.sign_up(&user).await;
    app.wait_for_mail(1).await;
    let first_sent = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(app.resend(email).await.status(), 202);
    }
    app.wait_for_mail(2).await;
    assert!(
        first_sent.elapsed() >= Duration::from_millis(1900),
        "the interval is kept"
    );
    assert_eq!(
        app.count_events("ActivationRequested").await,
        2,
        "five resends, one request"
    );
}

#[tokio::test]
async fn sign_up_with_an_existing_email_answers_alike_and_tells_the_owner() {
    let app = spawn_app().await;
    let owner = activate_new_account(&app).await;
    let first = app.sign_up(&new_user()).await;
    let mut repeat = new_user();
    repeat["email"] = owner["email"].clone();
    let second = app.sign_up(&repeat).await;
    assert_eq!(observable(&first), observable(&second));

    let owner_email = owner["email"].as_str().expect("email");
    let notice = eventually("the already-registered email", || async {
        app.mail
            .received()
            .into_iter()
            .filter(|m| m.to.iter().any(|to| to == owner_email))
            .nth(1)
    })
    .await;
    assert!(
        notice
            .header("Subject")
            .expect("subject")
            .contains("already have")
    );
    assert!(
        notice.activation_link().is_none(),
        "an active account gets no link"
    );
    assert_eq!(
        app.count_events("AccountRegistered").await,
        3,
        "the owner's, the first new one, and the repeat, which holds its username"
    );
}

#[tokio::test]
async fn sign_ups_over_budget_get_429_without_hashing() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_SIGN_UP_PER_IP", "3/1m")).await;
    for _ in 0..3 {
        assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    }
    let hashed = app.web.hasher.computed();
    for n in 0..20 {
        // A rotating X-Forwarded-For from an untrusted peer changes nothing.
        let request = app
            .client
            .post(app.url("/api/users"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&new_user());
        let refused = app.send(request).await;
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = refused.header("retry-after").parse().expect("seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(refused.json()["error"]["code"], "rate_limited");
        assert_security_headers(&refused);
    }
    assert_eq!(
        app.web.hasher.computed(),
        hashed,
        "refused sign-ups hashed nothing"
    );
    assert_eq!(app.count_events("AccountRegistered").await, 3);
}

#[tokio::test]
async fn a_trusted_proxy_forwards_each_clients_address() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("RATE_LIMIT_SIGN_UP_PER_IP", "1/1m")
            .with("TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let from = |client: &str| {
        app.client
            .post(app.url("/api/users"))
            .header("x-forwarded-for", client)
            .json(&new_user())
    };
    assert_eq!(app.send(from("198.51.100.1")).await.status(), 202);
    assert_eq!(app.send(from("198.51.100.2")).await.status(), 202);
    assert_eq!(app.send(from("198.51.100.1")).await.status(), 429);
}

#[tokio::test]
async fn forwarded_for_is_walked_through_trusted_ranges_and_stops_at_garbage() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("RATE_LIMIT_SIGN_UP_PER_IP", "1/1m")
            .with("TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8"),
    )
    .await;
    let from = |chain: &str| {
        app.client
            .post(app.url("/api/users"))
            .header("x-forwarded-for", chain)
            .json(&new_user())
    };
    // 10.1.1.1 is a trusted hop; the client is the one left of it.
    assert_eq!(
        app.send(from("1.2.3.4, 198.51.100.1, 10.1.1.1"))
            .await
            .status(),
        202
    );
    assert_eq!(app.send(from("198.51.100.1")).await.status(), 429);
    // A hop that does not parse ends the walk at the proxy itself, so the
    // addresses left of it, however they rotate, share the proxy's budget.
    assert_eq!(app.send(from("198.51.100.2, unknown")).await.status(), 202);
    assert_eq!(app.send(from("198.51.100.3, unknown")).await.status(), 429);
    assert_eq!(app.send(from("198.51.100.4")).await.status(), 202);
}

#[tokio::test]
async fn resend_budgets_per_address_and_per_ip() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("RATE_LIMIT_RESEND_PER_EMAIL", "2/1m")
            .with("RATE_LIMIT_RESEND_PER_IP", "5/1m"),
    )
    .await;
    assert_eq!(app.resend("a@example.com").await.status(), 202);
    assert_eq!(app.resend("A@Example.com").await.status(), 202);
    assert_eq!(
        app.resend("a@example.com").await.status(),
        429,
        "same canonical address"
    );
    assert_eq!(app.resend("b@example.com").await.status(), 202);
    assert_eq!(app.resend("c@example.com").await.status(), 202);
    assert_eq!(
        app.resend("d@example.com").await.status(),
        429,
        "the IP's budget is spent"
    );
}

#[tokio::test]
async fn failed_activations_are_budgeted_per_ip() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", "3/1m"))
            .await;
    app.sign_up(&new_user()).await;
    let key = app.wait_for_mail(1).await[0].activation_key();
    for n in 0..3 {
        assert_eq!(app.activate(&format!("{n:0>32}")).await.status(), 410);
    }
    let refused = app.activate(&"9".repeat(32)).await;
    assert_eq!(
        refused.status(),
        429,
        "a bad key waits once the budget is spent"
    );
    assert!(!refused.header("retry-after").is_empty());
    // A live key is looked up before the budget is consulted, so failures
    // from the same address (a shared NAT, an attacker) never refuse it.
    assert_eq!(app.activate(&key).await.status(), 200);
    assert_eq!(app.count_events("AccountActivated").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_sheds_load_with_503() {
    let app = spawn_app_with(TestOptions::default().with("HASH_QUEUE_LIMIT", "2")).await;
    let users: Vec<Value> = (0..24).map(|_| new_user()).collect();
    let responses = join_all(users.iter().map(|user| app.sign_up(user))).await;
    let accepted = responses.iter().filter(|r| r.status() == 202).count();
    let shed: Vec<&TestResponse> = responses.iter().filter(|r| r.status() == 503).collect();
    assert_eq!(accepted + shed.len(), responses.len(), "only 202 or 503");
    assert!(
        !shed.is_empty() && accepted > 0,
        "{accepted} accepted, {} shed",
        shed.len()
    );
    for response in shed {
        assert_eq!(response.header("retry-after"), "1");
        assert_eq!(response.json()["error"]["code"], "overloaded");
        assert_security_headers(response);
    }
    assert_eq!(app.count_events("AccountRegistered").await, accepted as i64);
}

#[tokio::test]
async fn request_headers_never_change_the_link() {
    let app = spawn_app().await;
    let request = app
        .client
        .post(app.url("/api/users"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .json(&new_user());
    assert_eq!(app.send(request).await.status(), 202);
    let mail = app.wait_for_mail(1).await.remove(0);
    let link = mail.activation_link().expect("a link");
    assert!(link.starts_with(PUBLIC_BASE_URL), "{link}");
    assert!(!mail.text().contains("evil") && !mail.html().contains("evil"));
}

#[tokio::test]
async fn header_injection_through_the_username_is_impossible() {
    let app = spawn_app().await;
    for username in [
        "bob\r\nBcc: victim@example.com",
        "=?utf-8?b?Qm9i?=",
        "<b>bob</b>",
    ] {
        let mut user = new_user();
        user["username"] = json!(username);
        let response = app.sign_up(&user).await;
        assert_eq!(response.status(), 400, "{username:?}");
        assert!(response.json()["error"]["fields"]["username"].is_array());
    }
    assert!(app.mail.received().is_empty());
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let app = spawn_app().await;
    assert_security_headers(&app.sign_up(&new_user()).await);
    assert_security_headers(&app.get("/nope").await);
    assert_security_headers(&app.get("/healthz").await);
    let page = app.activation_page(&"a".repeat(32)).await;
    assert_security_headers(&page);
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'none'")
    );
    let long = app.get(&format!("/{}", "x".repeat(3000))).await;
    assert_eq!(long.status(), 414);
    assert_security_headers(&long);
}

#[tokio::test]
async fn logs_of_a_full_flow_hold_no_password_key_or_link() {
    // A current-thread runtime: the app's tasks run here and log here.
    let (logs, _guard) = CapturedLogs::install();

    let app = spawn_app().await;
    let user = new_user();
    app.sign_up(&user).await;
    let key = app.wait_for_mail(1).await[0].activation_key();
    app.activation_page(&key).await;
    assert_eq!(app.activate(&key).await.status(), 200);
    app.activate(&key).await;
    drop(app);

    let text = logs.text();
    assert!(text.contains("account registered") && text.contains("activation succeeded"));
    for secret in [PASSWORD, key.as_str(), "/activate/"] {
        assert!(!text.contains(secret), "{secret:?} appears in the logs");
    }
}

#[tokio::test]
async fn oversized_headers_are_refused_without_a_500() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "x".repeat(100 * 1024))
        .send()
        .await;
    assert_eq!(response.expect("an answer").status().as_u16(), 431);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the server is still serving"
    );
}

#[tokio::test]
async fn request_text_cannot_forge_a_log_line() {
    let (logs, _guard) = CapturedLogs::install();
    let app = spawn_app().await;
    app.get("/nope%0A%7B%22level%22%3A%22ERROR%22%7D%0Aforged")
        .await;
    let mut user = new_user();
    user["username"] = json!("mallory\n{\"level\":\"ERROR\",\"fields\":{\"message\":\"forged\"}}");
    app.sign_up(&user).await;
    drop(app);
    let text = logs.text();
    assert!(text.lines().count() > 2, "the app logged");
    for line in text.lines() {
        let parsed: Value = serde_json::from_str(line).expect("every line is one JSON object");
        assert!(
            !line.contains("forged"),
            "request text reached the log: {parsed}"
        );
    }
}

/// The `client_ip_hash` stored with a sign-up's events.
async fn stored_client_ip_hash(app: &TestApp) -> String {
    assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    sqlx::query_scalar(
        "SELECT metadata->>'client_ip_hash' FROM events WHERE event_type = 'AccountRegistered'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the sign-up's metadata")
}

#[tokio::test]
async fn the_client_ip_hash_is_keyed_by_the_secret_key() {
    use sha2::{Digest as _, Sha256};

    let mut hashes = Vec::new();
    for secret_key in ["a", "b"] {
        let app = spawn_app_with(
            TestOptions {
                run_worker: false,
                ..TestOptions::default()
            }
            .with("SECRET_KEY", secret_key.repeat(64)),
        )
        .await;
        hashes.push(stored_client_ip_hash(&app).await);
    }
    // Unkeyed, all of IPv4 is hashed in an hour and the log names clients.
    let unkeyed = hex::encode(&Sha256::digest(b"127.0.0.1")[..8]);
    assert_ne!(hashes[0], unkeyed, "not SHA-256 of the address");
    assert_ne!(
        hashes[0], hashes[1],
        "one client, two SECRET_KEYs: two hashes"
    );
    assert_eq!(hashes[0].len(), 16, "{}", hashes[0]);
}
