//! Loading the templates: every locale complete, an operator's overrides
//! taken or refused, and each kind of broken file stopping the load with one
//! line that names it.

use std::path::Path;

use super::*;

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
    let required = required_files();
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
    assert_eq!(
        t.locale_for(&Locale::parse("fr-CA").expect("tag")).as_str(),
        "fr"
    );
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
fn an_unreadable_templates_dir_stops_the_load_with_its_io_error_as_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config();
    config.dir = Some(dir.path().join("absent"));
    let error = Templates::load(&config).expect_err("no such folder");
    assert!(
        error.to_string().contains("cannot read TEMPLATES_DIR"),
        "{error}"
    );
    let cause = std::error::Error::source(&error)
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .expect("the io error is kept as the cause");
    assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
}
