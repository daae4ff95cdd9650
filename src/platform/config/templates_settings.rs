//! What emails and pages say, and in which language.

use std::{path::PathBuf, str::FromStr};

use lettre::Address;
use serde::Serialize;

use super::{
    ConfigError,
    settings::{Env, process_env},
    values::parse_url_with_schemes,
};
use crate::domain::Locale;

section! {
    TEMPLATE_SETTINGS = "Languages, templates and brand" {
        DEFAULT_LOCALE: Value("en"), Public,
            "the locale of a sign-up that names none and whose `Accept-Language` matches none; it must have templates";
        TEMPLATES_DIR: None, Public,
            "a folder laid out like `templates/`; each file replaces the built-in one of the same path, a complete `<locale>/` folder adds a locale (see [operations](operations.md#languages-templates-and-brand))";
        PRODUCT_NAME: Value("Porter"), Public,
            "the product's name in every email and page";
        SUPPORT_URL: None, Public,
            "when set, every email and page says where to get help (`https:`, `http:` or `mailto:`)";
        SUPPORT_EMAIL: None, Public,
            "when set, every email says which address to write to for help";
    }
}

/// What emails and pages say, and in which language: `TEMPLATES_DIR`,
/// `DEFAULT_LOCALE`, `PRODUCT_NAME`, `SUPPORT_URL`, `SUPPORT_EMAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatesConfig {
    /// Files here replace the built-in templates of the same path
    /// (`de/activation/subject.hbs`), and a complete folder adds a locale.
    pub dir: Option<PathBuf>,
    /// The locale of a person whose request names none Porter has.
    pub default_locale: Locale,
    pub brand: Brand,
}

/// The operator's brand, given to every template as `product_name`,
/// `support_url` and `support_email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brand {
    pub product_name: String,
    pub support_url: Option<String>,
    pub support_email: Option<String>,
}

impl TemplatesConfig {
    /// For `porter templates`, which needs nothing else.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&process_env())
    }

    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            dir: env.optional(&TEMPLATES_DIR, |raw| Ok(PathBuf::from(raw)))?,
            default_locale: env.setting(&DEFAULT_LOCALE, |raw| {
                Locale::parse(raw).map_err(|e| format!("{raw:?} {e}"))
            })?,
            brand: Brand {
                product_name: env.setting(&PRODUCT_NAME, parse_product_name)?,
                support_url: env.optional(&SUPPORT_URL, |raw| {
                    parse_url_with_schemes(raw, &["http", "https", "mailto"]).map(String::from)
                })?,
                support_email: env.optional(&SUPPORT_EMAIL, |raw| {
                    Address::from_str(raw)
                        .map(|address| address.to_string())
                        .map_err(|e| format!("is not an email address ({e})"))
                })?,
            },
        })
    }
}

/// A name shown in subjects and headings: one line of text.
fn parse_product_name(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("must be one line without control characters".into());
    }
    Ok(raw.to_owned())
}
