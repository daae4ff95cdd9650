//! Registrations that cannot be hijacked, probed or stranded: supersession
//! of pending registrations, contested confirmation, "This wasn't me",
//! expiry, the username oracle, stranded requests and the per-address email
//! budget, on real Postgres, Redis and SMTP.

use std::time::Duration;

use porter::{
    features::accounts::{expiry, replay::ReplayOptions},
    platform::store::{self, Cursor},
};
use porter_test_support::smtp::ReceivedMail;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{
        PASSWORD, TestApp, TestOptions, TestResponse, eventually, new_user, spawn_app,
        spawn_app_with,
    },
    operators::{accounts, replay, wait_until_projected},
};

const ATTACKER_PASSWORD: &str = "the attacker knows this one";

/// A sign-up body for `email` with a fresh username and `password`.
fn sign_up_for(email: &Value, password: &str) -> Value {
    json!({
        "username": format!("u_{}", &Uuid::new_v4().simple().to_string()[..10]),
        "email": email,
        "password": password,
    })
}

impl TestApp {
    async fn confirm(&self, key: &str, password: Option<&str>) -> TestResponse {
        let body = password.map_or_else(|| json!({}), |password| json!({ "password": password }));
        self.post_json(&format!("/api/activate-account/{key}"), &body)
            .await
    }

    async fn cancel_registration(&self, key: &str) -> TestResponse {
        self.send(
            self.client
                .post(self.url(&format!("/api/activate-account/{key}/cancel"))),
        )
        .await
    }

    /// Waits until `sent` emails are recorded in the log: a request made
    /// before its predecessor's email is recorded merges into it.
    async fn wait_recorded(&self, sent: i64) {
        eventually("the emails to be recorded", || async {
            (self.count_events("ActivationEmailSent").await == sent).then_some(())
        })
        .await;
    }

    /// Waits for the `n`th email (counting from 1) and returns it.
    async fn nth_mail(&self, n: usize) -> ReceivedMail {
        self.wait_for_mail(n).await.remove(n - 1)
    }

