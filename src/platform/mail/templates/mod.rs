//! The email and page templates of every locale, checked whole at start.
//!
//! `templates/<locale>/` holds one complete set per locale; `build.rs`
//! embeds every file, so a new locale is a new folder and no code. An
//! operator's `TEMPLATES_DIR` (same layout) replaces any file of the same
//! path and may add a locale of its own. Nothing is read at run time after
//! [`Templates::load`].
//!
//! `load` is strict so that a broken template stops the process at start
//! instead of failing the first person it should have emailed: every locale
//! must have exactly the files Porter renders (one missing in `de` that `en`
//! has is an error, and so is a file Porter would never use, usually a
//! misspelt override), every file must compile, and every email and page must
//! render in every locale with sample data, in strict mode (a misspelt field
//! is an error) and without leaving a placeholder such as `{username}` or
//! `\{{link}}` in the output. The first problem is one line naming the file.
//!
//! Escaping is a property of a handlebars registry, not of a template, so
//! each locale has two registries: HTML templates get HTML escaping,
//! plain-text parts and subjects get none (an HTML-escaping registry would
//! turn `&` in a username into `&amp;` in the text part).
//!
//! Each locale's `locale.json` holds the words Rust fills in: units for
//! durations (`{{duration expires_in}}` → "15 minutes", "15 Minuten") and
//! month names and a pattern for dates (`{{datetime expires_at}}`). The
//! brand (`product_name`, `support_url`, `support_email`) and `locale` are
//! added to every context here, so callers pass only what they know.

mod catalog;
mod check;
mod registry;
mod sources;
#[cfg(test)]
pub(super) mod tests;
mod words;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

pub use self::catalog::{EmailKind, Page};
use self::{
    registry::{LocaleTemplates, compile, render},
    sources::{add_overrides, embedded_sources},
};
use crate::{
    domain::Locale,
    platform::config::{Brand, TemplatesConfig},
};

/// The words of a locale, in each locale's folder.
const WORDS_FILE: &str = "locale.json";

/// The layouts every locale has: partials of the emails and pages.
const LAYOUTS: &[&str] = &[
    "layouts/email.html.hbs",
    "layouts/page.html.hbs",
    "layouts/footer.txt.hbs",
];

/// A template failed to load, to pass the start-up check, or to render.
///
/// Messages are one line; they name the file and never contain context
/// values other than the check's sample data.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file is missing, unknown, does not compile, or fails the start-up
    /// rendering check.
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
    /// A file or folder could not be read; `doing` says which read.
    #[error("{file}: {doing}: {source}")]
    Unreadable {
        file: String,
        doing: &'static str,
        source: std::io::Error,
    },
    /// Rendering for a real recipient failed (it passed the check at start,
    /// so this is a context the samples do not cover).
    #[error("cannot render {template}: {problem}")]
    Render { template: String, problem: String },
    /// The values an email or page is rendered with do not make a JSON
    /// object (a bug in the caller, never the recipient's data).
    #[error("cannot turn the rendering context into JSON")]
    Context(#[source] serde_json::Error),
}

/// A rendered email, ready for [`super::Mailer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line, trimmed.
    pub subject: String,
    /// The text/plain part.
    pub text: String,
    /// The text/html part.
    pub html: String,
    /// The locale it is written in (its `Content-Language`).
    pub locale: Locale,
}

/// The compiled templates of every locale.
#[derive(Debug)]
pub struct Templates {
    locales: BTreeMap<Locale, LocaleTemplates>,
    default_locale: Locale,
    brand: Brand,
    /// How many files came from `TEMPLATES_DIR`.
    overrides: usize,
}

/// The files every locale must have, below its folder.
pub fn required_files() -> BTreeSet<String> {
    let mut files: BTreeSet<String> = LAYOUTS.iter().map(|f| (*f).to_owned()).collect();
    files.insert(WORDS_FILE.to_owned());
    for kind in EmailKind::ALL {
        for file in ["subject.hbs", "body.txt.hbs", "body.html.hbs"] {
            files.insert(format!("{}/{file}", kind.folder()));
        }
    }
    files.extend(Page::ALL.map(Page::file));
    files
}

fn invalid(file: impl Into<String>, problem: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        file: file.into(),
        problem: problem.into(),
    }
}

