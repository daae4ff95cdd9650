//! The table of settings: one [`Setting`] per environment variable, with
//! its default and meaning, grouped by section.
//!
//! The table is the single place a setting is described. The readers take
//! their defaults from it ([`Env::setting`] parses the row's default text
//! when the variable is unset), `docs/configuration.md` is generated from it
//! ([`reference`]), and `porter config` prints each row's effective value
//! ([`Effective`]). A reader can name a variable only through its row, so
//! no variable is read that the table does not describe.

use std::{cell::RefCell, fmt::Write as _};

use super::{ConfigError, SecretUrl};
use crate::domain::text::printable;

/// One environment variable Porter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    /// What an unset (or empty) variable means.
    pub default: Unset,
    /// One paragraph for operators, as the configuration reference shows it.
    pub meaning: &'static str,
    pub secrecy: Secrecy,
}

/// What a setting is when its variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// Unset stops the process.
    Required,
    /// Unset means off, or nothing of that kind (`TRUSTED_PROXIES`).
    None,
    /// The value an operator would write (`15m`, `10/15m`, `false`); the
    /// reader parses it exactly as if it had been set.
    Value(&'static str),
    /// Worked out by the reader (or later, at start); the text says how
    /// (`cores`, `32 × HASH_CONCURRENCY`).
    Computed(&'static str),
}

/// How `porter config` shows a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    Public,
    /// A URL whose password is masked, as [`SecretUrl`] shows it.
    UrlPassword,
    /// Never shown.
    Whole,
}

impl Secrecy {
    fn show(self, value: &str) -> String {
        match self {
            Self::Public => value.to_owned(),
            Self::UrlPassword => SecretUrl::new(value).to_string(),
            Self::Whole => "<redacted>".to_owned(),
        }
    }
}

/// A group of settings, one heading of the reference.
#[derive(Debug)]
pub struct Section {
    pub title: &'static str,
    pub settings: &'static [Setting],
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Environment,
    Default,
}

/// One setting as a process would run with it, secrets already masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub name: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// The variables as a lookup function sees them, read through the table.
/// Every read is noted, so a loaded configuration can say what it ran with.
pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    read: RefCell<Vec<Effective>>,
}

/// The process environment.
pub(super) fn process_env() -> Env<'static> {
    Env::new(&|name| std::env::var(name).ok())
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            read: RefCell::new(Vec::new()),
        }
    }

    /// Every setting read so far, in the order read.
    pub(super) fn into_effective(self) -> Vec<Effective> {
        self.read.into_inner()
    }

    /// The variable's value, trimmed; `None` when unset or blank.
    fn raw(&self, setting: &Setting) -> Option<String> {
        (self.lookup)(setting.name)
            .map(|raw| raw.trim().to_owned())
            .filter(|raw| !raw.is_empty())
    }

    /// Notes a value as `porter config` shows it: `value` is what the
    /// variable holds, or would hold when set, so its secrets are masked.
    fn note(&self, setting: &Setting, value: &str, origin: Origin) {
        self.note_shown(setting, setting.secrecy.show(value), origin);
    }

    fn note_shown(&self, setting: &Setting, shown: String, origin: Origin) {
        self.read.borrow_mut().push(Effective {
            name: setting.name,
            value: printable(&shown).into_owned(),
            origin,
        });
    }

    fn parse_set<T>(
        &self,
        setting: &Setting,
        raw: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = parse(raw).map_err(|problem| ConfigError {
            variable: setting.name,
            problem,
        })?;
        self.note(setting, raw, Origin::Environment);
        Ok(value)
    }

    /// A setting with no value when unset ([`Unset::None`], or a
    /// [`Unset::Computed`] worked out later than the configuration).
    pub(super) fn optional<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(setting) {
            Some(raw) => self.parse_set(setting, &raw, parse).map(Some),
            None => {
                let shown = match setting.default {
                    Unset::Computed(how) => how.replace('`', ""),
                    _ => "(unset)".to_owned(),
                };
                self.note_shown(setting, shown, Origin::Default);
                Ok(None)
            }
        }
    }

    /// A [`Unset::Required`] setting.
    pub(super) fn required<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let raw = self.raw(setting).ok_or_else(|| ConfigError {
            variable: setting.name,
            problem: "is not set".into(),
        })?;
        self.parse_set(setting, &raw, parse)
    }

    /// A [`Unset::Value`] setting: unset, the row's default is parsed.
    pub(super) fn setting<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        if let Some(raw) = self.raw(setting) {
            return self.parse_set(setting, &raw, parse);
        }
        let Unset::Value(default) = setting.default else {
            return Err(ConfigError {
                variable: setting.name,
                problem: format!("has no default value in the table ({:?})", setting.default),
            });
        };
        let value = parse(default).map_err(|problem| ConfigError {
            variable: setting.name,
            problem: format!("the table's default {default:?}: {problem}"),
        })?;
        self.note(setting, default, Origin::Default);
        Ok(value)
    }

    /// A [`Unset::Computed`] setting known when the configuration is
    /// read: unset, `compute` gives it.
    pub(super) fn computed<T: std::fmt::Display>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
        compute: impl FnOnce() -> T,
    ) -> Result<T, ConfigError> {
        if let Some(raw) = self.raw(setting) {
            return self.parse_set(setting, &raw, parse);
        }
        let value = compute();
        self.note(setting, &value.to_string(), Origin::Default);
        Ok(value)
    }

    /// A variable that was renamed: set under its old name, it stops the
    /// process with the new name rather than being ignored in silence.
    pub(super) fn refuse_renamed(
        &self,
        old_name: &'static str,
        new: &Setting,
    ) -> Result<(), ConfigError> {
        match (self.lookup)(old_name) {
            Some(raw) if !raw.trim().is_empty() => Err(ConfigError {
                variable: old_name,
                problem: format!("was renamed to {}", new.name),
            }),
            _ => Ok(()),
        }
    }
}

