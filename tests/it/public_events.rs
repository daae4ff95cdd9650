//! The pull feed of public events: log order, each event once while
//! sign-ups commit, the public types only, and a long poll.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{TestApp, new_user, spawn_app};

async fn api_key(app: &TestApp) -> String {
    porter::features::admin::api_keys::create(&app.pool, "feed")
        .await
        .expect("create a key")
        .secret
}

async fn feed(app: &TestApp, key: &str, query: &str) -> Value {
    let response = app
        .send(
            app.client
                .get(app.url(&format!("/api/admin/events?{query}")))
                .bearer_auth(key),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text());
    response.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_returns_each_public_event_once_in_log_order_while_sign_ups_commit() {
    let app = spawn_app().await;
    let key = api_key(&app).await;
    let sign_ups = async {
        for _ in 0..15 {
            assert_eq!(app.sign_up(&new_user()).await.status(), 202);
        }
    };
    let reading = async {
        let mut seen = Vec::new();
        let mut cursor = "0.0".to_owned();
        for _ in 0..200 {
            let page = feed(&app, &key, &format!("limit=4&after={cursor}")).await;
            seen.extend(page["events"].as_array().expect("events").iter().cloned());
            cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
            if seen.len() >= 15 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (seen, cursor)
    };
    let ((), (mut seen, cursor)) = tokio::join!(sign_ups, reading);
    // Whatever committed after the last page is read from its cursor.
    loop {
        let page = feed(&app, &key, &format!("after={cursor}&limit=1000")).await;
        let events = page["events"].as_array().expect("events").clone();
        if events.is_empty() {
            break;
        }
        seen.extend(events);
    }
    let ids: Vec<&str> = seen.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no event twice"
    );
    assert_eq!(seen.len(), 15, "one account.registered per sign-up");
    assert!(seen.iter().all(|e| e["type"] == "account.registered"));
    let text = serde_json::to_string(&seen).expect("json");
    assert!(
        !text.contains("password") && !text.contains("argon2"),
        "{text}"
    );

    // Reading from the start again gives the same events, ids and order.
    let again = feed(&app, &key, "limit=1000").await;
    let again_ids: Vec<&str> = again["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(again_ids, ids);
}

#[tokio::test]
async fn the_feed_keeps_the_asked_types_and_waits_for_the_next_event() {
    let app = spawn_app().await;
    let key = api_key(&app).await;
    let user = new_user();
    app.sign_up(&user).await;
    let link = app.wait_for_mail(1).await.remove(0).activation_key();
    assert_eq!(app.activate(&link).await.status(), 200);
    crate::helpers::eventually("the activation to be readable", || async {
        let page = feed(&app, &key, "types=account.activated").await;
        (page["events"].as_array().expect("events").len() == 1).then_some(())
    })
    .await;
    let page = feed(&app, &key, "types=account.activated").await;
    let activated = &page["events"][0];
    assert_eq!(activated["data"], json!({ "method": "link" }));
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();

    // A long poll from the end answers when the next event commits, long
    // before its `wait` is over.
    let query = format!("after={cursor}&wait=20");
    let mut waiting = std::pin::pin!(async {
        let page = feed(&app, &key, &query).await;
        (page, Instant::now())
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .is_err(),
        "with nothing to read, the poll waits instead of answering at once"
    );
    let commit = async {
        assert_eq!(app.sign_up(&new_user()).await.status(), 202);
        Instant::now()
    };
    let ((page, answered_at), committed_at) = tokio::join!(waiting, commit);
    let after_commit = answered_at.saturating_duration_since(committed_at);
    assert!(
        after_commit < Duration::from_secs(10),
        "answered {after_commit:?} after the commit, as if it slept through `wait`"
    );
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["type"], "account.registered");

    for bad in [
        "types=account.deleted",
        "wait=31",
        "limit=0",
        "after=nope",
        "colour=red",
    ] {
        let response = app
            .send(
                app.client
                    .get(app.url(&format!("/api/admin/events?{bad}")))
                    .bearer_auth(&key),
            )
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let unauthorized = app.send(app.client.get(app.url("/api/admin/events"))).await;
    assert_eq!(unauthorized.status(), 401);
}
