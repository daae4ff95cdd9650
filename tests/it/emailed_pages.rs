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
    let mut browser = Browser::start("emailed_links").await;
    let user = new_user();
    let (username, email) = (
        user["username"].as_str().expect("username"),
        user["email"].as_str().expect("email"),
    );
    assert_eq!(app.sign_up(&user).await.status(), 202);

    let activation = app.wait_for_mail_to(email, 1).await.remove(0);
    browser
        .open(&local(&app, &activation.activation_link().expect("a link")))
        .await;
    browser.wait_for_text("Activate your account").await;
    browser.screenshot("activation-page").await;
    browser
        .find("form button[type=submit]")
        .await
        .click()
        .await
        .expect("press the button");
    browser.wait_for_text("Your account is active").await;
    browser.screenshot("account-active").await;

    assert_eq!(app.request_reset(email).await.status(), 202);
    let reset = app.wait_for_mail_to(email, 2).await.remove(1);
    browser
        .open(&local(
            &app,
            &reset.link_to("reset-password").expect("a reset link"),
        ))
        .await;
    browser.wait_for_text("Choose a new password").await;
    browser
        .find("input[name=password]")
        .await
        .send_keys(NEW_PASSWORD)
        .await
        .expect("type the new password");
    browser.screenshot("reset-form-filled").await;
    browser
        .find("form button[type=submit]")
        .await
        .click()
        .await
        .expect("submit the form");
    browser
        .wait_for_text("Your password has been changed")
        .await;
    browser.screenshot("password-changed").await;
    let screenshots = browser.screenshots().to_owned();
    browser.close().await;

    assert_eq!(app.sign_in(username, NEW_PASSWORD).await.status(), 201);
    let saved = std::fs::read_dir(&screenshots)
        .expect("screenshots")
        .count();
    assert_eq!(
        saved,
        4,
        "one screenshot per page in {}",
        screenshots.display()
    );
}
