use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::{
    config::{Brand, TemplatesConfig},
    domain::Locale,
};

fn config() -> TemplatesConfig {
    TemplatesConfig {
        dir: None,
        default_locale: Locale::english(),
        brand: Brand {
            product_name: "Porter".into(),
            support_url: None,
            support_email: None,
        },
    }
}

fn templates() -> Templates {
    Templates::load(&config()).expect("built-in templates pass the check")
}

fn en() -> Locale {
    Locale::english()
}

fn de() -> Locale {
    Locale::parse("de").expect("tag")
}

fn activation_ctx() -> Value {
    json!({
        "username": "alice",
        "link": "https://porter.example.com/activate/Zx81kQp0aB3cD4eF5gH6",
        "expires_in": 1800,
        "expires_at": "2026-12-03T09:15:00Z",
    })
}

fn render(kind: EmailKind, ctx: &Value) -> RenderedEmail {
    templates().render_email(&en(), kind, ctx).expect("renders")
}

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

/// The completeness test: every locale has exactly the same files, and each
/// email and page renders in each locale with nothing left unrendered. A
/// template added to one locale and not the other fails here (and stops the
/// process at start, see `a_template_missing_from_one_locale_stops_the_load`).
#[test]
fn every_locale_has_every_template_and_renders_it_completely() {
    let t = templates();
    let locales: Vec<&str> = t.locales().map(Locale::as_str).collect();
    for shipped in ["de", "en"] {
        assert!(locales.contains(&shipped), "{shipped} ships with Porter");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let required = templates::required_files();
    for locale in &locales {
        let mut found = std::collections::BTreeSet::new();
        collect_files(&root.join(locale), &root.join(locale), &mut found);
        let missing: Vec<_> = required.difference(&found).collect();
        let unknown: Vec<_> = found.difference(&required).collect();
        assert!(missing.is_empty(), "templates/{locale} lacks {missing:?}");
        assert!(
            unknown.is_empty(),
            "templates/{locale} has unused {unknown:?}"
        );
    }
    for locale in t.locales() {
        for kind in EmailKind::ALL {
            for sample in kind.samples() {
                let email = t.render_email(locale, kind, &sample).expect("renders");
                for part in [&email.subject, &email.text, &email.html] {
                    assert!(
                        !part.contains("{{") && !part.contains("}}"),
                        "{locale} {kind:?}: {part}"
                    );
                }
                assert_plain_text_reads_well(locale, kind, &email.text);
            }
        }
    }
}

/// The text part stands on its own: no markup, no entities, lines short
/// enough for any mail client (links excepted), and the link itself in full.
fn assert_plain_text_reads_well(locale: &Locale, kind: EmailKind, text: &str) {
    let what = format!("{locale} {kind:?} text part");
    for banned in ["<", ">", "&amp;", "&nbsp;", "&ldquo;", "&bdquo;"] {
        assert!(
            !text.contains(banned),
            "{what} contains {banned:?}:\n{text}"
        );
    }
    for line in text.lines().filter(|line| !line.starts_with("https://")) {
        assert!(
            line.chars().count() <= 78,
            "{what}: line too long: {line:?}"
        );
    }
    assert!(
        !text.contains("\n\n\n"),
        "{what} has a run of blank lines:\n{text}"
    );
}

fn collect_files(root: &Path, dir: &Path, found: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, found);
        } else {
            let relative = path.strip_prefix(root).expect("below root");
            found.insert(relative.to_str().expect("UTF-8").replace('\\', "/"));
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
    assert_eq!(t.locale_for("de-AT").as_str(), "de");
    assert_eq!(t.locale_for("fr").as_str(), "en");
    assert_eq!(t.locale_for("not a tag").as_str(), "en");
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

/// Writes `files` (path below the override folder, text) and loads with it.
fn load_with(files: &[(&str, &str)]) -> Result<Templates, TemplateError> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let mut config = config();
    config.dir = Some(dir.path().to_owned());
    Templates::load(&config)
}

fn load_error(files: &[(&str, &str)]) -> String {
    let error = load_with(files).expect_err("the check fails").to_string();
    assert!(!error.contains('\n'), "one line: {error}");
    error
}

