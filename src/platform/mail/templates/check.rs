//! The start-up check: every email and page of every locale rendered with
//! every sample, failing on the first that does not render, renders nothing,
//! or leaves a placeholder behind.

use super::{EmailKind, Page, TemplateError, Templates, invalid};

impl Templates {
    /// Renders every email and page of every locale with every sample and
    /// fails on the first that does not render or leaves a placeholder.
    pub(super) fn check(&self) -> Result<(), TemplateError> {
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
