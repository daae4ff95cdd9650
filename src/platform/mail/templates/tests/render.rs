//! What the built-in templates render, in every locale: snapshots of each
//! email and page, the brand and locale words filled in, escaping, and
//! errors for a context that lacks a field.

use serde_json::{Value, json};

use super::*;

#[test]
fn activation_email() {
    let email = render(EmailKind::Activation, &activation_ctx());
    insta::assert_snapshot!("activation_subject", email.subject);
    insta::assert_snapshot!("activation_text", email.text);
    insta::assert_snapshot!("activation_html", email.html);
}

#[test]
fn password_emails_in_both_locales() {
    let t = templates();
    for locale in [en(), de()] {
        for (kind, name) in [
            (EmailKind::PasswordReset, "password_reset"),
            (EmailKind::PasswordChanged, "password_changed"),
        ] {
            let [sample] = kind.samples().try_into().expect("one sample");
            let email = t.render_email(&locale, kind, &sample).expect("renders");
            insta::assert_snapshot!(format!("{name}_{locale}_subject"), email.subject);
            insta::assert_snapshot!(format!("{name}_{locale}_text"), email.text);
            insta::assert_snapshot!(format!("{name}_{locale}_html"), email.html);
        }
    }
}

#[test]
fn activation_email_in_german() {
    let email = templates()
        .render_email(&de(), EmailKind::Activation, &activation_ctx())
        .expect("renders");
    assert_eq!(email.locale, de());
    insta::assert_snapshot!("activation_de_subject", email.subject);
    insta::assert_snapshot!("activation_de_text", email.text);
    insta::assert_snapshot!("activation_de_html", email.html);
}

#[test]
fn already_registered_pending_email() {
    let ctx = json!({
        "username": "alice",
        "link": "https://porter.example.com/activate/Zx81kQp0aB3cD4eF5gH6",
    });
    let email = render(EmailKind::AlreadyRegistered, &ctx);
    insta::assert_snapshot!("already_registered_pending_subject", email.subject);
    insta::assert_snapshot!("already_registered_pending_text", email.text);
    insta::assert_snapshot!("already_registered_pending_html", email.html);
}

#[test]
fn already_registered_active_email() {
    let ctx = json!({ "username": "alice" });
    let email = render(EmailKind::AlreadyRegistered, &ctx);
    insta::assert_snapshot!("already_registered_active_subject", email.subject);
    insta::assert_snapshot!("already_registered_active_text", email.text);
    insta::assert_snapshot!("already_registered_active_html", email.html);
    assert!(
        !email.html.contains("href"),
        "no link when the account is active"
    );

    // A serialized `Option::None` is the same as an absent field.
    let with_null = json!({ "username": "alice", "link": null });
    assert_eq!(render(EmailKind::AlreadyRegistered, &with_null), email);
}

#[test]
fn pages() {
    let t = templates();
    for locale in [en(), de()] {
        let page = |page, ctx: Value| t.render_page(&locale, page, &ctx).expect("renders");
        let [first, contested, wrong_password, _] = Page::Activate
            .samples()
            .try_into()
            .expect("four activation page samples");
        insta::assert_snapshot!(
            format!("page_{locale}_activate"),
            page(Page::Activate, first)
        );
        insta::assert_snapshot!(
            format!("page_{locale}_activate_contested"),
            page(Page::Activate, contested)
        );
        insta::assert_snapshot!(
            format!("page_{locale}_activate_wrong_password"),
            page(Page::Activate, wrong_password)
        );
        insta::assert_snapshot!(
            format!("page_{locale}_cancelled"),
            page(Page::Cancelled, json!({}))
        );
        insta::assert_snapshot!(
            format!("page_{locale}_activated"),
            page(Page::Activated, json!({ "already_active": false }))
        );
        insta::assert_snapshot!(
            format!("page_{locale}_already_active"),
            page(Page::Activated, json!({ "already_active": true }))
        );
        insta::assert_snapshot!(
            format!("page_{locale}_link_invalid"),
            page(Page::LinkInvalid, json!({}))
        );
        for (number, sample) in Page::ResetPassword.samples().into_iter().enumerate() {
            insta::assert_snapshot!(
                format!("page_{locale}_reset_password_{number}"),
                page(Page::ResetPassword, sample)
            );
        }
        insta::assert_snapshot!(
            format!("page_{locale}_password_reset"),
            page(Page::PasswordReset, json!({}))
        );
        insta::assert_snapshot!(
            format!("page_{locale}_reset_link_invalid"),
            page(Page::ResetLinkInvalid, json!({}))
        );
    }
}

