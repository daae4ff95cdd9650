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

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, Datelike, Timelike, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, no_escape,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    config::{Brand, TemplatesConfig},
    domain::Locale,
};

/// Every file under `templates/` as `(path below templates/, text)`,
/// listed by `build.rs`.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_templates.rs"));

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
    /// A file is missing, unknown, unreadable, does not compile, or fails
    /// the start-up rendering check.
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
    /// Rendering for a real recipient failed (it passed the check at start,
    /// so this is a context the samples do not cover).
    #[error("cannot render {template}: {problem}")]
    Render { template: String, problem: String },
}

/// Which email to render; each maps to a folder of each locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    /// `activation/`: context `username`, `link`, `expires_in` (seconds,
    /// for `{{duration}}`), `expires_at` (RFC 3339, for `{{datetime}}`).
    Activation,
    /// `already-registered/`: context `username` and optional `link`
    /// (present while the account is still pending).
    AlreadyRegistered,
    /// `password-reset/`: context `username`, `link`, `expires_in`,
    /// `expires_at` (as for `Activation`).
    PasswordReset,
    /// `password-changed/`: context `username`.
    PasswordChanged,
}

impl EmailKind {
    /// Every kind; the start-up check renders each.
    pub const ALL: [Self; 4] = [
        Self::Activation,
        Self::AlreadyRegistered,
        Self::PasswordReset,
        Self::PasswordChanged,
    ];

    /// The folder of its `subject.hbs`, `body.txt.hbs`, `body.html.hbs`.
    pub const fn folder(self) -> &'static str {
        match self {
            Self::Activation => "activation",
            Self::AlreadyRegistered => "already-registered",
            Self::PasswordReset => "password-reset",
            Self::PasswordChanged => "password-changed",
        }
    }

    /// Contexts covering each branch of the templates, for the start-up
    /// check and `porter templates preview`.
    pub fn samples(self) -> Vec<Value> {
        let link = "https://porter.example/activate/Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0";
        match self {
            Self::Activation => vec![json!({
                "username": "alice",
                "link": link,
                "expires_in": 900,
                "expires_at": "2026-12-03T09:15:00Z",
            })],
            Self::AlreadyRegistered => vec![
                json!({ "username": "alice", "link": link }),
                json!({ "username": "alice" }),
            ],
            Self::PasswordReset => vec![json!({
                "username": "alice",
                "link": "https://porter.example/reset-password/Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                "expires_in": 1800,
                "expires_at": "2026-12-03T09:45:00Z",
            })],
            Self::PasswordChanged => vec![json!({ "username": "alice" })],
        }
    }
}

/// Which HTML page to render (`pages/` of each locale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Context `key`, `username`, `requested_at` (RFC 3339 or null),
    /// `contested` (bool: ask for the password) and `wrong_password` (bool):
    /// names the registration, posts to `/api/activate-account/{key}`, and
    /// offers "This wasn't me" (`…/{key}/cancel`); rendering it changes
    /// nothing.
    Activate,
    /// No context fields: the registration was cancelled.
    Cancelled,
    /// Context `already_active` (bool).
    Activated,
    /// No context fields: the uniform page for an unusable link (410).
    LinkInvalid,
    /// Context `key` and optional `error` (what is wrong with the password
    /// tried): a form that posts a new password to
    /// `/api/password-reset/{key}`; rendering it changes nothing.
    ResetPassword,
    /// No context fields: the password was set.
    PasswordReset,
    /// No context fields: the uniform page for an unusable reset link (410).
    ResetLinkInvalid,
}

impl Page {
    /// Every page; the start-up check renders each.
    pub const ALL: [Self; 7] = [
        Self::Activate,
        Self::Cancelled,
        Self::Activated,
        Self::LinkInvalid,
        Self::ResetPassword,
        Self::PasswordReset,
        Self::ResetLinkInvalid,
    ];