#[test]
fn an_override_replaces_one_file_of_one_locale() {
    let t = load_with(&[(
        "de/activation/subject.hbs",
        "Willkommen bei {{product_name}}, {{username}}\n",
    )])
    .expect("loads");
    let subject = |locale: &Locale| {
        t.render_email(locale, EmailKind::Activation, &activation_ctx())
            .expect("renders")
            .subject
    };
    assert_eq!(subject(&de()), "Willkommen bei Porter, alice");
    assert_eq!(subject(&en()), "Activate your Porter account");
}

#[test]
fn a_complete_folder_adds_a_locale() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/en");
    let mut files = std::collections::BTreeSet::new();
    collect_files(&root, &root, &mut files);
    let copied: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                format!("fr/{f}"),
                std::fs::read_to_string(root.join(f)).expect("read"),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = copied
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let t = load_with(&borrowed).expect("a complete locale loads");
    assert_eq!(
        t.locales().map(Locale::as_str).collect::<Vec<_>>(),
        ["de", "en", "fr"]
    );
    assert_eq!(t.locale_for("fr-CA").as_str(), "fr");
}

#[test]
fn a_template_missing_from_one_locale_stops_the_load() {
    let error = load_error(&[("fr/activation/subject.hbs", "Activez votre compte")]);
    assert!(
        error.ends_with("/fr/activation/body.html.hbs: missing (every locale needs every template; found in de, en)"),
        "{error}"
    );
}

#[test]
fn a_broken_template_stops_the_load_naming_file_and_problem() {
    let error = load_error(&[(
        "de/activation/body.txt.hbs",
        "Hallo {{usrname}},\n{{link}}\n",
    )]);
    assert!(error.ends_with("/de/activation/body.txt.hbs: line 1, column 7: {{usrname}} has no value (strict mode: the field is misspelt or not given to this template)"), "{error}");

    let error = load_error(&[(
        "de/pages/activated.html.hbs",
        "{{#if already_active}}<h1>x</h1>\n",
    )]);
    assert!(
        error.contains("/de/pages/activated.html.hbs: line"),
        "{error}"
    );

    let error = load_error(&[("de/layouts/footer.txt.hbs", "Ihr {{produkt}}-Team\n")]);
    assert!(
        error.contains("/de/layouts/footer.txt.hbs: line 1"),
        "{error}"
    );
    assert!(error.contains("{{produkt}} has no value"), "{error}");

    let error = load_error(&[("de/locale.json", r#"{"units": {}}"#)]);
    assert!(error.contains("/de/locale.json: missing field"), "{error}");
}

#[test]
fn an_unrendered_placeholder_stops_the_load() {
    for (text, shown) in [
        ("Hallo {username},\n{{link}}\n", "{username}"),
        ("Hallo \\{{username}},\n{{link}}\n", "{{username}}"),
    ] {
        let error = load_error(&[("de/activation/body.txt.hbs", text)]);
        assert!(
            error.contains("/de/activation/body.txt.hbs: leaves a placeholder unrendered"),
            "{error}"
        );
        assert!(error.contains(shown), "{error}");
    }
}

#[test]
fn unknown_files_and_folders_in_the_override_are_refused() {
    let error = load_error(&[("de/activaton/subject.hbs", "x")]);
    assert!(error.ends_with("/de/activaton/subject.hbs: activaton/subject.hbs is not a template Porter renders (a misspelt name?)"), "{error}");
    let error = load_error(&[("en_US/activation/subject.hbs", "x")]);
    assert!(
        error.contains("the folder \"en_US\" is not a locale"),
        "{error}"
    );
    // Hidden files (editors, file managers) are ignored.
    load_with(&[(".DS_Store", "x"), ("de/.subject.hbs.swp", "x")]).expect("loads");
}

#[test]
fn a_default_locale_without_templates_stops_the_load() {
    let mut config = config();
    config.default_locale = Locale::parse("fr").expect("tag");
    let error = Templates::load(&config).expect_err("no fr").to_string();
    assert_eq!(
        error,
        "DEFAULT_LOCALE: fr has no templates (locales: de, en)"
    );
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
        "Date: ",
        "Auto-Submitted: auto-generated\r\n",
        "Content-Language: en\r\n",
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
