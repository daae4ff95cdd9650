use serde_json::{Value, json};

use super::*;

fn templates() -> Templates {
    Templates::load().expect("embedded templates compile")
}

fn activation_ctx() -> Value {
    json!({
        "username": "alice",
        "link": "https://porter.example.com/activate/Zx81kQp0aB3cD4eF5gH6",
        "expires_in_minutes": 30,
        "product_name": "Porter",
    })
}

fn render(kind: EmailKind, ctx: &Value) -> RenderedEmail {
    templates().render_email(kind, ctx).expect("renders")
}

#[test]
fn activation_email() {
    let email = render(EmailKind::Activation, &activation_ctx());
    insta::assert_snapshot!("activation_subject", email.subject);
    insta::assert_snapshot!("activation_text", email.text);
    insta::assert_snapshot!("activation_html", email.html);
}

#[test]
fn already_registered_pending_email() {
    let ctx = json!({
        "username": "alice",
        "link": "https://porter.example.com/activate/Zx81kQp0aB3cD4eF5gH6",
        "product_name": "Porter",
    });
    let email = render(EmailKind::AlreadyRegistered, &ctx);
    insta::assert_snapshot!("already_registered_pending_subject", email.subject);
    insta::assert_snapshot!("already_registered_pending_text", email.text);
    insta::assert_snapshot!("already_registered_pending_html", email.html);
}

#[test]
fn already_registered_active_email() {
    let ctx = json!({ "username": "alice", "product_name": "Porter" });
    let email = render(EmailKind::AlreadyRegistered, &ctx);
    insta::assert_snapshot!("already_registered_active_subject", email.subject);
    insta::assert_snapshot!("already_registered_active_text", email.text);
    insta::assert_snapshot!("already_registered_active_html", email.html);
    assert!(
        !email.html.contains("href"),
        "no link when the account is active"
    );

    // A serialized `Option::None` is the same as an absent field.
    let with_null = json!({ "username": "alice", "product_name": "Porter", "link": null });
    assert_eq!(render(EmailKind::AlreadyRegistered, &with_null), email);
}

#[test]
fn pages() {
    let t = templates();
    let page = |page, ctx: Value| t.render_page(page, &ctx).expect("renders");
    insta::assert_snapshot!(
        "page_activate",
        page(Page::Activate, json!({ "key": "Zx81kQp0aB3cD4eF5gH6" }))
    );
    insta::assert_snapshot!(
        "page_activated",
        page(Page::Activated, json!({ "already_active": false }))
    );
    insta::assert_snapshot!(
        "page_already_active",
        page(Page::Activated, json!({ "already_active": true }))
    );
    insta::assert_snapshot!("page_link_invalid", page(Page::LinkInvalid, json!({})));
    insta::assert_snapshot!(
        "page_reset_password",
        page(
            Page::ResetPassword,
            json!({ "key": "Zx81kQp0aB3cD4eF5gH6" })
        )
    );
    insta::assert_snapshot!(
        "page_reset_password_error",
        page(
            Page::ResetPassword,
            json!({ "key": "Zx81kQp0aB3cD4eF5gH6", "error": "must be at least 12 characters long" })
        )
    );
    insta::assert_snapshot!("page_password_reset", page(Page::PasswordReset, json!({})));
    insta::assert_snapshot!(
        "page_reset_link_invalid",
        page(Page::ResetLinkInvalid, json!({}))
    );
}

#[test]
fn password_reset_email() {
    let ctx = json!({
        "username": "alice",
        "link": "https://porter.example.com/reset-password/Zx81kQp0aB3cD4eF5gH6",
        "expires_in_minutes": 30,
        "product_name": "Porter",
    });
    let email = render(EmailKind::PasswordReset, &ctx);
    insta::assert_snapshot!("password_reset_subject", email.subject);
    insta::assert_snapshot!("password_reset_text", email.text);
    insta::assert_snapshot!("password_reset_html", email.html);
}

#[test]
fn password_changed_email() {
    let ctx = json!({ "username": "alice", "product_name": "Porter", "link": null });
    let email = render(EmailKind::PasswordChanged, &ctx);
    insta::assert_snapshot!("password_changed_subject", email.subject);
    insta::assert_snapshot!("password_changed_text", email.text);
    insta::assert_snapshot!("password_changed_html", email.html);
    assert!(!email.html.contains("href"), "no link in the notice");
}

