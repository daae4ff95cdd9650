//! The admin API and `porter accounts`: keys, lookups, listing, history and
//! actions, on real Postgres, Redis and SMTP.

use std::collections::HashSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{
        TestApp, TestOptions, TestResponse, eventually, new_user, spawn_app, spawn_app_with,
    },
    operators::wait_until_projected,
};

/// A live API key's secret and id.
pub(crate) async fn api_key(app: &TestApp) -> (String, Uuid) {
    let created = porter::features::admin::api_keys::create(&app.pool, "tests")
        .await
        .expect("create a key");
    (created.secret, created.id)
}

impl TestApp {
    pub(crate) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method, self.url(&format!("/api/admin/{path}")));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub(crate) async fn admin_get(&self, path: &str, key: &str) -> TestResponse {
        self.admin(reqwest::Method::GET, path, Some(key), None)
            .await
    }

    pub(crate) async fn admin_post(
        &self,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> TestResponse {
        self.admin(reqwest::Method::POST, path, Some(key), body)
            .await
    }

    /// Signs `user` up and returns the new registration's id.
    async fn registered(&self, user: &Value, key: &str) -> Uuid {
        assert_eq!(self.sign_up(user).await.status(), 202);
        let email = user["email"].as_str().expect("email");
        let found = self
            .admin_get(&format!("accounts?email={email}"), key)
            .await;
        assert_eq!(found.status(), 200, "{}", found.text());
        found.json()["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid")
    }
}