    /// The canonical username the live holder of `email` registered with.
    async fn address_holder_username(&self, email: &str) -> Option<String> {
        sqlx::query_scalar(
            "SELECT u.value FROM unique_claims e JOIN unique_claims u \
             ON u.account_id = e.account_id AND u.kind = 'username' \
             WHERE e.kind = 'email' AND e.value = $1",
        )
        .bind(email.to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .expect("read claims")
    }

    /// Whether `password` is the one the registration named `username` would
    /// activate with.
    async fn stored_password_is(&self, username: &str, password: &str) -> bool {
        let account_id: Uuid = sqlx::query_scalar(
            "SELECT account_id FROM unique_claims WHERE kind = 'username' AND value = $1",
        )
        .bind(username.to_lowercase())
        .fetch_one(&self.pool)
        .await
        .expect("username claim");
        let account = self
            .web
            .commands
            .load(account_id)
            .await
            .expect("load")
            .expect("account");
        self.web
            .hasher
            .verify(
                porter::domain::Password::for_sign_in(password).expect("a password"),
                Some(account.password_hash),
            )
            .await
            .expect("verify")
            .matches
    }
}

#[tokio::test]
async fn attacker_first_the_owners_sign_up_takes_the_address_over() {
    let app = spawn_app().await;
    let victim = new_user()["email"].clone();
    let attacker = sign_up_for(&victim, ATTACKER_PASSWORD);
    assert_eq!(app.sign_up(&attacker).await.status(), 202);
    let attackers_link = app.nth_mail(1).await.activation_key();

    let owner = sign_up_for(&victim, PASSWORD);
    assert_eq!(app.sign_up(&owner).await.status(), 202);
    let owners_link = app.nth_mail(2).await.activation_key();

    // The earlier registration's links stop working, uniformly.
    assert_eq!(app.confirm(&attackers_link, None).await.status(), 410);
    assert_eq!(app.activation_page(&attackers_link).await.status(), 410);
    // The owner's registration superseded another, so it is contested: the
    // link alone does not confirm it, the owner's password does.
    let page = app.activation_page(&owners_link).await;
    assert_eq!(page.status(), 200);
    let owner_name = owner["username"].as_str().expect("username");
    assert!(
        page.text()
            .contains(&format!("<strong>{owner_name}</strong>"))
    );
    assert!(page.text().contains(r#"name="password""#));
    let refused = app.confirm(&owners_link, None).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json()["error"]["code"], "password_required");
    assert_eq!(
        observable(&app.confirm(&owners_link, Some(ATTACKER_PASSWORD)).await),
        observable(&refused),
        "a wrong password is the same refusal as none"
    );
    assert_eq!(
        app.confirm(&owners_link, Some(PASSWORD)).await.status(),
        200
    );

    // The credentials stored on activation are the owner's.
    assert!(app.stored_password_is(owner_name, PASSWORD).await);
    assert_eq!(app.count_events("AccountActivated").await, 1);
    assert_eq!(app.count_events("RegistrationSuperseded").await, 1);
    // The attacker's username was released with its registration.
    let mut reuse = new_user();
    reuse["username"] = attacker["username"].clone();
    assert_eq!(app.sign_up(&reuse).await.status(), 202);
}

#[tokio::test]
async fn owner_first_the_attackers_later_sign_up_cannot_be_confirmed_from_the_mailbox_alone() {
    let app = spawn_app().await;
    let victim = new_user()["email"].clone();
    let owner = sign_up_for(&victim, PASSWORD);
    assert_eq!(app.sign_up(&owner).await.status(), 202);
    let first_link = app.nth_mail(1).await.activation_key();

    let attacker = sign_up_for(&victim, ATTACKER_PASSWORD);
    assert_eq!(app.sign_up(&attacker).await.status(), 202);
    // The owner's mailbox now holds a link to the attacker's credentials.
    let attackers_link = app.nth_mail(2).await.activation_key();
    assert_eq!(app.confirm(&first_link, Some(PASSWORD)).await.status(), 410);
    assert_eq!(app.confirm(&attackers_link, None).await.status(), 403);
    assert_eq!(
        app.confirm(&attackers_link, Some(PASSWORD)).await.status(),
        403,
        "the owner's password is not the attacker's registration's"
    );

    // The owner signs up again: that registration supersedes the attacker's
    // and is confirmed with the owner's own password.
    let again = sign_up_for(&victim, PASSWORD);
    assert_eq!(app.sign_up(&again).await.status(), 202);
    let owners_link = app.nth_mail(3).await.activation_key();
    assert_eq!(
        app.confirm(&attackers_link, Some(ATTACKER_PASSWORD))
            .await
            .status(),
        410
    );
    assert_eq!(
        app.confirm(&owners_link, Some(PASSWORD)).await.status(),
        200
    );
    let again_name = again["username"].as_str().expect("username");
    assert!(app.stored_password_is(again_name, PASSWORD).await);
    assert_eq!(
        app.address_holder_username(victim.as_str().expect("email"))
            .await
            .as_deref(),
        Some(again_name.to_lowercase().as_str())
    );
}

#[tokio::test]
async fn an_uncontested_registration_keeps_the_one_click_confirmation() {
    let app = spawn_app().await;
    app.sign_up(&new_user()).await;
    let key = app.nth_mail(1).await.activation_key();
    let page = app.activation_page(&key).await;
    assert!(!page.text().contains(r#"name="password""#));
    // A password sent along is ignored, right or wrong.
    assert_eq!(
        app.confirm(&key, Some("whatever it is")).await.status(),
        200
    );
}

#[tokio::test]
async fn this_wasnt_me_cancels_the_registration_and_frees_its_claims() {
    let app = spawn_app().await;
    let user = new_user();
    app.sign_up(&user).await;
    let key = app.nth_mail(1).await.activation_key();
    let page = app.activation_page(&key).await;
    assert!(page.text().contains("This wasn't me"));
    assert!(
        page.text()
            .contains(&format!("/api/activate-account/{key}/cancel"))
    );
    assert_eq!(
        app.count_events("RegistrationCancelled").await,
        0,
        "GET changes nothing"
    );

    let cancelled = app.cancel_registration(&key).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(app.count_events("RegistrationCancelled").await, 1);
    assert_eq!(app.confirm(&key, None).await.status(), 410);
    assert_eq!(app.cancel_registration(&key).await.status(), 410);
    wait_until_projected(&app).await;
    assert_eq!(
        app.projected_status(user["email"].as_str().expect("email"))
            .await
            .as_deref(),
        Some("cancelled")
    );

    // Username and address are free: the same sign-up again is an ordinary,
    // uncontested registration.
    assert_eq!(app.sign_up(&user).await.status(), 202);
    let fresh = app.nth_mail(2).await.activation_key();
    assert_eq!(app.confirm(&fresh, None).await.status(), 200);
}

#[tokio::test]
async fn a_browser_form_post_of_this_wasnt_me_gets_a_page() {
    let app = spawn_app().await;
    app.sign_up(&new_user()).await;
    let key = app.nth_mail(1).await.activation_key();
    let response = app
        .send(
            app.client
                .post(app.url(&format!("/api/activate-account/{key}/cancel")))
                .header("accept", "text/html")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(""),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.text().contains("Sign-up cancelled"));
}

#[tokio::test]
async fn a_contested_confirmation_takes_the_password_as_a_form_field() {
    let app = spawn_app().await;
    let email = new_user()["email"].clone();
    app.sign_up(&sign_up_for(&email, ATTACKER_PASSWORD)).await;
    app.nth_mail(1).await;
    app.sign_up(&sign_up_for(&email, PASSWORD)).await;
    let key = app.nth_mail(2).await.activation_key();
    let form = |password: &str| {
        app.client
            .post(app.url(&format!("/api/activate-account/{key}")))
            .header("accept", "text/html")
            .form(&[("password", password)])
    };
    let wrong = app.send(form("not the password at all")).await;
    assert_eq!(wrong.status(), 403);
    assert!(wrong.text().contains("not the password chosen"));
    let right = app.send(form(PASSWORD)).await;
    assert_eq!(right.status(), 200);
    assert!(right.text().contains("Your account is active"));
}

#[tokio::test]
async fn wrong_passwords_on_a_contested_link_are_budgeted() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", "2/1m"))
            .await;
    let email = new_user()["email"].clone();
    app.sign_up(&sign_up_for(&email, ATTACKER_PASSWORD)).await;
    app.nth_mail(1).await;
    app.sign_up(&sign_up_for(&email, PASSWORD)).await;
    let key = app.nth_mail(2).await.activation_key();
    let hashes_before = app.web.hasher.computed();
    assert_eq!(
        app.confirm(&key, Some("guess number one!")).await.status(),
        403
    );
    assert_eq!(
        app.confirm(&key, Some("guess number two!")).await.status(),
        403
    );
    let throttled = app.confirm(&key, Some(PASSWORD)).await;
    assert_eq!(throttled.status(), 429, "no third guess within the window");
    assert_eq!(
        app.web.hasher.computed() - hashes_before,
        2,
        "a throttled guess costs no hash"
    );
}

#[tokio::test]
async fn expiry_releases_both_claims_once_whatever_the_number_of_sweepers() {
    let app = spawn_app().await;
    let users: Vec<Value> = (0..12).map(|_| new_user()).collect();
    for user in &users {
        assert_eq!(app.sign_up(user).await.status(), 202);
    }
    let links: Vec<String> = app
        .wait_for_mail(users.len())
        .await
        .iter()
        .map(ReceivedMail::activation_key)
        .collect();
    wait_until_projected(&app).await;

    // Two sweepers at once, as two worker processes would run them.
    let sweep = || expiry::expire_registrations(&app.web.commands, &app.pool, Duration::ZERO);
    let (a, b) = tokio::join!(sweep(), sweep());
    assert_eq!(a.expect("sweep") + b.expect("sweep"), users.len());
    assert_eq!(
        app.count_events("RegistrationExpired").await,
        i64::try_from(users.len()).expect("small"),
        "each registration expired exactly once"
    );
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM unique_claims")
        .fetch_one(&app.pool)
        .await
        .expect("count claims");
    assert_eq!(claims, 0);
    for link in &links {
        assert_eq!(app.confirm(link, None).await.status(), 410);
    }
    wait_until_projected(&app).await;
    let email = users[0]["email"].as_str().expect("email");
    assert_eq!(
        app.projected_status(email).await.as_deref(),
        Some("expired")
    );

    // A fresh sign-up can take both the username and the address.
    assert_eq!(app.sign_up(&users[0]).await.status(), 202);
    let fresh = app.nth_mail(users.len() + 1).await.activation_key();
    assert_eq!(app.confirm(&fresh, None).await.status(), 200);
}

#[tokio::test]
async fn the_workers_sweep_expires_registrations_after_registration_ttl() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("REGISTRATION_TTL", "1s")
            .with("SWEEP_INTERVAL", "100ms"),
    )
    .await;
    app.sign_up(&new_user()).await;
    let key = app.nth_mail(1).await.activation_key();
    eventually("the registration to expire", || async {
        (app.count_events("RegistrationExpired").await == 1).then_some(())
    })
    .await;
    assert_eq!(app.confirm(&key, None).await.status(), 410);
}

/// Everything a client sees of a response but its request id.
fn observable(response: &TestResponse) -> (u16, Value) {
    let mut body = response.json();
    if let Some(object) = body.as_object_mut() {
        object.remove("request_id");
    }
    (response.status(), body)
}

/// What an address can be when someone probes it with sign-ups.
#[derive(Debug, Clone, Copy)]
enum AddressState {
    Free,
    Pending,
    Active,
    Blocked,
}

impl AddressState {
    const ALL: [Self; 4] = [Self::Free, Self::Pending, Self::Active, Self::Blocked];