#[test]
fn pages_have_no_scripts_or_external_assets() {
    let t = templates();
    for locale in t.locales() {
        for page in Page::ALL {
            for sample in page.samples() {
                let html = t.render_page(locale, page, &sample).expect("renders");
                for banned in ["<script", "<link", "src=", "http://", "https://", "url("] {
                    assert!(
                        !html.contains(banned),
                        "{locale} {page:?} contains {banned:?}"
                    );
                }
                assert!(html.contains(&format!("<html lang=\"{locale}\">")));
            }
        }
    }
}

#[test]
fn durations_and_dates_are_in_the_locales_words() {
    let t = templates();
    let mut ctx = activation_ctx();
    for (seconds, english, german) in [
        (900, "15 minutes", "15 Minuten"),
        (60, "1 minute", "1 Minute"),
        (3600, "1 hour", "1 Stunde"),
        (5400, "1 hour and 30 minutes", "1 Stunde und 30 Minuten"),
        (172_800, "2 days", "2 Tagen"),
        (45, "45 seconds", "45 Sekunden"),
    ] {
        ctx["expires_in"] = json!(seconds);
        let text = |locale: &Locale| {
            t.render_email(locale, EmailKind::Activation, &ctx)
                .expect("renders")
                .text
        };
        assert!(
            text(&en()).contains(&format!("expires in {english} (")),
            "{english}"
        );
        assert!(
            text(&de()).contains(&format!("läuft in {german} ab")),
            "{german}"
        );
    }
    let text = |locale: &Locale| {
        t.render_email(locale, EmailKind::Activation, &ctx)
            .expect("renders")
            .text
    };
    assert!(text(&en()).contains("(December 3, 2026 at 09:15 UTC)"));
    assert!(text(&de()).contains("(3. Dezember 2026 um 09:15 Uhr UTC)"));
}

#[test]
fn an_unknown_locale_falls_back_by_lookup_then_to_the_default() {
    let t = templates();
    let tag = |raw: &str| Locale::parse(raw).expect("tag");
    assert_eq!(t.locale_for(&tag("de-AT")).as_str(), "de");
    assert_eq!(t.locale_for(&tag("fr")).as_str(), "en");
    // A recorded tag that no longer parses gets the default locale.
    assert_eq!(
        t.locale_for(&Locale::from_record("not a tag")).as_str(),
        "en"
    );
    let fr = Locale::parse("fr").expect("tag");
    let email = t
        .render_email(&fr, EmailKind::Activation, &activation_ctx())
        .expect("renders");
    assert_eq!(email.locale, en());
    assert_eq!(email.subject, "Activate your Porter account");
}

#[test]
fn the_brand_fills_every_template() {
    let mut config = config();
    config.brand = Brand {
        product_name: "Acme & Co".into(),
        support_url: Some("https://help.acme.example/".into()),
        support_email: Some("help@acme.example".into()),
    };
    let t = Templates::load(&config).expect("loads");
    let email = t
        .render_email(&de(), EmailKind::Activation, &activation_ctx())
        .expect("renders");
    assert_eq!(email.subject, "Aktivieren Sie Ihr Acme & Co-Konto");
    assert!(email.text.contains("Ihr Acme & Co-Team\nFragen? Schreiben Sie an help@acme.example.\nHilfe: https://help.acme.example/\n"), "{}", email.text);
    assert!(email.html.contains("Acme &amp; Co"));
    assert!(
        email
            .html
            .contains(r#"<a href="https://help.acme.example/""#)
    );
    let page = t
        .render_page(&en(), Page::LinkInvalid, &json!({}))
        .expect("renders");
    assert!(page.contains("<title>Link no longer valid · Acme &amp; Co</title>"));
    assert!(page.contains(r#"<a href="https://help.acme.example/">Help</a>"#));
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
    for field in ["username", "link", "expires_in", "expires_at"] {
        let mut ctx = activation_ctx();
        ctx.as_object_mut().expect("object").remove(field);
        let err = t
            .render_email(&en(), EmailKind::Activation, &ctx)
            .expect_err(field);
        assert!(
            matches!(err, TemplateError::Render { .. }),
            "{field}: {err}"
        );
    }
    assert!(t.render_page(&en(), Page::Activate, &json!({})).is_err());
}

#[test]
fn subject_is_one_line() {
    let mut config = config();
    config.brand.product_name = "Acme\r\nBcc: victim@example.com\n\r\t".into();
    let email = Templates::load(&config)
        .expect("loads")
        .render_email(&en(), EmailKind::Activation, &activation_ctx())
        .expect("renders");
    assert_eq!(
        email.subject,
        "Activate your Acme Bcc: victim@example.com account"
    );
}