#[tokio::test]
async fn every_route_refuses_a_missing_forged_or_revoked_key() {
    let app = spawn_app().await;
    let (key, key_id) = api_key(&app).await;
    let id = app.registered(&new_user(), &key).await;
    let (revoked, revoked_id) = api_key(&app).await;
    assert!(
        porter::features::admin::api_keys::revoke(&app.pool, revoked_id)
            .await
            .expect("revoke")
    );
    assert!(
        !porter::features::admin::api_keys::revoke(&app.pool, revoked_id)
            .await
            .expect("revoke")
    );
    let forged = format!("pk_{}", "A".repeat(43));
    let routes = [
        (
            reqwest::Method::GET,
            "accounts?status=pending".to_owned(),
            None,
        ),
        (reqwest::Method::GET, format!("accounts/{id}"), None),
        (reqwest::Method::GET, format!("accounts/{id}/events"), None),
        (
            reqwest::Method::POST,
            format!("accounts/{id}/resend-activation"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("accounts/{id}/activate"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("accounts/{id}/block"),
            Some(json!({ "reason": "test" })),
        ),
        (
            reqwest::Method::POST,
            format!("accounts/{id}/unblock"),
            None,
        ),
        (reqwest::Method::GET, "webhooks".to_owned(), None),
        (
            reqwest::Method::POST,
            "webhooks".to_owned(),
            Some(json!({ "url": "https://hooks.example/porter" })),
        ),
        (reqwest::Method::GET, format!("webhooks/{id}"), None),
        (reqwest::Method::DELETE, format!("webhooks/{id}"), None),
        (reqwest::Method::POST, format!("webhooks/{id}/pause"), None),
        (reqwest::Method::POST, format!("webhooks/{id}/resume"), None),
        (
            reqwest::Method::POST,
            format!("webhooks/{id}/rotate-secret"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("webhooks/{id}/replay"),
            Some(json!({ "from": "start" })),
        ),
    ];
    for (method, path, body) in &routes {
        for presented in [
            None,
            Some(forged.as_str()),
            Some(revoked.as_str()),
            Some("garbage"),
        ] {
            let refused = app
                .admin(method.clone(), path, presented, body.clone())
                .await;
            assert_eq!(refused.status(), 401, "{method} {path} with {presented:?}");
            assert_eq!(refused.json()["error"]["code"], "unauthorized");
            assert_eq!(refused.header("www-authenticate"), "Bearer");
        }
    }
    // With the live key every route answers (the events of the one that
    // acted are checked in the other tests).
    assert_eq!(
        app.admin_get("accounts?status=pending", &key)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.admin_get(&format!("accounts/{id}"), &key)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.admin_get(&format!("accounts/{id}/events"), &key)
            .await
            .status(),
        200
    );
    let keys = porter::features::admin::api_keys::list(&app.pool)
        .await
        .expect("list");
    let used = keys.iter().find(|k| k.id == key_id).expect("the live key");
    assert!(used.last_used_at.is_some() && used.revoked_at.is_none());
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&app.pool)
        .await
        .expect("hashes");
    assert!(
        stored
            .iter()
            .all(|hash| hash.len() == 32 && !hash.starts_with(b"pk_"))
    );
}

#[tokio::test]
async fn failed_admin_authentication_is_budgeted_per_client() {
    let app =
        spawn_app_with(TestOptions::default().with("RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP", "3/1m"))
            .await;
    let (key, _) = api_key(&app).await;
    for _ in 0..3 {
        assert_eq!(app.admin_get("accounts", "pk_wrong").await.status(), 401);
    }
    let throttled = app.admin_get("accounts", "pk_wrong").await;
    assert_eq!(throttled.status(), 429);
    assert!(!throttled.header("retry-after").is_empty());
    // Looked up first: others' failures never refuse a live key.
    assert_eq!(app.admin_get("accounts", &key).await.status(), 200);
}

#[tokio::test]
async fn lookups_show_state_and_history_without_password_hashes() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    let user = new_user();
    let id = app.registered(&user, &key).await;
    app.wait_for_mail(1).await;
    let username = user["username"].as_str().expect("username");
    let by_name = app
        .admin_get(
            &format!("accounts?username={}", username.to_uppercase()),
            &key,
        )
        .await;
    assert_eq!(by_name.status(), 200, "canonical forms are compared");
    let account = by_name.json();
    assert_eq!(account["id"], id.to_string());
    assert_eq!(account["status"], "pending");
    assert_eq!(account["locale"], "en");
    // Read right after the email was recorded: the stream, not the read model.
    let shown = eventually("the email to be recorded", || async {
        let shown = app.admin_get(&format!("accounts/{id}"), &key).await.json();
        (shown["emails_sent"] == 1).then_some(shown)
    })
    .await;
    assert_eq!(shown["last_delivery"]["outcome"], "sent");

    let history = app.admin_get(&format!("accounts/{id}/events"), &key).await;
    assert_eq!(history.status(), 200);
    let text = history.text();
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "{text}"
    );
    let types: Vec<String> = history.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "AccountRegistered",
            "ActivationRequested",
            "ActivationEmailSent"
        ]
    );

    assert_eq!(
        app.admin_get("accounts?email=nobody@example.com", &key)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.admin_get(&format!("accounts/{}", Uuid::new_v4()), &key)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.admin_get(&format!("accounts/{}/events", Uuid::new_v4()), &key)
            .await
            .status(),
        404
    );
    for bad in [
        "accounts/not-a-uuid",
        "accounts?email=not-an-address",
        "accounts?status=sleeping",
        "accounts?limit=0",
        "accounts?limit=201",
        "accounts?after=garbage",
        "accounts?colour=blue",
        "accounts?email=a@example.com&username=ada",
        "accounts?email=a@example.com&limit=5",
        "accounts?limit=5&limit=6",
    ] {
        let refused = app.admin_get(bad, &key).await;
        assert_eq!(refused.status(), 400, "{bad}");
        assert!(refused.json()["error"]["fields"].is_object(), "{bad}");
    }
    // A listing parameter given to a lookup is named, not blamed on `status`.
    let refused = app
        .admin_get("accounts?username=ada&limit=5&after=x", &key)
        .await;
    let fields = &refused.json()["error"]["fields"];
    let named: Vec<&String> = fields.as_object().expect("fields").keys().collect();
    assert_eq!(named, ["after", "limit"], "{fields}");
    // A listing parameter beside a lookup is blamed by its own name.
    for listing in ["status", "after", "limit"] {
        let refused = app
            .admin_get(&format!("accounts?username=ada&{listing}=5"), &key)
            .await;
        assert_eq!(refused.status(), 400, "{listing}");
        let fields = &refused.json()["error"]["fields"];
        assert_eq!(
            fields.as_object().map(|fields| fields.len()),
            Some(1),
            "{fields}"
        );
        assert!(fields[listing].is_array(), "{fields}");
    }
}

