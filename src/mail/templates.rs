//! Handlebars rendering for emails and pages.
//!
//! Escaping is a property of a handlebars registry, not of a template, so
//! there are two registries: HTML templates get HTML escaping, plain-text
//! parts and subjects get none (an HTML-escaping registry would turn `&` in a
//! username into `&amp;` in the text part). Both run in strict mode so that a
//! context field that is missing or misspelt fails the render instead of
//! silently producing an email with a hole in it.
//!
//! Templates are compiled into the binary with `include_str!`: the process
//! never reads `templates/` at run time, a missing file is a compile error,
//! and a syntax error makes [`Templates::load`] fail at start-up.

use handlebars::{Handlebars, no_escape};
use serde::Serialize;

/// Pairs a registry name with the text of `templates/<name><ext>`.
macro_rules! template {
    ($name:literal, $ext:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/templates/",
                $name,
                $ext
            )),
        )
    };
}

/// Rendered with HTML escaping. `layouts/*` are used as partials.
const HTML_TEMPLATES: &[(&str, &str)] = &[
    template!("layouts/email", ".html.hbs"),
    template!("layouts/page", ".html.hbs"),
    template!("activation/body", ".html.hbs"),
    template!("already-registered/body", ".html.hbs"),
    template!("password-reset/body", ".html.hbs"),
    template!("password-changed/body", ".html.hbs"),
    template!("pages/activate", ".html.hbs"),
    template!("pages/activated", ".html.hbs"),
    template!("pages/link-invalid", ".html.hbs"),
    template!("pages/reset-password", ".html.hbs"),
    template!("pages/password-reset", ".html.hbs"),
    template!("pages/reset-link-invalid", ".html.hbs"),
];

/// Rendered without escaping: subjects and text/plain parts.
const TEXT_TEMPLATES: &[(&str, &str)] = &[
    template!("activation/subject", ".hbs"),
    template!("activation/body", ".txt.hbs"),
    template!("already-registered/subject", ".hbs"),
    template!("already-registered/body", ".txt.hbs"),
    template!("password-reset/subject", ".hbs"),
    template!("password-reset/body", ".txt.hbs"),
    template!("password-changed/subject", ".hbs"),
    template!("password-changed/body", ".txt.hbs"),
];

/// A template failed to compile or to render.
///
/// Messages name the template and, for strict-mode failures, the missing
/// field; they never contain context values.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template has a syntax error (caught by [`Templates::load`]).
    #[error("invalid template: {0}")]
    Syntax(#[from] handlebars::TemplateError),
    /// Rendering failed, e.g. a context field is missing (strict mode).
    #[error("cannot render template: {0}")]
    Render(#[from] handlebars::RenderError),
}

/// Which email to render; each maps to a folder under `templates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    /// `templates/activation/`: context `username`, `link`,
    /// `expires_in_minutes`, `product_name`.
    Activation,
    /// `templates/already-registered/`: context `username`, `product_name`
    /// and optional `link` (present while the account is still pending).
    AlreadyRegistered,
    /// `templates/password-reset/`: context `username`, `link`,
    /// `expires_in_minutes`, `product_name`.
    PasswordReset,
    /// `templates/password-changed/`: context `username`, `product_name`.
    PasswordChanged,
}

impl EmailKind {
    /// Registry names of the subject and body templates.
    const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Activation => ("activation/subject", "activation/body"),
            Self::AlreadyRegistered => ("already-registered/subject", "already-registered/body"),
            Self::PasswordReset => ("password-reset/subject", "password-reset/body"),
            Self::PasswordChanged => ("password-changed/subject", "password-changed/body"),
        }
    }
}

/// Which HTML page to render (`templates/pages/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Context `key`: explains the link and posts to
    /// `/api/activate-account/{key}`; rendering it changes nothing.
    Activate,
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
    const fn name(self) -> &'static str {
        match self {
            Self::Activate => "pages/activate",
            Self::Activated => "pages/activated",
            Self::LinkInvalid => "pages/link-invalid",
            Self::ResetPassword => "pages/reset-password",
            Self::PasswordReset => "pages/password-reset",
            Self::ResetLinkInvalid => "pages/reset-link-invalid",
        }
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
}

/// The compiled email and page templates.
#[derive(Debug)]
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
}

impl Templates {
    /// Compiles every embedded template; fails on the first syntax error.
    pub fn load() -> Result<Self, TemplateError> {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        for (name, source) in HTML_TEMPLATES {
            html.register_template_string(name, source)?;
        }

        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(no_escape);
        for (name, source) in TEXT_TEMPLATES {
            text.register_template_string(name, source)?;
        }

        Ok(Self { html, text })
    }

    /// Renders the subject, text and HTML parts of an email.
    ///
    /// The subject is forced onto one trimmed line, whatever the context
    /// contains, so that it can never add a header.
    pub fn render_email(
        &self,
        kind: EmailKind,
        ctx: &impl Serialize,
    ) -> Result<RenderedEmail, TemplateError> {
        let (subject, body) = kind.names();
        Ok(RenderedEmail {
            subject: single_line(&self.text.render(subject, ctx)?),
            text: self.text.render(body, ctx)?,
            html: self.html.render(body, ctx)?,
        })
    }

    /// Renders a full HTML page.
    pub fn render_page(&self, page: Page, ctx: &impl Serialize) -> Result<String, TemplateError> {
        Ok(self.html.render(page.name(), ctx)?)
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