/// The configuration reference, `docs/configuration.md`, as Markdown.
pub fn reference(sections: &[Section]) -> String {
    let mut text = String::from(
        "# Configuration\n\
         \n\
         <!-- Generated from the table of settings in src/platform/config/ by \
         `porter config --reference > docs/configuration.md`; edit the table, not this file. -->\n\
         \n\
         Read from the environment at start; a missing or malformed value stops the\n\
         process with one line naming the variable (`porter: configuration error:\n\
         PUBLIC_BASE_URL: is not set`). `porter config` prints the value each setting\n\
         has, and whether it came from the environment or the default, with passwords\n\
         in URLs and `SECRET_KEY` redacted.\n",
    );
    for section in sections {
        let _ = write!(
            text,
            "\n## {}\n\n| variable | default | meaning |\n|---|---|---|\n",
            section.title
        );
        for setting in section.settings {
            let default = match setting.default {
                Unset::Required => "required".to_owned(),
                Unset::None => "none".to_owned(),
                Unset::Value(value) => format!("`{value}`"),
                Unset::Computed(how) => how.to_owned(),
            };
            let _ = writeln!(
                text,
                "| `{}` | {default} | {} |",
                setting.name, setting.meaning
            );
        }
    }
    text
}

/// `porter config`'s table: variable, origin, value.
pub fn render_effective(settings: &[Effective]) -> String {
    let width = settings.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut text = format!("{:width$}  {:7}  VALUE\n", "VARIABLE", "FROM");
    for setting in settings {
        let origin = match setting.origin {
            Origin::Environment => "env",
            Origin::Default => "default",
        };
        let _ = writeln!(
            text,
            "{:width$}  {origin:7}  {}",
            setting.name, setting.value
        );
    }
    text
}

/// Declares a section of the table: one constant per setting, named as its
/// variable, and the [`Section`] listing them in order. A row reads
/// `NAME: Unset, Secrecy, "meaning";`: what unset means, one of
/// [`Unset`]'s `Required`, `None`, `Value("15m")` or `Computed("how")`; one
/// of [`Secrecy`]'s variants; and the reference's text.
macro_rules! section {
    (
        $(#[$section_doc:meta])*
        $section:ident = $title:literal {
            $( $name:ident: $default:ident $(($text:literal))?, $secrecy:ident, $meaning:literal; )*
        }
    ) => {
        $(
            pub(super) const $name: $crate::platform::config::settings::Setting =
                $crate::platform::config::settings::Setting {
                    name: stringify!($name),
                    default: $crate::platform::config::settings::Unset::$default $(($text))?,
                    meaning: $meaning,
                    secrecy: $crate::platform::config::settings::Secrecy::$secrecy,
                };
        )*
        $(#[$section_doc])*
        pub(super) const $section: $crate::platform::config::settings::Section =
            $crate::platform::config::settings::Section {
                title: $title,
                settings: &[$($name),*],
            };
    };
}