    /// A new address in this state.
    async fn make(self, app: &TestApp) -> Value {
        let user = match self {
            Self::Free => return new_user()["email"].clone(),
            Self::Pending => {
                let user = new_user();
                assert_eq!(app.sign_up(&user).await.status(), 202);
                user
            }
            Self::Active | Self::Blocked => app.active_user().await,
        };
        if let Self::Blocked = self {
            let email = user["email"].as_str().expect("email").to_lowercase();
            let owner = store::claim_holder(&app.pool, store::ClaimKind::Email, &email)
                .await
                .expect("read claims")
                .expect("the owner holds its address");
            let block = porter::domain::AccountCommand::Block {
                reason: "probe".into(),
                at: chrono::Utc::now(),
            };
            app.web
                .commands
                .execute(owner, block, &store::EventMetadata::default())
                .await
                .expect("block");
        }
        user["email"].clone()
    }
}

#[tokio::test]
async fn a_username_claim_answers_alike_whatever_the_address() {
    let app = spawn_app().await;
    let mut answers = vec![];
    for state in AddressState::ALL {
        // {u, address} then {u, another new address}: the username is held.
        let first = sign_up_for(&state.make(&app).await, PASSWORD);
        let mut second = sign_up_for(&new_user()["email"], PASSWORD);
        second["username"] = first["username"].clone();
        let held = [
            observable(&app.sign_up(&first).await),
            observable(&app.sign_up(&second).await),
        ];
        // {u1, address}, {u2, address}, then {u1, another new address}: the
        // later sign-up supersedes the earlier one and frees its username.
        let address = state.make(&app).await;
        let earlier = sign_up_for(&address, PASSWORD);
        let later = sign_up_for(&address, PASSWORD);
        let mut reuse = sign_up_for(&new_user()["email"], PASSWORD);
        reuse["username"] = earlier["username"].clone();
        let released = [
            observable(&app.sign_up(&earlier).await),
            observable(&app.sign_up(&later).await),
            observable(&app.sign_up(&reuse).await),
        ];
        answers.push((state, held, released));
    }
    let (_, held, released) = &answers[0];
    assert_eq!(held[0].0, 202);
    assert_eq!(held[1].0, 400, "the username is held whatever the address");
    assert_eq!(
        released.each_ref().map(|(status, _)| *status),
        [202, 202, 202],
        "a superseded sign-up's username is free again"
    );
    for (state, other_held, other_released) in &answers[1..] {
        assert_eq!(
            (other_held, other_released),
            (held, released),
            "{state:?} answers like a free address"
        );
    }
}

/// Moves the relay's checkpoint to the end of the log, as if it had pushed
/// every request there (it had: the web process pushed them first).
async fn relay_passed_everything(app: &TestApp) {
    let end: Cursor = store::last_committed(&app.pool).await.expect("log end");
    store::advance_checkpoint(&app.pool, "relay", end)
        .await
        .expect("advance the relay");
}

/// Deletes every Redis key of the app's namespace, as a failover to a
/// replica that had not received them would.
async fn lose_redis_namespace(app: &TestApp) {
    let mut redis = app.redis.clone();
    let pattern = format!("{}*", app.config.redis.namespace);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .expect("list keys");
    assert!(!keys.is_empty(), "the job was in Redis before");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .expect("delete keys");
}

#[tokio::test]
async fn a_resend_pushes_again_a_request_whose_job_redis_lost() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default().with("STRANDED_REQUEST_AGE", "1h")
    })
    .await;
    let user = new_user();
    app.sign_up(&user).await;
    relay_passed_everything(&app).await;
    lose_redis_namespace(&app).await;
    app.start_worker();

    let email = user["email"].as_str().expect("email");
    assert_eq!(app.resend(email).await.status(), 202);
    let key = app.nth_mail(1).await.activation_key();
    assert_eq!(app.confirm(&key, None).await.status(), 200);
    assert_eq!(
        app.count_events("ActivationRequested").await,
        1,
        "the resend merged into the outstanding request"
    );
}

