//! Locales end to end: the sign-up's `locale` or its `Accept-Language`
//! becomes the account's, and every email and page the account gets is in
//! it, whoever opens the link; the brand fills them; unknown or malformed
//! locales are a `400` on the field.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestOptions, new_user, spawn_app, spawn_app_with};

/// The locale recorded in the account's `AccountRegistered`.
async fn recorded_locale(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar(
        "SELECT payload->>'locale' FROM events \
         WHERE event_type = 'AccountRegistered' AND payload->>'email' = $1",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .expect("the registration")
}

fn with_locale(locale: &str) -> Value {
    let mut user = new_user();
    user["locale"] = json!(locale);
    user
}

fn email_of(user: &Value) -> &str {
    user["email"].as_str().expect("email")
}

#[tokio::test]
async fn the_sign_up_locale_is_used_for_the_email_and_every_page() {
    let app = spawn_app().await;
    let user = with_locale("de-AT");
    assert_eq!(app.sign_up(&user).await.status(), 202);
    assert_eq!(recorded_locale(&app, email_of(&user)).await, "de");

    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Aktivieren Sie Ihr Porter-Konto")
    );
    assert_eq!(mail.header("Content-Language").as_deref(), Some("de"));
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(mail.header("Date").is_some());
    assert!(mail.header("Message-ID").is_some());
    let text = mail.text();
    assert!(text.contains("Der Link läuft in 15 Minuten ab"), "{text}");
    assert!(mail.html().contains("<html lang=\"de\">"));

    // A browser that prefers English still gets the account's language.
    let key = mail.activation_key();
    let page = app
        .send(
            app.client
                .get(app.url(&format!("/activate/{key}")))
                .header("accept-language", "en-US, en;q=0.9"),
        )
        .await;
    assert_eq!(page.status(), 200);
    assert!(page.text().contains("<html lang=\"de\">"));
    assert!(page.text().contains("<h1>Das Konto <strong>"));

    let done = app
        .send(
            app.client
                .post(app.url(&format!("/api/activate-account/{key}")))
                .header("accept", "text/html")
                .header("accept-language", "en"),
        )
        .await;
    assert_eq!(done.status(), 200);
    assert!(
        done.text().contains("<h1>Ihr Konto ist aktiv</h1>"),
        "{}",
        done.text()
    );
}

#[tokio::test]
async fn accept_language_decides_when_the_sign_up_names_no_locale() {
    let app = spawn_app().await;
    let german = new_user();
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("accept-language", "fr-CH, fr;q=0.9, de;q=0.8, en;q=0.7")
                .json(&german),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(recorded_locale(&app, email_of(&german)).await, "de");

    let english = new_user();
    assert_eq!(app.sign_up(&english).await.status(), 202);
    assert_eq!(recorded_locale(&app, email_of(&english)).await, "en");

    let mails = app.wait_for_mail(2).await;
    let subject_to = |address: &str| {
        mails
            .iter()
            .find(|m| m.to == [address.to_owned()])
            .and_then(|m| m.header("Subject"))
            .expect("a mail")
    };
    assert_eq!(
        subject_to(email_of(&german)),
        "Aktivieren Sie Ihr Porter-Konto"
    );
    assert_eq!(
        subject_to(email_of(&english)),
        "Activate your Porter account"
    );
}

#[tokio::test]
async fn default_locale_answers_when_nothing_matches() {
    let app = spawn_app_with(TestOptions::default().with("DEFAULT_LOCALE", "de")).await;
    let user = new_user();
    let response = app
        .send(
            app.client
                .post(app.url("/api/users"))
                .header("accept-language", "fr, it;q=0.5")
                .json(&user),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(recorded_locale(&app, email_of(&user)).await, "de");
    // A page with no account behind it follows the browser, else the default.
    let invalid = |accept_language: &'static str| {
        app.client
            .get(app.url("/activate/not-a-key"))
            .header("accept-language", accept_language)
    };
    assert!(
        app.send(invalid("fr"))
            .await
            .text()
            .contains("<html lang=\"de\">")
    );
    assert!(
        app.send(invalid("en-GB"))
            .await
            .text()
            .contains("<html lang=\"en\">")
    );
}

