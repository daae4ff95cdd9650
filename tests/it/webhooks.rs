//! Signed webhooks against a real receiver on 127.0.0.1 that checks every
//! signature with its own HMAC code: every public event delivered in log
//! order, nothing skipped through a receiver outage or a killed worker,
//! replay, pause and resume, secret rotation, `410`, the failure pause and
//! the refusal of private addresses.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::future::join_all;
use porter::{
    features::{
        public_events,
        webhooks::subscriptions::{self, Subscription},
    },
    platform::store::Cursor,
};
use porter_test_support::webhooks::{Delivery, WebhookReceiver};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    admin::api_key,
    helpers::{
        TestApp, TestOptions, eventually, eventually_within, new_user, spawn_app, spawn_app_with,
    },
};

/// Long enough for a busy machine to deliver a few hundred events.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

/// Subscribes `receiver` through `porter webhooks add`, as an operator
/// would, and tells it the secret; returns the subscription's id.
async fn subscribe(app: &TestApp, receiver: &WebhookReceiver, events: Option<&str>) -> Uuid {
    let mut args = vec!["webhooks", "add", "--json"];
    let url = receiver.url();
    args.push(&url);
    if let Some(events) = events {
        args.extend(["--events", events]);
    }
    let added: Value = serde_json::from_slice(&porter_ok(app, &args).await).expect("JSON");
    let secret = added["secret"].as_str().expect("a secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.trust(secret);
    Uuid::parse_str(added["id"].as_str().expect("an id")).expect("a uuid")
}

/// Runs `porter <args>` and returns its stdout, failing on a non-zero exit.
async fn porter_ok(app: &TestApp, args: &[&str]) -> Vec<u8> {
    let output = app.porter(args).output().await.expect("run porter");
    assert!(
        output.status.success(),
        "porter {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every public event of the log after `after`, in log order.
async fn public_events_after(app: &TestApp, after: Cursor) -> Vec<Value> {
    let page = public_events::feed(&app.pool, after, 100_000, None, Duration::ZERO)
        .await
        .expect("read the feed");
    page.events
        .iter()
        .map(|event| serde_json::to_value(event).expect("JSON"))
        .collect()
}

/// The `count` public events after `after`, once they are all readable
/// (a committed event is readable once every older transaction has ended).
async fn settled_public_events(app: &TestApp, after: Cursor, count: usize) -> Vec<Value> {
    eventually("the public events to settle", || async {
        let events = public_events_after(app, after).await;
        assert!(
            events.len() <= count,
            "more events than expected: {events:?}"
        );
        (events.len() == count).then_some(events)
    })
    .await
}

async fn subscription(app: &TestApp, id: Uuid) -> Subscription {
    subscriptions::get(&app.pool, id)
        .await
        .expect("read")
        .expect("the subscription exists")
}

/// Waits until `receiver` has had every one of `ids` answered `2xx`.
async fn wait_for_delivery(receiver: &WebhookReceiver, ids: &[String]) {
    eventually_within(DELIVERY_DEADLINE, "every event to be delivered", || async {
        let delivered: HashSet<String> = receiver.delivered().into_iter().map(|d| d.id).collect();
        ids.iter().all(|id| delivered.contains(id)).then_some(())
    })
    .await;
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Signs up `count` people and returns their sign-up bodies.
async fn sign_up(app: &TestApp, count: usize) -> Vec<Value> {
    let users: Vec<Value> = (0..count).map(|_| new_user()).collect();
    for response in join_all(users.iter().map(|user| app.sign_up(user))).await {
        assert_eq!(response.status(), 202, "{}", response.text());
    }
    users
}

/// The delivered attempts, each id once (the first time it was answered `2xx`).
fn first_deliveries(receiver: &WebhookReceiver) -> Vec<Delivery> {
    let mut seen = HashSet::new();
    receiver
        .delivered()
        .into_iter()
        .filter(|d| seen.insert(d.id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_event_is_delivered_signed_and_in_log_order() {
    let app = spawn_app().await;
    let everything = WebhookReceiver::start().await;
    let activations_only = WebhookReceiver::start().await;
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    subscribe(&app, &everything, None).await;
    subscribe(&app, &activations_only, Some("account.activated")).await;

    let users = sign_up(&app, 50).await;
    let mails = app.wait_for_mail(50).await;
    for mail in mails.iter().take(25) {
        assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
    }

    let expected = settled_public_events(&app, start, 75).await; // 50 registered, 25 activated
    wait_for_delivery(&everything, &ids(&expected)).await;
    let activated: Vec<Value> = expected
        .iter()
        .filter(|e| e["type"] == "account.activated")
        .cloned()
        .collect();
    wait_for_delivery(&activations_only, &ids(&activated)).await;

    let delivered = first_deliveries(&everything);
    let bodies: Vec<Value> = delivered.iter().map(Delivery::json).collect();
    assert_eq!(bodies, expected, "the feed's events, bodies and log order");
    let mut per_account: HashMap<String, Vec<String>> = HashMap::new();
    for body in &bodies {
        per_account
            .entry(body["account_id"].to_string())
            .or_default()
            .push(body["type"].as_str().expect("type").to_owned());
    }
    assert_eq!(per_account.len(), users.len());
    assert!(
        per_account
            .values()
            .all(|types| types[0] == "account.registered"),
        "each account's events in its order"
    );
    let now = chrono::Utc::now().timestamp();
    let document = crate::openapi::document();
    for delivery in everything.attempts() {
        let headers = [
            ("webhook-id", delivery.id.as_str()),
            ("webhook-timestamp", delivery.timestamp.as_str()),
            ("webhook-signature", delivery.signature.as_str()),
        ];
        let violation = crate::openapi::webhook_violation(&document, &headers, &delivery.json());
        assert_eq!(violation, None, "as the OpenAPI document describes");
        assert_eq!(
            delivery.verified_by,
            [0],
            "signed with the secret: {delivery:?}"
        );
        assert_eq!(delivery.content_type, "application/json");
        assert_eq!(
            delivery.json()["id"],
            delivery.id.as_str(),
            "webhook-id is the event id"
        );
        let timestamp: i64 = delivery.timestamp.parse().expect("unix seconds");
        assert!((now - timestamp).abs() < 300, "a current timestamp");
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(
            !text.contains("argon2") && !text.contains("password"),
            "{text}"
        );
    }
    assert_eq!(
        first_deliveries(&activations_only)
            .iter()
            .map(|d| d.json())
            .collect::<Vec<_>>(),
        activated,
        "a filtered subscription gets its types only, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_twenty_seconds_misses_nothing() {
    let app = spawn_app().await;
    let receiver = WebhookReceiver::start().await;
    receiver.answer(Some(500));
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    let id = subscribe(&app, &receiver, None).await;

    sign_up(&app, 5).await;
    let outage = async {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sign_up(&app, 2).await;
        }
    };
    outage.await;
    let failing = subscription(&app, id).await;
    assert!(failing.failing_since.is_some(), "{failing:?}");
    assert!(failing.failed_attempts >= 5, "{failing:?}");
    assert!(
        failing
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{failing:?}"
    );
    assert_eq!(
        failing.state, "active",
        "20 s is far below WEBHOOK_FAILURE_PAUSE"
    );
    let refused = receiver.attempts();
    assert!(refused.iter().all(|d| d.answered == 500));
    let first_id = refused[0].id.clone();
    assert!(
        refused.iter().filter(|d| d.id == first_id).count() >= 5,
        "the first event retried under the same id"
    );
    let listed = String::from_utf8(porter_ok(&app, &["webhooks", "list"]).await).expect("UTF-8");
    assert!(
        listed.contains("last error: the receiver answered 500"),
        "{listed}"
    );

    receiver.answer(None);
    let expected = settled_public_events(&app, start, 13).await;
    wait_for_delivery(&receiver, &ids(&expected)).await;
    let bodies: Vec<Value> = first_deliveries(&receiver)
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(bodies, expected, "everything, in log order, none skipped");
    let attempted: HashSet<String> = refused.into_iter().map(|d| d.id).collect();
    assert!(
        attempted.is_subset(&ids(&expected).into_iter().collect()),
        "stable ids"
    );
    let recovered = eventually("the deliveries to be recorded", || async {
        let now = subscription(&app, id).await;
        (now.delivered >= 13).then_some(now)
    })
    .await;
    assert_eq!(recovered.failing_since, None, "the failure record cleared");
    assert_eq!(recovered.failed_attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_subscription_is_taken_over_without_a_skipped_event() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.slow_down(Duration::from_millis(40));
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    let id = subscribe(&app, &receiver, None).await;
    let mut first = app.spawn_process("worker", 0);
    let holder = eventually("a worker to hold the subscription", || async {
        subscription(&app, id).await.lease_owner
    })
    .await;
    let mut second = app.spawn_process("worker", 0);

    sign_up(&app, 40).await;
    eventually("deliveries to be under way", || async {
        (receiver.delivered_count() >= 5).then_some(())
    })
    .await;
    // Kill whichever process holds the lease, in the middle of its deliveries.
    let first_pid = first.id().expect("a pid");
    let (doomed, survivor) = if holder.contains(&format!("-{first_pid}-")) {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    doomed.start_kill().expect("SIGKILL the delivering worker");
    doomed.wait().await.expect("the worker is gone");
    let delivered_before = receiver.delivered_count();

    let expected = settled_public_events(&app, start, 40).await;
    wait_for_delivery(&receiver, &ids(&expected)).await;
    let now_held_by = subscription(&app, id).await.lease_owner.expect("held");
    assert_ne!(
        now_held_by, holder,
        "the survivor took the subscription over"
    );
    let bodies: Vec<Value> = first_deliveries(&receiver)
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(bodies, expected, "none skipped, in log order");
    eprintln!(
        "killed after {delivered_before} deliveries; {} attempts for {} events",
        receiver.attempts().len(),
        expected.len()
    );
    survivor.start_kill().expect("stop the survivor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_again_from_a_position_with_the_same_ids() {
    let app = spawn_app().await;
    let receiver = WebhookReceiver::start().await;
    let before = sign_up(&app, 2).await;
    let id = subscribe(&app, &receiver, None).await;
    sign_up(&app, 3).await;
    let all = settled_public_events(&app, Cursor::default(), 5).await;
    wait_for_delivery(&receiver, &ids(&all[2..])).await;
    assert_eq!(
        receiver.delivered_count(),
        3,
        "from the moment it was added"
    );
    assert!(before.iter().all(|user| {
        !receiver
            .delivered()
            .iter()
            .any(|d| d.json()["data"]["username"] == user["username"])
    }));

    let id_text = id.to_string();
    porter_ok(&app, &["webhooks", "replay", &id_text, "--from", "start"]).await;
    eventually_within(
        DELIVERY_DEADLINE,
        "the log to be delivered again",
        || async { (receiver.delivered_count() == 8).then_some(()) },
    )
    .await;
    let again: Vec<Value> = receiver.delivered()[3..]
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(again, all, "the whole log again, same ids and bodies");

    let fourth = all[3]["id"].as_str().expect("id");
    porter_ok(&app, &["webhooks", "replay", &id_text, "--from", fourth]).await;
    eventually_within(DELIVERY_DEADLINE, "from the fourth event again", || async {
        (receiver.delivered_count() == 10).then_some(())
    })
    .await;
    let tail: Vec<String> = receiver.delivered()[8..]
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(tail, ids(&all[3..]));

    for bad in [
        "yesterday",
        "evt_00000000000000000000000000000000",
        "1.x",
        "999999999999.1",
    ] {
        let output = app
            .porter(&["webhooks", "replay", &id_text, "--from", bad])
            .output()
            .await
            .expect("run porter");
        assert!(!output.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("a replay starts from") || stderr.contains("no event"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_subscription_resumes_at_its_first_undelivered_event() {
    let app = spawn_app().await;
    let receiver = WebhookReceiver::start().await;
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    let id = subscribe(&app, &receiver, None).await;
    let id_text = id.to_string();
    sign_up(&app, 3).await;
    let first = settled_public_events(&app, start, 3).await;
    wait_for_delivery(&receiver, &ids(&first)).await;

    porter_ok(&app, &["webhooks", "pause", &id_text]).await;
    sign_up(&app, 3).await;
    // The worker sees the pause before its next batch and lets the
    // subscription go; one that delivered anyway would show it here.
    eventually("the worker to let the paused subscription go", || async {
        subscription(&app, id)
            .await
            .lease_owner
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(receiver.delivered_count(), 3, "nothing while paused");
    let paused = subscription(&app, id).await;
    assert_eq!(paused.state, "paused");
    assert_eq!(
        paused.state_reason.as_deref(),
        Some("paused by an operator")
    );
    let again = app
        .porter(&["webhooks", "pause", &id_text])
        .output()
        .await
        .expect("run porter");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is paused, not active"));

    porter_ok(&app, &["webhooks", "resume", &id_text]).await;
    let all = settled_public_events(&app, start, 6).await;
    wait_for_delivery(&receiver, &ids(&all)).await;
    let bodies: Vec<Value> = first_deliveries(&receiver)
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(
        bodies, all,
        "the paused events after the others, none skipped"
    );

    porter_ok(&app, &["webhooks", "remove", &id_text]).await;
    assert!(
        subscriptions::get(&app.pool, id)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends() {
    let app = spawn_app_with(TestOptions::default().with("WEBHOOK_SECRET_OVERLAP", "3s")).await;
    let receiver = WebhookReceiver::start().await;
    let id = subscribe(&app, &receiver, None).await;
    sign_up(&app, 1).await;
    eventually("a delivery", || async {
        (receiver.delivered_count() == 1).then_some(())
    })
    .await;

    let rotated: Value = serde_json::from_slice(
        &porter_ok(
            &app,
            &["webhooks", "rotate-secret", &id.to_string(), "--json"],
        )
        .await,
    )
    .expect("JSON");
    let new_secret = rotated["secret"].as_str().expect("secret");
    receiver.trust(new_secret);
    sign_up(&app, 1).await;
    eventually("a delivery after the rotation", || async {
        (receiver.delivered_count() == 2).then_some(())
    })
    .await;
    let during = &receiver.delivered()[1];
    assert_eq!(during.verified_by, [0, 1], "both secrets sign: {during:?}");
    assert_eq!(during.signature.split(' ').count(), 2);
    let headers = [
        ("webhook-id", during.id.as_str()),
        ("webhook-timestamp", during.timestamp.as_str()),
        ("webhook-signature", during.signature.as_str()),
    ];
    let document = crate::openapi::document();
    assert_eq!(
        crate::openapi::webhook_violation(&document, &headers, &during.json()),
        None
    );

    eventually("the overlap to end", || async {
        subscription(&app, id)
            .await
            .previous_secret_until
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the rotated-out secret to be deleted", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT previous_secret IS NULL AND previous_secret_until IS NULL \
             FROM webhook_subscriptions WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("read the subscription")
        .then_some(())
    })
    .await;
    sign_up(&app, 1).await;
    eventually("a delivery after the overlap", || async {
        (receiver.delivered_count() == 3).then_some(())
    })
    .await;
    let after = &receiver.delivered()[2];
    assert_eq!(after.verified_by, [1], "only the new secret: {after:?}");
    assert_eq!(after.signature.split(' ').count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_and_failing_past_the_pause_pauses() {
    let app = spawn_app_with(TestOptions::default().with("WEBHOOK_FAILURE_PAUSE", "2s")).await;
    let gone = WebhookReceiver::start().await;
    gone.answer(Some(410));
    let failing = WebhookReceiver::start().await;
    failing.answer(Some(503));
    let gone_id = subscribe(&app, &gone, None).await;
    let failing_id = subscribe(&app, &failing, None).await;
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    sign_up(&app, 2).await;

    let disabled = eventually("the 410 to disable its subscription", || async {
        let now = subscription(&app, gone_id).await;
        (now.state == "disabled").then_some(now)
    })
    .await;
    assert_eq!(
        disabled.state_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert_eq!(gone.attempts().len(), 1, "no retry after a 410");

    let paused = eventually("failing for 2 s to pause the other", || async {
        let now = subscription(&app, failing_id).await;
        (now.state == "paused").then_some(now)
    })
    .await;
    assert!(
        paused
            .state_reason
            .as_deref()
            .unwrap_or_default()
            .contains("WEBHOOK_FAILURE_PAUSE")
    );
    let attempts = failing.attempts().len();
    eventually("the worker to let the paused subscription go", || async {
        subscription(&app, failing_id)
            .await
            .lease_owner
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        failing.attempts().len(),
        attempts,
        "a paused subscription is not attempted"
    );
    assert_eq!(
        attempts as i64, paused.failed_attempts,
        "every attempt the receiver saw was recorded before the pause"
    );

    failing.answer(None);
    porter_ok(&app, &["webhooks", "resume", &failing_id.to_string()]).await;
    let expected = settled_public_events(&app, start, 2).await;
    wait_for_delivery(&failing, &ids(&expected)).await;
    let bodies: Vec<Value> = first_deliveries(&failing)
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(bodies, expected, "resumed at the first undelivered event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_when_added_and_when_sent_to() {
    let app =
        spawn_app_with(TestOptions::default().with("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "false"))
            .await;
    for url in [
        "http://127.0.0.1:6379/",
        "http://localhost/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://10.0.0.7/",
        "http://[::ffff:192.168.0.1]/",
    ] {
        let output = app
            .porter(&["webhooks", "add", url])
            .output()
            .await
            .expect("run porter");
        assert!(!output.status.success(), "{url} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("WEBHOOK_ALLOW_PRIVATE_NETWORKS is off"),
            "{url}: {stderr}"
        );
    }
    let unknown_type = app
        .porter(&[
            "webhooks",
            "add",
            "https://hooks.example/x",
            "--events",
            "account.deleted",
        ])
        .output()
        .await
        .expect("run porter");
    assert!(String::from_utf8_lossy(&unknown_type.stderr).contains("unknown event type"));
    let (key, _) = api_key(&app).await;
    let through_the_api = app
        .admin_post(
            "webhooks",
            &key,
            Some(json!({ "url": "http://169.254.169.254/latest/meta-data/" })),
        )
        .await;
    assert_eq!(through_the_api.status(), 400);
    let message = through_the_api.json()["error"]["fields"]["url"][0].clone();
    assert!(
        message
            .as_str()
            .unwrap_or_default()
            .contains("link-local or metadata"),
        "{message}"
    );
    // A name is refused without saying where it points: the API must not
    // map the internal DNS for whoever holds a key.
    let named = app
        .admin_post(
            "webhooks",
            &key,
            Some(json!({ "url": "http://localhost:6379/" })),
        )
        .await;
    assert_eq!(named.status(), 400);
    let message = named.json()["error"]["fields"]["url"][0].to_string();
    assert!(
        message.contains("localhost resolves to a non-public address")
            && !message.contains("127.0.0.1"),
        "{message}"
    );
    assert!(
        subscriptions::list(&app.pool)
            .await
            .expect("list")
            .is_empty()
    );

    // A subscription that got in anyway (a name that resolved elsewhere when
    // it was added) is refused again at send time: nothing reaches it.
    let receiver = WebhookReceiver::start().await;
    let added = subscriptions::add(&app.pool, &receiver.url(), None)
        .await
        .expect("add");
    sign_up(&app, 1).await;
    let refused = eventually("the send to be refused", || async {
        let now = subscription(&app, added.id).await;
        (now.failed_attempts > 0).then_some(now)
    })
    .await;
    let error = refused.last_error.expect("an error");
    assert!(
        error.contains("refused") && error.contains("loopback"),
        "{error}"
    );
    assert!(receiver.attempts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_subscriptions_state_and_lag() {
    let app = spawn_app().await;
    let receiver = WebhookReceiver::start().await;
    receiver.answer(Some(500));
    let id = subscribe(&app, &receiver, None).await;
    sign_up(&app, 2).await;
    eventually("a failed attempt", || async {
        (subscription(&app, id).await.failed_attempts > 0).then_some(())
    })
    .await;
    let scrape = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let labels = format!("subscription=\"{id}\"");
    for metric in [
        "porter_webhook_lag_events",
        "porter_webhook_lag_seconds",
        "porter_webhook_failed_attempts",
        "porter_webhook_subscription_state",
    ] {
        assert!(
            scrape
                .lines()
                .any(|line| line.starts_with(metric) && line.contains(&labels)),
            "{metric} for {id} in:\n{scrape}"
        );
    }
    let status = String::from_utf8(porter_ok(&app, &["status"]).await).expect("UTF-8");
    assert!(status.contains(&format!("webhook {id} active")), "{status}");
    assert!(
        status.contains(&format!("warning: webhook {id} is failing")),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_keeps_its_deliverer_and_gets_each_event_once() {
    // Answers take longer than the lease: the holder must renew it between
    // deliveries, or the second worker would take over and deliver too.
    let app = spawn_app_with(TestOptions::default().with("WEBHOOK_LEASE", "1s")).await;
    app.start_worker();
    let receiver = WebhookReceiver::start().await;
    receiver.slow_down(Duration::from_millis(400));
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    subscribe(&app, &receiver, None).await;
    sign_up(&app, 6).await;
    let expected = settled_public_events(&app, start, 6).await;
    wait_for_delivery(&receiver, &ids(&expected)).await;
    let attempts: Vec<Value> = receiver.attempts().iter().map(Delivery::json).collect();
    assert_eq!(
        attempts, expected,
        "each event once, in order, by one deliverer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_subscriptions_and_explains_bad_input() {
    let app = spawn_app().await;
    let (key, _) = api_key(&app).await;
    let receiver = WebhookReceiver::start().await;

    for (body, field) in [
        (json!({}), "url"),
        (json!({ "url": "ftp://hooks.example/x" }), "url"),
        (json!({ "url": "http://user:pw@hooks.example/x" }), "url"),
        (
            json!({ "url": receiver.url(), "types": "account.deleted" }),
            "types",
        ),
        (
            json!({ "url": receiver.url(), "types": ["account.activated"] }),
            "types",
        ),
        (
            json!({ "url": receiver.url(), "secret": "whsec_mine" }),
            "secret",
        ),
    ] {
        let refused = app.admin_post("webhooks", &key, Some(body.clone())).await;
        assert_eq!(refused.status(), 400, "{body}: {}", refused.text());
        assert!(
            refused.json()["error"]["fields"][field].is_array(),
            "{body}: {}",
            refused.text()
        );
    }
    let created = app
        .admin_post(
            "webhooks",
            &key,
            Some(json!({ "url": receiver.url(), "types": "account.registered,account.activated" })),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    let created = created.json();
    let secret = created["secret"].as_str().expect("the secret, once");
    receiver.trust(secret);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["state"], "active");
    assert_eq!(
        created["event_types"],
        json!(["account.registered", "account.activated"])
    );

    let listed = app.admin_get("webhooks", &key).await.json();
    assert_eq!(listed["subscriptions"].as_array().expect("list").len(), 1);
    assert!(
        !listed.to_string().contains(secret),
        "a secret is shown once"
    );
    let shown = app.admin_get(&format!("webhooks/{id}"), &key).await;
    assert_eq!(shown.status(), 200);
    assert!(shown.json()["secret"].is_null());
    assert_eq!(
        app.admin_get("webhooks/not-a-uuid", &key).await.status(),
        400
    );
    let unknown = app
        .admin_get(&format!("webhooks/{}", Uuid::now_v7()), &key)
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json()["error"]["code"], "subscription_not_found");

    sign_up(&app, 1).await;
    eventually("a delivery", || async {
        (receiver.delivered_count() == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.delivered()[0].verified_by, [0]);

    for (action, state, conflict) in [
        ("pause", "paused", "not_active"),
        ("resume", "active", "already_active"),
    ] {
        let path = format!("webhooks/{id}/{action}");
        let done = app.admin_post(&path, &key, None).await;
        assert_eq!(done.json()["state"], state);
        let again = app.admin_post(&path, &key, None).await;
        assert_eq!(again.status(), 409);
        assert_eq!(again.json()["error"]["code"], conflict);
    }

    let rotated = app
        .admin_post(&format!("webhooks/{id}/rotate-secret"), &key, None)
        .await
        .json();
    let new_secret = rotated["secret"].as_str().expect("a new secret");
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_until"].is_string());
    receiver.trust(new_secret);

    for from in ["", "nope", "evt_0", "1.2.3"] {
        let refused = app
            .admin_post(
                &format!("webhooks/{id}/replay"),
                &key,
                Some(json!({ "from": from })),
            )
            .await;
        assert_eq!(refused.status(), 400, "{from}");
        assert!(refused.json()["error"]["fields"]["from"].is_array());
    }
    let replayed = app
        .admin_post(
            &format!("webhooks/{id}/replay"),
            &key,
            Some(json!({ "from": "start" })),
        )
        .await;
    assert_eq!(replayed.status(), 200, "{}", replayed.text());
    eventually(
        "the replayed delivery, signed with both secrets",
        || async {
            let delivered = receiver.delivered();
            (delivered.len() == 2).then(|| delivered[1].clone())
        },
    )
    .await;
    let second = &receiver.delivered()[1];
    assert_eq!(second.id, receiver.delivered()[0].id, "the same id again");
    assert_eq!(second.verified_by, [0, 1]);

    let removed = app
        .admin(
            reqwest::Method::DELETE,
            &format!("webhooks/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let gone = app
        .admin(
            reqwest::Method::DELETE,
            &format!("webhooks/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_everything_once_it_listens() {
    let app = spawn_app().await;
    // A port nothing listens on yet: every attempt is refused.
    let port = crate::services::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/porter");
    let added: Value =
        serde_json::from_slice(&porter_ok(&app, &["webhooks", "add", "--json", &url]).await)
            .expect("JSON");
    let id = Uuid::parse_str(added["id"].as_str().expect("id")).expect("uuid");
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    sign_up(&app, 3).await;
    let refused = eventually("attempts to be refused", || async {
        let now = subscription(&app, id).await;
        (now.failed_attempts >= 3).then_some(now)
    })
    .await;
    let error = refused.last_error.expect("an error");
    assert!(error.contains("Connection refused"), "{error}");

    let receiver = WebhookReceiver::start_on(port).await;
    receiver.trust(added["secret"].as_str().expect("secret"));
    let expected = settled_public_events(&app, start, 3).await;
    wait_for_delivery(&receiver, &ids(&expected)).await;
    let bodies: Vec<Value> = first_deliveries(&receiver)
        .iter()
        .map(Delivery::json)
        .collect();
    assert_eq!(bodies, expected, "everything, in order, once it listens");
    assert!(receiver.attempts().iter().all(|d| d.verified_by == [0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_share_the_subscriptions_and_a_late_one_gets_its_share() {
    let app = spawn_app().await;
    let receivers = join_all((0..4).map(|_| WebhookReceiver::start())).await;
    let mut ids = Vec::new();
    for receiver in &receivers {
        ids.push(subscribe(&app, receiver, None).await);
    }
    let holders = || async {
        let mut holders: HashMap<String, usize> = HashMap::new();
        for id in &ids {
            if let Some(owner) = subscription(&app, *id).await.lease_owner {
                *holders.entry(owner).or_default() += 1;
            }
        }
        holders
    };
    eventually("the one worker to hold all four", || async {
        let holders = holders().await;
        (holders.values().sum::<usize>() == 4 && holders.len() == 1).then_some(())
    })
    .await;

    // A second worker starts: the first lets two go and the second takes them.
    app.start_worker();
    let start = porter::platform::store::read_horizon(&app.pool)
        .await
        .expect("horizon");
    sign_up(&app, 10).await;
    eventually("two workers holding two each", || async {
        let holders = holders().await;
        let counts: Vec<usize> = holders.values().copied().collect();
        (counts == [2, 2]).then_some(())
    })
    .await;
    sign_up(&app, 10).await;
    let expected = settled_public_events(&app, start, 20).await;
    for receiver in &receivers {
        wait_for_delivery(receiver, &crate::webhooks::ids(&expected)).await;
        let bodies: Vec<Value> = first_deliveries(receiver)
            .iter()
            .map(Delivery::json)
            .collect();
        assert_eq!(
            bodies, expected,
            "each subscription whole and in order across the handover"
        );
    }
}