    /// Its name below `pages/`, without `.html.hbs`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Cancelled => "cancelled",
            Self::Activated => "activated",
            Self::LinkInvalid => "link-invalid",
            Self::ResetPassword => "reset-password",
            Self::PasswordReset => "password-reset",
            Self::ResetLinkInvalid => "reset-link-invalid",
        }
    }

    /// Contexts covering each branch, like [`EmailKind::samples`].
    pub fn samples(self) -> Vec<Value> {
        match self {
            Self::Activate => {
                let page = |contested: bool, wrong_password: bool, requested_at: Value| {
                    json!({
                        "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                        "username": "alice",
                        "requested_at": requested_at,
                        "contested": contested,
                        "wrong_password": wrong_password,
                    })
                };
                let at = json!("2026-12-03T09:12:00Z");
                vec![
                    page(false, false, at.clone()),
                    page(true, false, at.clone()),
                    page(true, true, at),
                    page(false, false, Value::Null),
                ]
            }
            Self::Cancelled => vec![json!({})],
            Self::Activated => vec![
                json!({ "already_active": false }),
                json!({ "already_active": true }),
            ],
            Self::LinkInvalid | Self::PasswordReset | Self::ResetLinkInvalid => vec![json!({})],
            Self::ResetPassword => vec![
                json!({ "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0", "error": null }),
                json!({
                    "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                    "error": "must be at least 12 characters",
                }),
            ],
        }
    }

    fn file(self) -> String {
        format!("pages/{}.html.hbs", self.name())
    }
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

/// The words `locale.json` gives the helpers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    /// Per unit, the singular and plural with `{n}` for the number:
    /// `{"minute": ["{n} minute", "{n} minutes"]}`.
    units: Units,
    /// Joins the two largest units of a duration: "1 hour and 30 minutes".
    and: String,
    /// January to December.
    months: Vec<String>,
    /// A UTC date and time with `{year}`, `{month}` (the name), `{day}`,
    /// `{hour}` and `{minute}` (two digits each).
    datetime: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Units {
    day: [String; 2],
    hour: [String; 2],
    minute: [String; 2],
    second: [String; 2],
}

impl Words {
    fn parse(text: &str) -> Result<Self, String> {
        let words: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if words.months.len() != 12 {
            return Err(format!(
                "\"months\" must name 12 months, not {}",
                words.months.len()
            ));
        }
        Ok(words)
    }

    /// The two largest non-zero units of `seconds`: "15 minutes",
    /// "1 hour and 30 minutes".
    fn duration(&self, seconds: u64) -> String {
        let units = &self.units;
        let parts: Vec<String> = [
            (seconds / 86_400, &units.day),
            (seconds % 86_400 / 3600, &units.hour),
            (seconds % 3600 / 60, &units.minute),
            (seconds % 60, &units.second),
        ]
        .into_iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, [one, many])| {
            let form = if n == 1 { one } else { many };
            form.replace("{n}", &n.to_string())
        })
        .collect();
        match parts.as_slice() {
            [] => units.second[1].replace("{n}", "0"),
            [one] => one.clone(),
            [first, second, ..] => format!("{first} {} {second}", self.and),
        }
    }

    fn datetime(&self, at: DateTime<Utc>) -> String {
        let month = usize::try_from(at.month0())
            .ok()
            .and_then(|m| self.months.get(m))
            .map_or("", String::as_str);
        self.datetime
            .replace("{year}", &at.year().to_string())
            .replace("{month}", month)
            .replace("{day}", &at.day().to_string())
            .replace("{hour}", &format!("{:02}", at.hour()))
            .replace("{minute}", &format!("{:02}", at.minute()))
    }
}

/// `{{duration seconds}}`, in the locale's words.
struct DurationHelper(Arc<Words>);

impl HelperDef for DurationHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let seconds = h.param(0).and_then(|p| p.value().as_u64()).ok_or_else(|| {
            RenderErrorReason::ParamTypeMismatchForName(
                "duration",
                "0".into(),
                "a number of seconds".into(),
            )
        })?;
        out.write(&r.get_escape_fn()(&self.0.duration(seconds)))?;
        Ok(())
    }
}

/// `{{datetime rfc3339}}`, in the locale's words (UTC).
struct DateTimeHelper(Arc<Words>);

impl HelperDef for DateTimeHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let at = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| {
                RenderErrorReason::ParamTypeMismatchForName(
                    "datetime",
                    "0".into(),
                    "an RFC 3339 date and time".into(),
                )
            })?;
        out.write(&r.get_escape_fn()(&self.0.datetime(at.with_timezone(&Utc))))?;
        Ok(())
    }
}

/// Where a template's text came from, for error messages.
#[derive(Debug, Clone)]
struct Source {
    text: String,
    origin: String,
}

/// One locale's compiled templates.
struct LocaleTemplates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// The origin of each file, by its path below the locale's folder.
    origins: BTreeMap<String, String>,
}