impl Templates {
    /// Loads the built-in templates with `config`'s overrides and brand,
    /// and checks every template of every locale (see the module docs).
    pub fn load(config: &TemplatesConfig) -> Result<Self, TemplateError> {
        let mut sources = embedded_sources()?;
        let built_in: BTreeSet<Locale> = sources.keys().cloned().collect();
        let overrides = match &config.dir {
            Some(dir) => add_overrides(dir, &mut sources)?,
            None => 0,
        };
        let required = required_files();
        let mut locales = BTreeMap::new();
        for (locale, files) in &sources {
            if let Some(file) = required.iter().find(|file| !files.contains_key(*file)) {
                let folder = match &config.dir {
                    Some(dir) if !built_in.contains(locale) => dir.display().to_string(),
                    _ => "templates".to_owned(),
                };
                let having: Vec<&str> = sources
                    .iter()
                    .filter(|(_, files)| files.contains_key(file))
                    .map(|(locale, _)| locale.as_str())
                    .collect();
                return Err(invalid(
                    format!("{folder}/{locale}/{file}"),
                    format!(
                        "missing (every locale needs every template; found in {})",
                        having.join(", ")
                    ),
                ));
            }
            locales.insert(locale.clone(), compile(files)?);
        }
        if !locales.contains_key(&config.default_locale) {
            return Err(invalid(
                "DEFAULT_LOCALE",
                format!(
                    "{} has no templates (locales: {})",
                    config.default_locale,
                    locales
                        .keys()
                        .map(Locale::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let templates = Self {
            locales,
            default_locale: config.default_locale.clone(),
            brand: config.brand.clone(),
            overrides,
        };
        templates.check()?;
        Ok(templates)
    }

    /// The locales there are templates for, in order.
    pub fn locales(&self) -> impl Iterator<Item = &Locale> + Clone {
        self.locales.keys()
    }

    /// How many files `TEMPLATES_DIR` gave.
    pub fn overrides(&self) -> usize {
        self.overrides
    }

    /// `DEFAULT_LOCALE`.
    pub fn default_locale(&self) -> &Locale {
        &self.default_locale
    }

    /// The locale Porter writes in for an account's locale: the best match
    /// ([`Locale::lookup`]), else the default (a recorded tag that no longer
    /// parses, see [`Locale::from_record`], or whose templates an operator
    /// removed still gets its emails).
    pub fn locale_for(&self, locale: &Locale) -> &Locale {
        locale
            .lookup(self.locales())
            .unwrap_or(&self.default_locale)
    }

    fn set(&self, locale: &Locale) -> (&Locale, &LocaleTemplates) {
        let locale = self.locale_for(locale);
        match self.locales.get_key_value(locale) {
            Some(found) => found,
            // `load` made sure the default locale has templates.
            None => self
                .locales
                .iter()
                .next()
                .expect("load checked that a locale exists"),
        }
    }

    /// The context with the brand and the locale added.
    fn context(&self, locale: &Locale, ctx: &impl Serialize) -> Result<Value, TemplateError> {
        let mut fields = match serde_json::to_value(ctx).map_err(TemplateError::Context)? {
            Value::Object(fields) => fields,
            Value::Null => Map::new(),
            _ => {
                return Err(TemplateError::Render {
                    template: "context".into(),
                    problem: "the context is not an object".into(),
                });
            }
        };
        if let Ok(Value::Object(brand)) = serde_json::to_value(&self.brand) {
            fields.extend(brand);
        }
        fields.insert("locale".into(), json!(locale));
        Ok(Value::Object(fields))
    }

    /// Renders the subject, text and HTML parts of an email in `locale`
    /// (or the closest there is).
    ///
    /// The subject is forced onto one trimmed line, whatever the context
    /// contains, so that it can never add a header.
    pub fn render_email(
        &self,
        locale: &Locale,
        kind: EmailKind,
        ctx: &impl Serialize,
    ) -> Result<RenderedEmail, TemplateError> {
        let (locale, set) = self.set(locale);
        let ctx = self.context(locale, ctx)?;
        let folder = kind.folder();
        Ok(RenderedEmail {
            subject: single_line(&render(
                locale,
                &set.text,
                &format!("{folder}/subject.hbs"),
                &ctx,
            )?),
            text: render(locale, &set.text, &format!("{folder}/body.txt.hbs"), &ctx)?,
            html: render(locale, &set.html, &format!("{folder}/body.html.hbs"), &ctx)?,
            locale: locale.clone(),
        })
    }

    /// Renders a full HTML page in `locale` (or the closest there is).
    pub fn render_page(
        &self,
        locale: &Locale,
        page: Page,
        ctx: &impl Serialize,
    ) -> Result<String, TemplateError> {
        let (locale, set) = self.set(locale);
        let ctx = self.context(locale, ctx)?;
        render(locale, &set.html, &page.file(), &ctx)
    }
}

/// Trims `s` and replaces every run of line breaks or other control
/// characters (with the blanks around them) by a single space.
fn single_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
