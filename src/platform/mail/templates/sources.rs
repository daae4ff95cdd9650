//! Where template text comes from: the files `build.rs` embedded, then an
//! operator's `TEMPLATES_DIR` over them. Every path must be a locale's
//! folder and a file Porter renders, so a misspelt override fails at start.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{TemplateError, invalid, required_files};
use crate::domain::Locale;

/// Every file under `templates/` as `(path below templates/, text)`,
/// listed by `build.rs`.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_templates.rs"));

/// Where a template's text came from, for error messages.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) text: String,
    pub(super) origin: String,
}

/// The built-in files by locale, then by path below the locale.
pub(super) fn embedded_sources() -> Result<BTreeMap<Locale, BTreeMap<String, Source>>, TemplateError>
{
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
pub(super) fn add_overrides(
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
        let text = std::fs::read_to_string(&path).map_err(|source| TemplateError::Unreadable {
            file: origin.clone(),
            doing: "cannot read it",
            source,
        })?;
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
    let unreadable = |doing| {
        move |source| TemplateError::Unreadable {
            file: dir.display().to_string(),
            doing,
            source,
        }
    };
    let entries = std::fs::read_dir(dir).map_err(unreadable("cannot read TEMPLATES_DIR"))?;
    for entry in entries {
        let entry = entry.map_err(unreadable("cannot list it"))?;
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