#[test]
fn pages_have_no_scripts_or_external_assets() {
    let t = templates();
    let pages = [
        t.render_page(Page::Activate, &json!({ "key": "k" })),
        t.render_page(Page::Activated, &json!({ "already_active": false })),
        t.render_page(Page::LinkInvalid, &json!({})),
        t.render_page(Page::ResetPassword, &json!({ "key": "k" })),
        t.render_page(Page::PasswordReset, &json!({})),
        t.render_page(Page::ResetLinkInvalid, &json!({})),
    ];
    for html in pages {
        let html = html.expect("renders");
        for banned in ["<script", "<link", "src=", "http://", "https://", "url("] {
            assert!(!html.contains(banned), "page contains {banned:?}");
        }
    }
}

#[test]
fn username_is_escaped_in_html_and_literal_in_text() {
    let mut ctx = activation_ctx();
    ctx["username"] = json!(r#"<b>bob</b> & "x""#);
    let email = render(EmailKind::Activation, &ctx);

    assert!(
        email
            .html
            .contains("Hi &lt;b&gt;bob&lt;/b&gt; &amp; &quot;x&quot;,")
    );
    assert!(!email.html.contains("<b>bob"));
    assert!(email.text.contains(r#"Hi <b>bob</b> & "x","#));
    assert!(!email.text.contains("&amp;"));
}

#[test]
fn missing_context_field_is_an_error() {
    let t = templates();
    for field in ["username", "link", "expires_in_minutes", "product_name"] {
        let mut ctx = activation_ctx();
        ctx.as_object_mut().expect("object").remove(field);
        let err = t
            .render_email(EmailKind::Activation, &ctx)
            .expect_err(field);
        assert!(matches!(err, TemplateError::Render(_)), "{field}: {err}");
    }
    assert!(t.render_page(Page::Activate, &json!({})).is_err());
}

#[test]
fn subject_is_one_line() {
    let mut ctx = activation_ctx();
    ctx["product_name"] = json!("Acme\r\nBcc: victim@example.com\n\r\t");
    let email = render(EmailKind::Activation, &ctx);
    assert_eq!(
        email.subject,
        "Activate your Acme Bcc: victim@example.com account"
    );
}

#[test]
fn transport_urls() {
    assert!(matches!(
        MailTransport::from_config("imap://mail.example.com"),
        Err(TransportError::Scheme(s)) if s == "imap"
    ));
    assert!(matches!(
        MailTransport::from_config("file:"),
        Err(TransportError::FilePath)
    ));
    assert!(matches!(
        MailTransport::from_config("not a url"),
        Err(TransportError::Url(_))
    ));
}

#[tokio::test]
async fn smtp_url_builds_without_connecting() {
    let transport = MailTransport::from_config("smtp://user:s3cret@127.0.0.1:2525?tls=required")
        .expect("valid URL");
    assert!(matches!(transport, MailTransport::Smtp(_)));
    assert!(!format!("{transport:?}").contains("s3cret"));

    let err = MailTransport::from_config("smtp://user:s3cret@127.0.0.1:2525?tls=bogus")
        .expect_err("unknown tls mode");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn file_transport_writes_multipart_alternative_eml() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mail_dir = dir.path().join("outbox");
    let url = url::Url::from_directory_path(&mail_dir).expect("absolute path");
    let transport = MailTransport::from_config(url.as_str()).expect("file transport");
    let from = "Porter <no-reply@porter.example.com>"
        .parse()
        .expect("mailbox");
    let mailer = Mailer::new(transport, from);

    let email = render(EmailKind::Activation, &activation_ctx());
    mailer
        .send("alice@example.org", &email)
        .await
        .expect("written");

    let files: Vec<_> = std::fs::read_dir(&mail_dir)
        .expect("outbox exists")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let eml = std::fs::read_to_string(&files[0]).expect("utf-8 eml");
    for expected in [
        "From: Porter <no-reply@porter.example.com>\r\n",
        "To: alice@example.org\r\n",
        "Subject: Activate your Porter account\r\n",
        "Message-ID: <",
        "@porter.example.com>\r\n",
        "Content-Type: multipart/alternative;",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
    ] {
        assert!(eml.contains(expected), "missing {expected:?} in:\n{eml}");
    }
    let text_at = eml.find("text/plain").expect("text part");
    let html_at = eml.find("text/html").expect("html part");
    assert!(text_at < html_at, "text part comes first");
}

#[tokio::test]
async fn invalid_recipient_is_permanent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url::Url::from_directory_path(dir.path()).expect("absolute path");
    let transport = MailTransport::from_config(url.as_str()).expect("file transport");
    let mailer = Mailer::new(
        transport,
        "no-reply@porter.example.com".parse().expect("mailbox"),
    );

    let email = render(EmailKind::Activation, &activation_ctx());
    let err = mailer
        .send("not an address", &email)
        .await
        .expect_err("rejected");
    assert!(matches!(err, SendError::Permanent(_)), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}