#[tokio::test]
async fn the_sweep_pushes_again_a_request_whose_job_redis_lost() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
            .with("STRANDED_REQUEST_AGE", "1s")
            .with("SWEEP_INTERVAL", "100ms")
    })
    .await;
    app.sign_up(&new_user()).await;
    relay_passed_everything(&app).await;
    lose_redis_namespace(&app).await;
    app.start_worker();
    let key = app.nth_mail(1).await.activation_key();
    assert_eq!(app.confirm(&key, None).await.status(), 200);
}

#[tokio::test]
async fn replay_rebuilds_superseded_cancelled_and_expired_registrations() {
    let app = spawn_app().await;
    let expiring = new_user();
    app.sign_up(&expiring).await;
    app.nth_mail(1).await;
    wait_until_projected(&app).await;
    expiry::expire_registrations(&app.web.commands, &app.pool, Duration::ZERO)
        .await
        .expect("expire");

    let email = new_user()["email"].clone();
    app.sign_up(&sign_up_for(&email, ATTACKER_PASSWORD)).await;
    app.nth_mail(2).await;
    app.sign_up(&sign_up_for(&email, PASSWORD)).await;
    let contested = app.nth_mail(3).await.activation_key();
    assert_eq!(app.confirm(&contested, Some(PASSWORD)).await.status(), 200);

    app.sign_up(&new_user()).await;
    let cancelled = app.nth_mail(4).await.activation_key();
    assert_eq!(app.cancel_registration(&cancelled).await.status(), 200);
    wait_until_projected(&app).await;

    let live = accounts(&app.pool).await;
    let mut statuses: Vec<&str> = live.iter().map(|row| row.status.as_str()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["active", "cancelled", "expired", "superseded"]);
    let report = replay(&app.pool, ReplayOptions::default())
        .await
        .expect("replay");
    assert!(report.swapped);
    assert_eq!(accounts(&app.pool).await, live);
}

