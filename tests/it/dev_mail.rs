//! `porter dev`'s mailbox, as a developer uses it: in a real browser, from
//! the sign-up to the active account, with a screenshot of every page.

use serde_json::json;

use crate::{
    browser::Browser,
    helpers::{TestOptions, eventually, new_user, spawn_app_with},
    services::free_port,
};

#[tokio::test]
async fn a_developer_activates_an_account_from_the_dev_mailbox() {
    // The in-process app gives the database and the SMTP server; the
    // `porter dev` process under test does the rest, links included.
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _dev = app.spawn_process_with("dev", port, &[("PUBLIC_BASE_URL", format!("{base}/"))]);
    let http = crate::helpers::http_client();
    eventually("porter dev to answer", || async {
        let response = http.get(format!("{base}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;

    let sign_up = |user: &serde_json::Value, locale: &str| {
        let mut body = user.clone();
        body["locale"] = json!(locale);
        http.post(format!("{base}/api/users")).json(&body).send()
    };
    let user = new_user();
    assert_eq!(sign_up(&user, "en").await.expect("sent").status(), 202);
    let email = user["email"].as_str().expect("email");
    // Each message is in the mailbox once the SMTP server has it.
    app.wait_for_mail(1).await;
    let later = new_user();
    assert_eq!(sign_up(&later, "de").await.expect("sent").status(), 202);
    app.wait_for_mail(2).await;

    let browser = Browser::start("dev_mail").await;
    let mut shots = Vec::new();

    browser.goto(&format!("{base}/dev/mail")).await;
    let newest = browser.text_of("tbody tr:nth-child(1)").await;
    assert!(
        newest.contains(later["email"].as_str().expect("email")),
        "{newest}"
    );
    assert!(
        newest.contains("Aktivieren Sie Ihr Porter-Konto"),
        "{newest}"
    );
    let older = browser.text_of("tbody tr:nth-child(2)").await;
    assert!(older.contains(email), "{older}");
    assert!(older.contains("Activate your Porter account"), "{older}");
    shots.push(browser.screenshot("mailbox").await);

    browser.click_and_wait("tbody tr:nth-child(2) a").await;
    assert_eq!(browser.url().await.path(), "/dev/mail/1");
    let text = browser.text_of("pre").await;
    assert!(text.starts_with("Hi "), "{text}");
    assert!(text.contains("The link expires in 15 minutes"), "{text}");
    shots.push(browser.screenshot("message-text").await);

    browser.click_and_wait("a[href='/dev/mail/1/html']").await;
    let button = browser.text_of("a[href*='/activate/']").await;
    assert_eq!(button, "Activate my account");
    shots.push(browser.screenshot("message-html").await);

    // Following the emailed link shows the page with the button.
    browser.click_and_wait("a[href*='/activate/']").await;
    assert!(browser.url().await.path().starts_with("/activate/"));
    assert!(
        browser
            .text_of("h1")
            .await
            .starts_with("Activate the account user_"),
        "the page names the account"
    );
    shots.push(browser.screenshot("activation-page").await);

    browser.click_and_wait("form button[type=submit]").await;
    assert!(
        browser
            .url()
            .await
            .path()
            .starts_with("/api/activate-account/")
    );
    assert_eq!(browser.text_of("h1").await, "Your account is active");
    shots.push(browser.screenshot("account-active").await);
    browser.close().await;

    let status = eventually("the account to be projected active", || async {
        app.projected_status(email)
            .await
            .filter(|status| status == "active")
    })
    .await;
    assert_eq!(status, "active");
    assert_eq!(app.count_events("AccountActivated").await, 1);
    for shot in &shots {
        let size = std::fs::metadata(shot).expect("screenshot kept").len();
        assert!(size > 1000, "{} is a real picture", shot.display());
    }
}
