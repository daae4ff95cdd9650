//! The pages behind the emailed links, in a real browser: what a person
//! does, from the email to signing in with a new password.

use crate::{
    browser::Browser,
    helpers::{PUBLIC_BASE_URL, TestApp, new_user, spawn_app},
};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

/// The emailed link, pointed at the app under test instead of the public
/// host (the path, which carries the key, is the email's own).
fn local(app: &TestApp, link: &str) -> String {
    let path = link
        .strip_prefix(PUBLIC_BASE_URL)
        .unwrap_or_else(|| panic!("{link} is not under PUBLIC_BASE_URL"));
    app.url(&format!("/{path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_emailed_links_activate_the_account_and_reset_its_password() {
    let app = spawn_app().await;
    let browser = Browser::start("emailed_links").await;
    let user = new_user();
    let (username, email) = (
        user["username"].as_str().expect("username"),
        user["email"].as_str().expect("email"),
    );
    assert_eq!(app.sign_up(&user).await.status(), 202);

    let activation = app.wait_for_mail_to(email, 1).await.remove(0);
    let mut shots = vec![];
    browser
        .goto(&local(&app, &activation.activation_link().expect("a link")))
        .await;
    assert!(
        browser
            .text_of("h1")
            .await
            .starts_with("Activate the account")
    );
    shots.push(browser.screenshot("activation-page").await);
    browser.click_and_wait("form button[type=submit]").await;
    assert_eq!(browser.text_of("h1").await, "Your account is active");
    shots.push(browser.screenshot("account-active").await);

    assert_eq!(app.request_reset(email).await.status(), 202);
    let reset = app.wait_for_mail_to(email, 2).await.remove(1);
    browser
        .goto(&local(
            &app,
            &reset.link_to("reset-password").expect("a reset link"),
        ))
        .await;
    assert_eq!(browser.text_of("h1").await, "Choose a new password");
    browser.fill("input[name=password]", NEW_PASSWORD).await;
    shots.push(browser.screenshot("reset-form-filled").await);
    browser.click_and_wait("form button[type=submit]").await;
    assert_eq!(
        browser.text_of("h1").await,
        "Your password has been changed"
    );
    shots.push(browser.screenshot("password-changed").await);
    browser.close().await;

    assert_eq!(app.sign_in(username, NEW_PASSWORD).await.status(), 201);
    for shot in &shots {
        assert!(shot.is_file(), "{} saved", shot.display());
    }
    assert_eq!(shots.len(), 4, "one screenshot per page");
}
