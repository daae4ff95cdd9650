//! `porter templates check` and `porter templates preview`: an operator's
//! look at the templates before a deployment does.
//!
//! `check` is the same check `porter web`, `worker` and `dev` run at start
//! ([`Templates::load`]), without Postgres, Redis or SMTP; a problem is one
//! line naming the file. `preview` renders one email or page with the check's
//! sample data and writes what a recipient would get: the `.eml` as Porter
//! would send it, its HTML and its text part, per locale.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lettre::message::Mailbox;

use crate::{
    domain::Locale,
    platform::{
        config::TemplatesConfig,
        mail::{self, EmailKind, Page, Templates},
    },
};

/// What `porter templates preview` can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreviewKind {
    /// The activation email.
    Activation,
    /// "Someone signed up with your address" (pending and active variants).
    AlreadyRegistered,
    /// The page behind the emailed link (plain, contested, wrong password,
    /// no registration time).
    PageActivate,
    /// The page after "This wasn't me".
    PageCancelled,
    /// The page after pressing its button.
    PageActivated,
    /// The page for a link that no longer works.
    PageLinkInvalid,
}

impl PreviewKind {
    fn what(self) -> Result<EmailKind, Page> {
        match self {
            Self::Activation => Ok(EmailKind::Activation),
            Self::AlreadyRegistered => Ok(EmailKind::AlreadyRegistered),
            Self::PageActivate => Err(Page::Activate),
            Self::PageCancelled => Err(Page::Cancelled),
            Self::PageActivated => Err(Page::Activated),
            Self::PageLinkInvalid => Err(Page::LinkInvalid),
        }
    }

    fn file_stem(self) -> &'static str {
        match self.what() {
            Ok(kind) => kind.folder(),
            Err(page) => page.name(),
        }
    }
}

/// Loads and checks every template; the summary an operator sees.
pub fn check(config: &TemplatesConfig) -> anyhow::Result<String> {
    let templates = Templates::load(config)?;
    let locales: Vec<&str> = templates.locales().map(Locale::as_str).collect();
    let mut summary = format!(
        "templates ok: {} locale(s) ({}), default {}; every email and page rendered in each with sample data, strict\n",
        locales.len(),
        locales.join(", "),
        templates.default_locale(),
    );
    if let Some(dir) = &config.dir {
        summary.push_str(&format!(
            "TEMPLATES_DIR {}: {} file(s) replace or add templates\n",
            dir.display(),
            templates.overrides()
        ));
    }
    Ok(summary)
}

/// Writes `kind` rendered with each of its samples in `locale` (every locale
/// when `None`) into `out`; returns the files written.
pub fn preview(
    config: &TemplatesConfig,
    kind: PreviewKind,
    locale: Option<&Locale>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let templates = Templates::load(config)?;
    let locales: Vec<Locale> = match locale {
        Some(wanted) => {
            let found = wanted.lookup(templates.locales()).with_context(|| {
                let known: Vec<&str> = templates.locales().map(Locale::as_str).collect();
                format!("no templates for {wanted} (locales: {})", known.join(", "))
            })?;
            vec![found.clone()]
        }
        None => templates.locales().cloned().collect(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let from = Mailbox::new(
        Some(config.brand.product_name.clone()),
        "no-reply@example.com".parse().context("sender address")?,
    );
    let mut written = Vec::new();
    let mut write = |name: String, bytes: &[u8]| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for locale in &locales {
        let samples = match kind.what() {
            Ok(email) => email.samples(),
            Err(page) => page.samples(),
        };
        let numbered = samples.len() > 1;
        for (n, sample) in samples.iter().enumerate() {
            let stem = if numbered {
                format!("{}-{}.{locale}", kind.file_stem(), n + 1)
            } else {
                format!("{}.{locale}", kind.file_stem())
            };
            match kind.what() {
                Ok(email_kind) => {
                    let email = templates.render_email(locale, email_kind, sample)?;
                    let message = mail::compose(&from, "alice@example.com", &email)
                        .context("compose the email")?;
                    write(format!("{stem}.eml"), &message.formatted())?;
                    write(format!("{stem}.html"), email.html.as_bytes())?;
                    write(format!("{stem}.txt"), email.text.as_bytes())?;
                }
                Err(page) => {
                    let html = templates.render_page(locale, page, sample)?;
                    write(format!("{stem}.html"), html.as_bytes())?;
                }
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::config::Brand;

    fn config() -> TemplatesConfig {
        TemplatesConfig {
            dir: None,
            default_locale: Locale::english(),
            brand: Brand {
                product_name: "Acme".into(),
                support_url: None,
                support_email: None,
            },
        }
    }

    #[test]
    fn check_summarizes_the_locales() {
        assert_eq!(
            check(&config()).expect("built-in templates pass"),
            "templates ok: 2 locale(s) (de, en), default en; every email and page rendered in each with sample data, strict\n"
        );
    }

    #[test]
    fn preview_writes_eml_html_and_text_per_locale_and_sample() {
        let out = tempfile::tempdir().expect("temp dir");
        let files =
            preview(&config(), PreviewKind::AlreadyRegistered, None, out.path()).expect("written");
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "already-registered-1.de.eml",
                "already-registered-1.de.html",
                "already-registered-1.de.txt",
                "already-registered-2.de.eml",
                "already-registered-2.de.html",
                "already-registered-2.de.txt",
                "already-registered-1.en.eml",
                "already-registered-1.en.html",
                "already-registered-1.en.txt",
                "already-registered-2.en.eml",
                "already-registered-2.en.html",
                "already-registered-2.en.txt",
            ]
        );
        let eml =
            std::fs::read_to_string(out.path().join("already-registered-2.de.eml")).expect("eml");
        for header in [
            "From: Acme <no-reply@example.com>\r\n",
            "Subject: Sie haben bereits ein Acme-Konto\r\n",
            "Content-Language: de\r\n",
            "Auto-Submitted: auto-generated\r\n",
        ] {
            assert!(eml.contains(header), "{header:?} in\n{eml}");
        }

        let page = preview(
            &config(),
            PreviewKind::PageActivate,
            Some(&Locale::parse("de-CH").expect("tag")),
            out.path(),
        )
        .expect("written");
        assert_eq!(
            page,
            (1..=4)
                .map(|n| out.path().join(format!("activate-{n}.de.html")))
                .collect::<Vec<_>>()
        );
        let error = preview(
            &config(),
            PreviewKind::Activation,
            Some(&Locale::parse("fr").expect("tag")),
            out.path(),
        )
        .expect_err("no fr");
        assert_eq!(error.to_string(), "no templates for fr (locales: de, en)");
    }
}
