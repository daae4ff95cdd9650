//! SMTP failures, caused for real at the test SMTP server.

use serde_json::Value;

use crate::helpers::{eventually, new_user, spawn_app};

#[tokio::test]
async fn a_permanent_refusal_is_recorded_and_other_mail_still_flows() {
    let app = spawn_app().await;
    let refused = new_user();
    let refused_email = refused["email"].as_str().expect("email");
    app.mail.refuse_recipient(refused_email, 550);

    assert_eq!(app.sign_up(&refused).await.status(), 202);
    eventually("the failure to be recorded", || async {
        (app.count_events("ActivationEmailFailed").await == 1).then_some(())
    })
    .await;
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'ActivationEmailFailed'")
            .fetch_one(&app.pool)
            .await
            .expect("failure event");
    assert_eq!(payload["permanent"], true);
    assert_eq!(app.mail.refusals(), 1, "a 5xx is not retried");

    app.sign_up(&new_user()).await;
    app.wait_for_mail(1).await;
    // The worker records the email after the SMTP server has accepted it.
    eventually("the sent email to be recorded", || async {
        (app.count_events("ActivationEmailSent").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_email_goes_out() {
    let app = spawn_app().await;
    app.mail.fail_next(2, 451);
    app.sign_up(&new_user()).await;
    let mail = app.wait_for_mail(1).await.remove(0);
    assert_eq!(app.mail.refusals(), 2);
    assert_eq!(app.count_events("ActivationEmailFailed").await, 0);
    assert_eq!(app.activate(&mail.activation_key()).await.status(), 200);
}