#[tokio::test]
async fn emails_to_one_address_stop_at_its_budget_while_answers_stay_the_same() {
    let app = spawn_app_with(TestOptions::default().with("EMAIL_PER_ADDRESS", "2/1h")).await;
    let user = new_user();
    let email = user["email"].as_str().expect("email");
    app.sign_up(&user).await;
    app.nth_mail(1).await;
    app.wait_recorded(1).await;
    assert_eq!(app.resend(email).await.status(), 202);
    app.nth_mail(2).await;
    app.wait_recorded(2).await;
    // The third request is recorded and answered alike, but not emailed.
    let third = app.resend(email).await;
    assert_eq!(third.status(), 202);
    eventually("the withheld email to be recorded", || async {
        (app.count_events("EmailWithheld").await == 1).then_some(())
    })
    .await;
    assert_eq!(app.count_events("ActivationRequested").await, 3);
    // Another address has its own budget.
    let other = new_user();
    app.sign_up(&other).await;
    let received = app.nth_mail(3).await;
    assert!(
        received
            .to
            .iter()
            .any(|to| to == other["email"].as_str().expect("email"))
    );
    assert_eq!(app.mail.received().len(), 3);
}

#[tokio::test]
async fn a_resend_is_carried_out_by_the_worker_for_pending_addresses_only() {
    let app = spawn_app().await;
    let pending = new_user();
    let email = pending["email"].as_str().expect("email");
    app.sign_up(&pending).await;
    app.nth_mail(1).await;
    app.wait_recorded(1).await;

    assert_eq!(app.resend("nobody.at.all@example.com").await.status(), 202);
    assert_eq!(app.resend(email).await.status(), 202);
    let resent = app.nth_mail(2).await;
    assert!(resent.to.iter().any(|to| to == email));
    assert_eq!(
        app.confirm(&resent.activation_key(), None).await.status(),
        200
    );
    // The worker has looked up both requests: one more activation request
    // for the pending address, nothing for the unknown one, and no third
    // email.
    eventually("both address requests to be done", || async {
        let mut redis = app.redis.clone();
        let stats =
            porter::platform::queue::backend::stats(&mut redis, &app.config.redis.namespace)
                .await
                .expect("queue stats");
        (stats.active == 0 && stats.running == 0 && stats.scheduled == 0).then_some(())
    })
    .await;
    assert_eq!(app.count_events("ActivationRequested").await, 2);
    assert_eq!(app.mail.received().len(), 2);
}