#[tokio::test]
async fn actions_apply_once_record_their_actor_and_conflict_otherwise() {
    let app = spawn_app().await;
    let (key, key_id) = api_key(&app).await;
    let id = app.registered(&new_user(), &key).await;
    app.wait_for_mail(1).await;

    // Resend: one more email, through the usual rules (once the first is
    // recorded; until then a resend merges into it).
    eventually("the first email to be recorded", || async {
        (app.count_events("ActivationEmailSent").await == 1).then_some(())
    })
    .await;
    let resent = app
        .admin_post(&format!("accounts/{id}/resend-activation"), &key, None)
        .await;
    assert_eq!(resent.status(), 202);
    app.wait_for_mail(2).await;

    // Manual activation, recorded as such with the key as actor.
    let activated = app
        .admin_post(&format!("accounts/{id}/activate"), &key, None)
        .await;
    assert_eq!(activated.status(), 200);
    assert_eq!(activated.json()["status"], "active");
    let again = app
        .admin_post(&format!("accounts/{id}/activate"), &key, None)
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.json()["error"]["code"], "already_active");
    assert_eq!(
        app.admin_post(&format!("accounts/{id}/resend-activation"), &key, None)
            .await
            .json()["error"]["code"],
        "not_pending"
    );
    let actor: String = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE event_type = 'AccountActivatedManually'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the activation event");
    assert_eq!(actor, format!("api-key:{key_id}"));

    // Block and unblock, each once.
    assert_eq!(
        app.admin_post(&format!("accounts/{id}/block"), &key, Some(json!({})))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.admin_post(
            &format!("accounts/{id}/block"),
            &key,
            Some(json!({ "reason": " " }))
        )
        .await
        .status(),
        400
    );
    let blocked = app
        .admin_post(
            &format!("accounts/{id}/block"),
            &key,
            Some(json!({ "reason": "chargeback" })),
        )
        .await;
    assert_eq!(blocked.status(), 200);
    assert_eq!(blocked.json()["status"], "blocked");
    assert_eq!(blocked.json()["block_reason"], "chargeback");
    let twice = app
        .admin_post(
            &format!("accounts/{id}/block"),
            &key,
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(twice.json()["error"]["code"], "already_blocked");
    let unblocked = app
        .admin_post(&format!("accounts/{id}/unblock"), &key, None)
        .await;
    assert_eq!(unblocked.json()["status"], "active");
    assert_eq!(
        app.admin_post(&format!("accounts/{id}/unblock"), &key, None)
            .await
            .json()["error"]["code"],
        "not_blocked"
    );
    let actors: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events WHERE event_type IN ('AccountBlocked', 'AccountUnblocked')",
    )
    .fetch_all(&app.pool)
    .await
    .expect("actors");
    assert_eq!(
        actors,
        [
            Some(format!("api-key:{key_id}")),
            Some(format!("api-key:{key_id}"))
        ]
    );
    assert_eq!(
        app.admin_post(&format!("accounts/{}/activate", Uuid::new_v4()), &key, None)
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_blocks_are_decided_by_the_aggregate() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    let id = app.registered(&new_user(), &key).await;
    app.admin_post(&format!("accounts/{id}/activate"), &key, None)
        .await;
    let path = format!("accounts/{id}/block");
    let attempts =
        (0..8).map(|n| app.admin_post(&path, &key, Some(json!({ "reason": format!("race {n}") }))));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(TestResponse::status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.count_events("AccountBlocked").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_returns_each_account_once_while_sign_ups_arrive() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    porter_test_support::generate::events(&app.pool, 250)
        .await
        .expect("generate 250 accounts");
    wait_until_projected(&app).await;
    let existing: HashSet<String> = sqlx::query_scalar("SELECT id::text FROM accounts")
        .fetch_all(&app.pool)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    assert_eq!(existing.len(), 250);

    let arrivals = async {
        for _ in 0..10 {
            assert_eq!(app.sign_up(&new_user()).await.status(), 202);
        }
    };
    let paging = async {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(cursor) => format!("accounts?limit=17&after={cursor}"),
                None => "accounts?limit=17".to_owned(),
            };
            let page = app.admin_get(&path, &key).await;
            assert_eq!(page.status(), 200);
            let page = page.json();
            seen.extend(
                page["accounts"]
                    .as_array()
                    .expect("accounts")
                    .iter()
                    .map(|account| account["id"].as_str().expect("id").to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => after = Some(cursor.to_owned()),
                None => break seen,
            }
        }
    };
    let ((), seen) = tokio::join!(arrivals, paging);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no account twice");
    assert!(
        existing.iter().all(|id| unique.contains(id)),
        "every existing account once"
    );

    let active = app
        .admin_get("accounts?status=active&limit=200", &key)
        .await
        .json();
    assert_eq!(active["accounts"].as_array().expect("accounts").len(), 200);
    assert!(active["next_cursor"].is_string());
}