impl std::fmt::Debug for LocaleTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocaleTemplates")
            .field("files", &self.origins.len())
            .finish_non_exhaustive()
    }
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

/// The registry a file goes into and its name there.
fn registry_name(file: &str) -> Option<(bool, &str)> {
    if let Some(name) = file.strip_suffix(".html.hbs") {
        Some((true, name))
    } else if let Some(name) = file.strip_suffix(".txt.hbs") {
        Some((false, name))
    } else {
        file.strip_suffix(".hbs").map(|name| (false, name))
    }
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

    /// The locale Porter writes in for a stored tag: the best match
    /// ([`Locale::lookup`]), else the default (a tag that no longer parses or
    /// whose templates an operator removed still gets its emails).
    pub fn locale_for(&self, tag: &str) -> &Locale {
        Locale::parse(tag)
            .ok()
            .and_then(|locale| locale.lookup(self.locales()))
            .unwrap_or(&self.default_locale)
    }

    fn set(&self, locale: &Locale) -> (&Locale, &LocaleTemplates) {
        let locale = self.locale_for(locale.as_str());
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
        let render_error = |problem: String| TemplateError::Render {
            template: "context".into(),
            problem,
        };
        let mut fields = match serde_json::to_value(ctx).map_err(|e| render_error(e.to_string()))? {
            Value::Object(fields) => fields,
            Value::Null => Map::new(),
            _ => return Err(render_error("the context is not an object".into())),
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

    /// Renders every email and page of every locale with every sample and
    /// fails on the first that does not render or leaves a placeholder.
    fn check(&self) -> Result<(), TemplateError> {
        for (locale, set) in &self.locales {
            let origin = |file: &str| {
                set.origins
                    .get(file)
                    .cloned()
                    .unwrap_or_else(|| file.to_owned())
            };
            // A render error names the file it happened in (a layout, say).
            let blame = |error: TemplateError| match error {
                TemplateError::Render { template, problem } => {
                    let file = template
                        .strip_prefix(&format!("{locale}/"))
                        .unwrap_or(&template);
                    invalid(origin(file), problem)
                }
                other => other,
            };
            for kind in EmailKind::ALL {
                let folder = kind.folder();
                for sample in kind.samples() {
                    let email = self.render_email(locale, kind, &sample).map_err(blame)?;
                    for (file, output) in [
                        ("subject.hbs", &email.subject),
                        ("body.txt.hbs", &email.text),
                        ("body.html.hbs", &email.html),
                    ] {
                        let file = origin(&format!("{folder}/{file}"));
                        check_output(&file, output)?;
                        if output.trim().is_empty() {
                            return Err(invalid(file, "renders nothing"));
                        }
                    }
                }
            }
            for page in Page::ALL {
                for sample in page.samples() {
                    let html = self.render_page(locale, page, &sample).map_err(blame)?;
                    check_output(&origin(&page.file()), &html)?;
                }
            }
        }
        Ok(())
    }
}

/// Renders the template of `file` (a path below the locale's folder); an
/// error names the file it happened in, which is a partial's own when the
/// partial failed.
fn render(
    locale: &Locale,
    registry: &Handlebars<'static>,
    file: &str,
    ctx: &Value,
) -> Result<String, TemplateError> {
    let Some((is_html, name)) = registry_name(file) else {
        return Err(invalid(file, "is not a template"));
    };
    registry.render(name, ctx).map_err(|e| {
        let failed = match e.template_name.as_deref() {
            Some(partial) if partial != name => {
                format!(
                    "{partial}{}",
                    if is_html { ".html.hbs" } else { ".txt.hbs" }
                )
            }
            _ => file.to_owned(),
        };
        TemplateError::Render {
            template: format!("{locale}/{failed}"),
            problem: describe_render_error(&e),
        }
    })
}

/// A rendered text must not show a placeholder a translation left behind:
/// handlebars braces (escaped `\{{x}}`, raw blocks) or a `{name}` in the
/// style of other template languages. CSS (`body { margin: 0 }`) has blanks
/// inside its braces and passes.
fn check_output(origin: &str, output: &str) -> Result<(), TemplateError> {
    if let Some(at) = output.find("{{").or_else(|| output.find("}}")) {
        let snippet: String = output[at..].chars().take(30).collect();
        return Err(invalid(
            origin,
            format!("leaves a placeholder unrendered: {snippet:?}"),
        ));
    }
    let mut rest = output;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            return Err(invalid(
                origin,
                format!(
                    "leaves a placeholder unrendered: \"{{{}}}\"",
                    &after[..name_len]
                ),
            ));
        }
        rest = after;
    }
    Ok(())
}