#[tokio::test]
async fn an_unknown_or_malformed_locale_is_a_400_on_the_field() {
    let app = spawn_app().await;
    for (locale, message) in [
        (json!("fr"), "is not a supported locale (supported: de, en)"),
        (json!("en_US"), "is not a BCP 47 language tag"),
        (json!(""), "is empty"),
        (json!(42), "must be a string"),
    ] {
        let mut user = new_user();
        user["locale"] = locale.clone();
        let response = app.sign_up(&user).await;
        assert_eq!(response.status(), 400, "{locale}");
        let body = response.json();
        assert_eq!(body["error"]["code"], "validation_failed");
        let fields = body["error"]["fields"].as_object().expect("fields");
        assert_eq!(fields.len(), 1, "only the locale is wrong: {body}");
        let said = fields["locale"][0].as_str().expect("a message");
        assert!(said.starts_with(message), "{locale}: {said}");
    }
    assert_eq!(app.total_events().await, 0);
}

#[tokio::test]
async fn the_owner_is_told_in_the_owners_locale_and_the_brand_fills_the_email() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("PRODUCT_NAME", "Acme")
            .with("SUPPORT_EMAIL", "help@acme.example"),
    )
    .await;
    let owner = with_locale("de");
    assert_eq!(app.sign_up(&owner).await.status(), 202);
    let key = app.wait_for_mail(1).await.remove(0).activation_key();
    assert_eq!(app.activate(&key).await.status(), 200);

    // Someone signs up again with the owner's address, in English.
    let mut again = with_locale("en");
    again["email"] = owner["email"].clone();
    assert_eq!(app.sign_up(&again).await.status(), 202);
    let notice = app.wait_for_mail(2).await.remove(1);
    assert_eq!(
        notice.header("Subject").as_deref(),
        Some("Sie haben bereits ein Acme-Konto")
    );
    let text = notice.text().replace("\r\n", "\n");
    assert!(
        text.trim_end()
            .ends_with("Ihr Acme-Team\nFragen? Schreiben Sie an help@acme.example."),
        "{text}"
    );
}

#[tokio::test]
async fn a_broken_override_stops_the_app_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("de/activation/subject.hbs");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, "Willkommen, {{user}}").expect("write");
    let config = porter::platform::config::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://u@127.0.0.1/p".into()),
        "REDIS_URL" => Some("redis://127.0.0.1:6379".into()),
        "PUBLIC_BASE_URL" => Some("https://porter.example".into()),
        "SMTP_URL" => Some("smtp://127.0.0.1:2525".into()),
        "MAIL_FROM" => Some("Porter <no-reply@porter.example>".into()),
        "SECRET_KEY" => Some("k".repeat(porter::platform::config::SecretKey::MIN_LEN)),
        "TEMPLATES_DIR" => Some(dir.path().display().to_string()),
        _ => None,
    })
    .expect("configuration");
    let pool = sqlx::PgPool::connect_lazy("postgres://u@127.0.0.1/p").expect("lazy pool");
    let services = porter::platform::services::Services::connect(config, pool)
        .await
        .expect("services");
    let error = porter::platform::services::web_state(&services).expect_err("the check fails");
    assert_eq!(
        format!("{error:#}"),
        format!(
            "load templates: {}: line 1, column 13: {{{{user}}}} has no value (strict mode: the field is misspelt or not given to this template)",
            file.display()
        )
    );
}

#[tokio::test]
async fn porter_web_has_no_dev_mailbox() {
    let app = spawn_app().await;
    assert_eq!(app.get("/dev/mail").await.status(), 404);
    assert_eq!(app.get("/dev/mail/1").await.status(), 404);
}

#[test]
fn templates_check_names_the_broken_file_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("de/activation/body.txt.hbs");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, "Hallo {{usrname}},\n\n{{link}}\n").expect("write");
    let check = |templates_dir: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_porter"));
        command.args(["templates", "check"]).env_clear();
        if let Some(dir) = templates_dir {
            command.env("TEMPLATES_DIR", dir);
        }
        command.output().expect("porter runs")
    };

    let good = check(None);
    assert!(good.status.success());
    assert_eq!(
        String::from_utf8_lossy(&good.stdout),
        "templates ok: 2 locale(s) (de, en), default en; every email and page rendered in each with sample data, strict\n"
    );

    let broken = check(Some(dir.path()));
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&broken.stderr),
        format!(
            "porter: {}: line 1, column 7: {{{{usrname}}}} has no value (strict mode: the field is misspelt or not given to this template)\n",
            file.display()
        )
    );
}
