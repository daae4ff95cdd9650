//! Compiling one locale's files into its two handlebars registries (HTML
//! escaping for HTML, none for text and subjects) and rendering from them,
//! with errors put on one line that names the file they happened in.

use std::{collections::BTreeMap, sync::Arc};

use handlebars::{Handlebars, RenderError, RenderErrorReason, no_escape};
use serde_json::Value;

use super::{
    TemplateError, WORDS_FILE, invalid,
    sources::Source,
    words::{DateTimeHelper, DurationHelper, Words},
};
use crate::domain::Locale;

/// One locale's compiled templates.
pub(super) struct LocaleTemplates {
    pub(super) html: Handlebars<'static>,
    pub(super) text: Handlebars<'static>,
    /// The origin of each file, by its path below the locale's folder.
    pub(super) origins: BTreeMap<String, String>,
}

impl std::fmt::Debug for LocaleTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocaleTemplates")
            .field("files", &self.origins.len())
            .finish_non_exhaustive()
    }
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

/// Renders the template of `file` (a path below the locale's folder); an
/// error names the file it happened in, which is a partial's own when the
/// partial failed.
pub(super) fn render(
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

/// Compiles one locale's files into its two registries.
pub(super) fn compile(files: &BTreeMap<String, Source>) -> Result<LocaleTemplates, TemplateError> {
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
