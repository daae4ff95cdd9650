//! Failure budgets under attack (issue 22, items 3, 4 and 9): a concurrent
//! burst spends no more than the budget, a spent budget neither links a
//! username to its email nor locks out an owner on a device they signed in
//! from, and live keys are never refused because others failed.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::{
    admin::api_key,
    helpers::{PASSWORD, TestApp, TestOptions, TestResponse, spawn_app_with},
    password_reset::reset_key,
};

const WRONG: &str = "not the password at all";

fn text(user: &Value, field: &str) -> String {
    user[field].as_str().expect("a string field").to_owned()
}

impl TestApp {
    /// Signs in presenting `device_token`, as a client that kept it would.
    async fn sign_in_on_device(
        &self,
        login: &str,
        password: &str,
        device_token: &str,
    ) -> TestResponse {
        self.post_json(
            "/api/sessions",
            &json!({ "login": login, "password": password, "device_token": device_token }),
        )
        .await
    }
}

/// How many answers have each of `statuses`, in order.
fn count(responses: &[TestResponse], statuses: &[u16]) -> Vec<usize> {
    statuses
        .iter()
        .map(|status| responses.iter().filter(|r| r.status() == *status).count())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_of_wrong_passwords_hashes_no_more_than_the_budget() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "10/1h"))
            .await;
    let user = app.active_user().await;
    let login = text(&user, "username");
    let before = app.web.hasher.computed();

    // 39 wrong guesses and the right password, all in flight at once.
    let guesses: Vec<&str> = std::iter::repeat_n(WRONG, 39).chain([PASSWORD]).collect();
    let responses = join_all(guesses.iter().map(|password| app.sign_in(&login, password))).await;

    let [refused, wrong, signed_in] = count(&responses, &[429, 401, 201])[..] else {
        unreachable!()
    };
    assert_eq!(refused + wrong + signed_in, 40, "only 429, 401 or 201");
    assert!(
        wrong <= 10,
        "{wrong} wrong passwords were hashed against a budget of 10"
    );
    assert!(
        app.web.hasher.computed() - before <= 11,
        "at most the budget's 10 wrong guesses and the right one were hashed"
    );
    if signed_in == 0 {
        assert_eq!(
            wrong, 10,
            "the right password was refused: the budget is spent"
        );
    }
    // The right password gave its unit back: whatever the order, the burst
    // and what follows it get exactly ten wrong guesses in all.
    let mut later = 0;
    while app.sign_in(&login, WRONG).await.status() == 401 {
        later += 1;
        assert!(wrong + later <= 10, "more wrong guesses than the budget");
    }
    assert_eq!(wrong + later, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_of_forged_admin_keys_is_held_to_the_budget() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP", "10/1h"))
            .await;
    let (live, _) = api_key(&app).await;
    // Shaped like keys, so each one is looked up in Postgres.
    let forged: Vec<String> = (0..39).map(|n| format!("pk_{n:0>43}")).collect();
    let keys: Vec<&str> = forged
        .iter()
        .map(String::as_str)
        .chain([live.as_str()])
        .collect();
    let responses = join_all(keys.iter().map(|key| app.admin_get("accounts", key))).await;

    let [refused, unauthorized, served] = count(&responses, &[429, 401, 200])[..] else {
        unreachable!()
    };
    assert_eq!(refused + unauthorized + served, 40, "only 429, 401 or 200");
    assert!(
        unauthorized <= 10,
        "{unauthorized} forged keys answered 401 against a budget of 10"
    );
    assert_eq!(served, 1, "the live key is served whatever the budget");
    assert_eq!(
        app.admin_get("accounts", &forged[0]).await.status(),
        429,
        "the budget is spent"
    );
}

#[tokio::test]
async fn a_spent_login_budget_neither_links_its_email_nor_locks_out_a_known_device() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "3/1h"))
            .await;
    let user = app.active_user().await;
    let other = app.active_user().await;
    let (username, email) = (text(&user, "username"), text(&user, "email"));
    // The owner signed in on this device before the attack.
    let earlier = app.sign_in(&username, PASSWORD).await;
    assert_eq!(earlier.status(), 201, "{}", earlier.text());
    let device_token = earlier.json()["device_token"].as_str().map(str::to_owned);
    let others_device = app.sign_in(&text(&other, "email"), PASSWORD).await.json()["device_token"]
        .as_str()
        .map(str::to_owned);

    for _ in 0..3 {
        assert_eq!(app.sign_in(&username, WRONG).await.status(), 401);
    }

    // The email answers like any other address: no link to the username.
    let unrelated = app.sign_in("somebody.else@example.com", WRONG).await;
    let by_email = app.sign_in(&email, WRONG).await;
    assert_eq!(unrelated.status(), 401);
    assert_eq!(by_email.status(), 401, "the email has a budget of its own");
    assert_eq!(app.sign_in(&email, PASSWORD).await.status(), 201);

    // The spent username: 429 even for the right password, unless the
    // device the owner signed in from before says who is asking.
    let device_token = device_token.expect("a device token from the earlier sign-in");
    let others_device = others_device.expect("a device token");
    let throttled = app.sign_in(&username, PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    assert!(!throttled.header("retry-after").is_empty());
    for not_this_accounts in ["forged-device-token", others_device.as_str()] {
        assert_eq!(
            app.sign_in_on_device(&username, PASSWORD, not_this_accounts)
                .await
                .status(),
            429,
            "a token of no device of this account is no token"
        );
    }
    assert_eq!(
        app.sign_in_on_device(&username, WRONG, &device_token)
            .await
            .status(),
        401,
        "the device's own budget is whole"
    );
    let on_device = app
        .sign_in_on_device(&username, PASSWORD, &device_token)
        .await;
    assert_eq!(on_device.status(), 201, "{}", on_device.text());
    assert_eq!(
        on_device.json()["device_token"],
        device_token,
        "the same device keeps its token"
    );
}

#[tokio::test]
async fn live_reset_and_admin_keys_work_after_others_spent_the_failure_budget() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", "3/1h")
            .with("RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP", "3/1h"),
    )
    .await;
    let user = app.active_user().await;
    let live_reset = reset_key(&app, &user, 2).await;
    let (live_admin, _) = api_key(&app).await;

    for n in 0..3 {
        let bad = format!("{n:0>32}");
        assert_eq!(
            app.reset_password(&bad, "a brand new passphrase 42")
                .await
                .status(),
            410
        );
        assert_eq!(
            app.admin_get("accounts", &format!("pk_{n:0>43}"))
                .await
                .status(),
            401
        );
    }
    let bad_reset = app
        .reset_password(&"9".repeat(32), "a brand new passphrase 42")
        .await;
    assert_eq!(bad_reset.status(), 429, "a bad reset key waits");
    assert!(!bad_reset.header("retry-after").is_empty());
    assert_eq!(
        app.admin_get("accounts", &format!("pk_{:9>43}", ""))
            .await
            .status(),
        429,
        "a bad admin key waits"
    );

    let reset = app
        .reset_password(&live_reset, "a brand new passphrase 42")
        .await;
    assert_eq!(reset.status(), 200, "{}", reset.text());
    assert_eq!(app.admin_get("accounts", &live_admin).await.status(), 200);
}