#[tokio::test]
async fn the_cli_prints_json_that_parses_and_acts_as_an_operator() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    let user = new_user();
    let id = app.registered(&user, &key).await;
    let run = |args: Vec<String>| {
        let mut command = app.porter(&args.iter().map(String::as_str).collect::<Vec<_>>());
        async move {
            let output = command.output().await.expect("run porter");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).expect("utf-8")
        }
    };
    let email = user["email"].as_str().expect("email").to_owned();
    let found: Value = serde_json::from_str(
        &run(vec![
            "accounts".into(),
            "find".into(),
            "--email".into(),
            email,
            "--json".into(),
        ])
        .await,
    )
    .expect("JSON");
    assert_eq!(found["id"], id.to_string());
    let activated: Value = serde_json::from_str(
        &run(vec![
            "accounts".into(),
            "activate".into(),
            id.to_string(),
            "--json".into(),
        ])
        .await,
    )
    .expect("JSON");
    assert_eq!(activated["status"], "active");
    let history: Value = serde_json::from_str(
        &run(vec![
            "accounts".into(),
            "history".into(),
            id.to_string(),
            "--json".into(),
        ])
        .await,
    )
    .expect("JSON");
    let manual = history
        .as_array()
        .expect("events")
        .iter()
        .find(|event| event["type"] == "AccountActivatedManually")
        .expect("the manual activation")
        .clone();
    assert_eq!(manual["metadata"]["actor"], "operator:porter-cli");
    let table = run(vec!["accounts".into(), "show".into(), id.to_string()]).await;
    assert!(table.contains("status         active"), "{table}");

    let created: Value = serde_json::from_str(
        &run(vec![
            "api-keys".into(),
            "create".into(),
            "ci".into(),
            "--json".into(),
        ])
        .await,
    )
    .expect("JSON");
    let secret = created["key"].as_str().expect("key");
    assert!(secret.starts_with("pk_") && secret.len() == 46);
    assert_eq!(
        app.admin_get(&format!("accounts/{id}"), secret)
            .await
            .status(),
        200
    );
    let listed = run(vec!["api-keys".into(), "list".into()]).await;
    assert!(
        listed.contains("ci") && !listed.contains(secret),
        "{listed}"
    );
    run(vec![
        "api-keys".into(),
        "revoke".into(),
        created["id"].as_str().expect("id").into(),
    ])
    .await;
    assert_eq!(
        app.admin_get(&format!("accounts/{id}"), secret)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn blocking_ends_sign_in_and_sessions_and_unblocking_and_manual_activation_restore_it() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    let user = new_user();
    let username = user["username"].as_str().expect("username");
    let password = user["password"].as_str().expect("password");
    let id = app.registered(&user, &key).await;
    assert_eq!(
        app.sign_in(username, password).await.status(),
        403,
        "pending: not active yet"
    );
    // Manual activation is as good as the link.
    assert_eq!(
        app.admin_post(&format!("accounts/{id}/activate"), &key, None)
            .await
            .status(),
        200
    );
    let signed_in = app.sign_in(username, password).await;
    assert_eq!(signed_in.status(), 201);
    let token = signed_in.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(app.me(&token).await.status(), 200);
    let shown = app.admin_get(&format!("accounts/{id}"), &key).await.json();
    assert_eq!(shown["open_sessions"], 1);

    let blocked = app
        .admin_post(
            &format!("accounts/{id}/block"),
            &key,
            Some(json!({ "reason": "abuse" })),
        )
        .await;
    assert_eq!(blocked.status(), 200);
    assert_eq!(blocked.json()["open_sessions"], 0);
    assert_eq!(app.me(&token).await.status(), 401, "the old token is dead");
    let refused = app.sign_in(username, password).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json()["error"]["code"], "account_blocked");

    assert_eq!(
        app.admin_post(&format!("accounts/{id}/unblock"), &key, None)
            .await
            .status(),
        200
    );
    assert_eq!(app.sign_in(username, password).await.status(), 201);
}