/// The built-in files by locale, then by path below the locale.
fn embedded_sources() -> Result<BTreeMap<Locale, BTreeMap<String, Source>>, TemplateError> {
    let mut sources: BTreeMap<Locale, BTreeMap<String, Source>> = BTreeMap::new();
    for (path, text) in EMBEDDED {
        let origin = format!("templates/{path}");
        let (locale, file) = locale_and_file(&origin, path)?;
        sources.entry(locale).or_default().insert(
            file,
            Source {
                text: (*text).to_owned(),
                origin,
            },
        );
    }
    Ok(sources)
}

/// Splits `de/activation/subject.hbs`; the folder must be a locale and the
/// file one Porter renders.
fn locale_and_file(origin: &str, relative: &str) -> Result<(Locale, String), TemplateError> {
    let Some((folder, file)) = relative.split_once('/') else {
        return Err(invalid(
            origin,
            "not in a locale's folder (templates live in <locale>/..., e.g. de/activation/subject.hbs)",
        ));
    };
    let locale = Locale::parse(folder).map_err(|e| {
        invalid(
            origin,
            format!("the folder {folder:?} is not a locale: it {e}"),
        )
    })?;
    if !required_files().contains(file) {
        return Err(invalid(
            origin,
            format!("{file} is not a template Porter renders (a misspelt name?)"),
        ));
    }
    Ok((locale, file.to_owned()))
}

/// Reads every file below `dir` over the built-in ones; returns how many.
fn add_overrides(
    dir: &Path,
    sources: &mut BTreeMap<Locale, BTreeMap<String, Source>>,
) -> Result<usize, TemplateError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let count = files.len();
    for path in files {
        let origin = path.display().to_string();
        let relative = path
            .strip_prefix(dir)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| invalid(&origin, "the path is not UTF-8"))?
            .replace('\\', "/");
        let (locale, file) = locale_and_file(&origin, &relative)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(&origin, format!("cannot read it: {e}")))?;
        sources
            .entry(locale)
            .or_default()
            .insert(file, Source { text, origin });
    }
    Ok(count)
}

/// Every file below `dir`, skipping hidden ones (`.DS_Store`, editors'
/// swap files).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        invalid(
            dir.display().to_string(),
            format!("cannot read TEMPLATES_DIR: {e}"),
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| invalid(dir.display().to_string(), e.to_string()))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(())
}

/// Compiles one locale's files into its two registries.
fn compile(files: &BTreeMap<String, Source>) -> Result<LocaleTemplates, TemplateError> {
    let words_source = &files[WORDS_FILE];
    let words = Arc::new(
        Words::parse(&words_source.text)
            .map_err(|problem| invalid(&words_source.origin, problem))?,
    );
    let registry = |escape: bool| {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        if !escape {
            registry.register_escape_fn(no_escape);
        }
        registry.register_helper("duration", Box::new(DurationHelper(words.clone())));
        registry.register_helper("datetime", Box::new(DateTimeHelper(words.clone())));
        registry
    };
    let (mut html, mut text) = (registry(true), registry(false));
    for (file, source) in files {
        let Some((is_html, name)) = registry_name(file) else {
            continue;
        };
        let target = if is_html { &mut html } else { &mut text };
        target
            .register_template_string(name, &source.text)
            .map_err(|e| invalid(&source.origin, describe_template_error(&e)))?;
    }
    Ok(LocaleTemplates {
        html,
        text,
        origins: files
            .iter()
            .map(|(file, source)| (file.clone(), source.origin.clone()))
            .collect(),
    })
}

/// A syntax error on one line, with its position.
fn describe_template_error(error: &handlebars::TemplateError) -> String {
    let reason = one_line(&error.reason().to_string());
    match error.pos() {
        Some((line, column)) => format!("line {line}, column {column}: {reason}"),
        None => reason,
    }
}

/// A rendering error on one line, with its position.
fn describe_render_error(error: &RenderError) -> String {
    let reason = match error.reason() {
        RenderErrorReason::MissingVariable(Some(name)) => format!(
            "{{{{{name}}}}} has no value (strict mode: the field is misspelt or not given to this template)"
        ),
        other => one_line(&other.to_string()),
    };
    match (error.line_no, error.column_no) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {reason}"),
        _ => reason,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
