//! Bad input gets the right status and a per-field message, never a 500, and
//! writes nothing.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestResponse, new_user, spawn_app};

async fn assert_error(app: &TestApp, response: TestResponse, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    assert_eq!(
        response.header("x-request-id"),
        body["request_id"].as_str().expect("id")
    );
    assert_eq!(app.total_events().await, 0, "no event written");
    body
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("content-type", "application/json")
                .body("{\"username\": "),
        )
        .await;
    assert_error(&app, response, 400, "malformed_json").await;
}

#[tokio::test]
async fn a_json_value_that_is_not_an_object_is_400() {
    let app = spawn_app().await;
    let response = app.post_json("/api/users", &json!(["a", "b"])).await;
    assert_error(&app, response, 400, "malformed_json").await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("content-type", "text/plain")
                .body(new_user().to_string()),
        )
        .await;
    assert_error(&app, response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app().await;
    let mut user = new_user();
    user["username"] = json!("x".repeat(17 * 1024));
    let response = app.sign_up(&user).await;
    assert_error(&app, response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn an_oversized_chunked_body_is_413() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 1024])).collect();
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
        )
        .await;
    assert_error(&app, response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn unknown_fields_are_400_and_named() {
    let app = spawn_app().await;
    let mut user = new_user();
    user["is_admin"] = json!(true);
    let body = assert_error(&app, app.sign_up(&user).await, 400, "validation_failed").await;
    assert_eq!(
        body["error"]["fields"]["is_admin"][0],
        "is not a known field"
    );
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = spawn_app().await;
    let body = json!({ "username": "a b", "email": "Bob <bob@example.com>", "password": "short" });
    let body = assert_error(&app, app.sign_up(&body).await, 400, "validation_failed").await;
    let fields = body["error"]["fields"].as_object().expect("fields");
    for field in ["username", "email", "password"] {
        assert!(fields[field][0].is_string(), "{field}: {body}");
    }
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_reported() {
    let app = spawn_app().await;
    let body = json!({ "username": 42, "password": PASSWORD });
    let body = assert_error(&app, app.sign_up(&body).await, 400, "validation_failed").await;
    assert_eq!(body["error"]["fields"]["username"][0], "must be a string");
    assert_eq!(body["error"]["fields"]["email"][0], "is required");
}

#[tokio::test]
async fn each_field_rule_is_enforced() {
    let app = spawn_app().await;
    let cases = [
        ("username", json!("ab")),
        ("username", json!("bob\r\nBcc: victim@example.com")),
        ("email", json!("not-an-address")),
        ("email", json!("a@b@example.com")),
        ("email", json!("bob@[127.0.0.1]")),
        ("email", json!(format!("{}@example.com", "a".repeat(250)))),
        ("password", json!("password")),
        ("password", json!("x".repeat(129))),
        ("password", json!("passwordpassword")),
    ];
    for (field, value) in cases {
        let mut user = new_user();
        user[field] = value.clone();
        let response = app.sign_up(&user).await;
        assert_eq!(response.status(), 400, "{field} = {value}");
        let body: Value = response.json();
        assert!(
            body["error"]["fields"][field][0].is_string(),
            "{field} = {value}: {body}"
        );
    }
    assert_eq!(app.total_events().await, 0);
}

#[tokio::test]
async fn a_password_containing_the_username_is_refused() {
    let app = spawn_app().await;
    let mut user = new_user();
    user["password"] = json!(format!(
        "my {} is great",
        user["username"].as_str().expect("username")
    ));
    let body = assert_error(&app, app.sign_up(&user).await, 400, "validation_failed").await;
    assert!(body["error"]["fields"]["password"][0].is_string());
}

#[tokio::test]
async fn a_taken_username_is_reported_on_its_field() {
    let app = spawn_app().await;
    let first = new_user();
    assert_eq!(app.sign_up(&first).await.status(), 202);
    let mut second = new_user();
    second["username"] = json!(first["username"].as_str().expect("username").to_uppercase());
    let response = app.sign_up(&second).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json();
    assert_eq!(body["error"]["fields"]["username"][0], "is already taken");
    assert_eq!(app.count_events("AccountRegistered").await, 1);
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_a_uniform_410() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    for key in [
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        &"A".repeat(32),
        &"a".repeat(33),
    ] {
        let response = app.activate(key).await;
        assert_eq!(response.status(), 410, "{key}");
        let mut body: Value = response.json();
        body["request_id"] = Value::Null;
        bodies.push(body);
        let page = app.activation_page(key).await;
        assert!(page.status() == 200 || page.status() == 410, "{key}");
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "identical bodies"
    );
    assert_eq!(app.total_events().await, 0);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let app = spawn_app().await;
    let missing = app.send(app.client.get(app.url("/nope"))).await;
    assert_error(&app, missing, 404, "not_found").await;
    let wrong = app.send(app.client.get(app.url("/api/users"))).await;
    assert_eq!(wrong.header("allow"), "POST");
    assert_error(&app, wrong, 405, "method_not_allowed").await;
}

/// Every route's path answers a method it does not serve with `405`, the
/// methods it does serve in `Allow` and in the message; a documented path
/// is never `404` for a wrong method, not even `/dev/mail`, whose `GET` is
/// `404` without `porter dev`.
#[tokio::test]
async fn every_path_answers_a_wrong_method_with_405_and_allow() {
    use reqwest::Method;
    let app = spawn_app().await;
    let (key, _) = crate::admin::api_key(&app).await;
    let id = uuid::Uuid::now_v7();
    let mut wrong_methods = vec![
        (Method::PUT, "/api/users".to_owned(), "POST"),
        (Method::POST, "/activate/k".to_owned(), "GET, HEAD"),
        (
            Method::GET,
            "/api/activate-account/resend".to_owned(),
            "POST",
        ),
        (Method::GET, "/api/activate-account/k".to_owned(), "POST"),
        (
            Method::GET,
            "/api/activate-account/k/cancel".to_owned(),
            "POST",
        ),
        (Method::PUT, "/api/sessions".to_owned(), "POST, DELETE"),
        (Method::GET, "/api/sessions/current".to_owned(), "DELETE"),
        (Method::POST, "/api/me".to_owned(), "GET, HEAD"),
        (Method::GET, "/api/me/password".to_owned(), "POST"),
        (Method::GET, "/api/password-reset".to_owned(), "POST"),
        (Method::GET, "/api/password-reset/k".to_owned(), "POST"),
        (Method::POST, "/reset-password/k".to_owned(), "GET, HEAD"),
        (Method::POST, "/healthz".to_owned(), "GET, HEAD"),
        (Method::DELETE, "/readyz".to_owned(), "GET, HEAD"),
        (Method::POST, "/api/openapi.json".to_owned(), "GET, HEAD"),
        (Method::POST, "/dev/mail".to_owned(), "GET, HEAD"),
        (Method::POST, "/api/admin/events".to_owned(), "GET"),
        (Method::HEAD, "/api/admin/accounts".to_owned(), "GET"),
        (Method::POST, format!("/api/admin/accounts/{id}"), "GET"),
        (
            Method::POST,
            format!("/api/admin/accounts/{id}/events"),
            "GET",
        ),
        (
            Method::DELETE,
            "/api/admin/webhooks".to_owned(),
            "GET, POST",
        ),
        (
            Method::POST,
            format!("/api/admin/webhooks/{id}"),
            "GET, DELETE",
        ),
    ];
    for action in ["resend-activation", "activate", "block", "unblock"] {
        wrong_methods.push((
            Method::GET,
            format!("/api/admin/accounts/{id}/{action}"),
            "POST",
        ));
    }
    for action in ["pause", "resume", "rotate-secret", "replay"] {
        wrong_methods.push((
            Method::GET,
            format!("/api/admin/webhooks/{id}/{action}"),
            "POST",
        ));
    }
    let mut wrong = Vec::new();
    for (method, path, allow) in wrong_methods {
        let response = app
            .send(
                app.client
                    .request(method.clone(), app.url(&path))
                    .bearer_auth(&key),
            )
            .await;
        let message = format!("This address accepts only {allow}.");
        let answered_405 = response.status() == 405
            && response.header("allow") == allow
            && (method == Method::HEAD || response.json()["error"]["message"] == message);
        if !answered_405 {
            wrong.push(format!(
                "{method} {path}: {} allow {:?}",
                response.status(),
                response.header("allow")
            ));
        }
    }
    for (method, path) in [
        (Method::POST, format!("/api/admin/accounts/{id}/nope")),
        (Method::GET, "/api/admin/nope".to_owned()),
        (Method::GET, "/dev/mail".to_owned()),
        (Method::GET, "/dev/mail/1/html".to_owned()),
    ] {
        let response = app
            .send(
                app.client
                    .request(method.clone(), app.url(&path))
                    .bearer_auth(&key),
            )
            .await;
        if response.status() != 404 {
            wrong.push(format!("{method} {path}: {} (not 404)", response.status()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Without a key, every admin path is 401 before it is looked up (sent
    // around `app.send`: the document has no undocumented path to check).
    let unknown = app
        .client
        .get(app.url("/api/admin/nope"))
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 401);
}

#[tokio::test]
async fn a_field_given_twice_is_a_400_on_that_field() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"username":"first_name","email":"twice@example.com","password":"{PASSWORD}","username":"second_name"}}"#
    );
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json()["error"]["fields"],
        serde_json::json!({ "username": ["is given more than once"] })
    );
    assert_eq!(app.count_events("AccountRegistered").await, 0);
}

#[tokio::test]
async fn control_characters_in_the_admin_apis_free_text_are_refused_per_field() {
    let app = spawn_app().await;
    let (key, _) = crate::admin::api_key(&app).await;
    let user = app.active_user().await;
    let email = user["email"].as_str().expect("email");
    let id = app
        .admin_get(&format!("accounts?email={email}"), &key)
        .await
        .json()["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    // What an operator's terminal would obey in `porter accounts show` or
    // `porter webhooks list`: ESC sequences, BEL, CR, a C1 CSI, a
    // right-to-left override.
    let hostile = [
        "\u{1b}]0;owned\u{7}",
        "chargeback\rfraud",
        "\u{1b}[2J",
        "\u{9b}31m",
        "\u{202e}kcabegrahc",
    ];
    for (path, field, value) in hostile
        .iter()
        .map(|text| (format!("accounts/{id}/block"), "reason", (*text).to_owned()))
        .chain(hostile.iter().map(|text| {
            (
                "webhooks".to_owned(),
                "url",
                format!("https://hooks.example/{text}"),
            )
        }))
    {
        let response = app
            .admin_post(&path, &key, Some(json!({ field: value })))
            .await;
        assert_eq!(response.status(), 400, "{path} {value:?}");
        let body = response.json();
        let message = body["error"]["fields"][field][0]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("control characters"), "{body}");
    }
    assert_eq!(app.count_events("AccountBlocked").await, 0);
    let listed = app.admin_get("webhooks", &key).await.json();
    assert_eq!(listed["subscriptions"], json!([]), "{listed}");
}
