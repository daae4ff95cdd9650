//! The words Rust fills into templates: each locale's `locale.json`, and the
//! `{{duration}}` and `{{datetime}}` helpers that write with them.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde::Deserialize;

/// The words `locale.json` gives the helpers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Words {
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
    pub(super) fn parse(text: &str) -> Result<Self, String> {
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
pub(super) struct DurationHelper(pub(super) Arc<Words>);

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
pub(super) struct DateTimeHelper(pub(super) Arc<Words>);

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
