//! Which locale a request is answered in, when no account says.
//!
//! A sign-up may name its `locale`; otherwise, and for pages shown before
//! Porter knows whose link it is, `Accept-Language` is matched against the
//! locales Porter has templates for, and `DEFAULT_LOCALE` is the last word.
//! Once an account exists, its recorded locale decides (the templates'
//! `locale_for`), never the headers of whoever opens its link.

use http::{HeaderMap, header};

use crate::{domain::Locale, platform::mail::Templates};

/// At most this many language ranges of one `Accept-Language` are looked
/// at, so a huge header costs no more than a normal one.
const MAX_RANGES: usize = 16;

/// The best locale for `Accept-Language`, else `DEFAULT_LOCALE`.
///
/// Ranges are taken by descending `q` (ties in the order given); each is
/// matched by RFC 4647 lookup (`de-CH` finds `de`). `*`, `q=0` and ranges
/// that are not language tags are skipped.
pub fn negotiate<'a>(templates: &'a Templates, headers: &HeaderMap) -> &'a Locale {
    let header = headers
        .get_all(header::ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut ranges: Vec<(u16, Locale)> = header
        .split(',')
        .take(MAX_RANGES)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = Locale::parse(parts.next()?).ok()?;
            let quality = parts
                .find_map(|param| {
                    let (name, value) = param.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_quality(value.trim()))
                })
                .unwrap_or(Some(1000))?;
            (quality > 0).then_some((quality, tag))
        })
        .collect();
    // Stable: equal weights keep the client's order.
    ranges.sort_by_key(|(quality, _)| std::cmp::Reverse(*quality));
    ranges
        .iter()
        .find_map(|(_, tag)| tag.lookup(templates.locales()))
        .unwrap_or_else(|| templates.default_locale())
}

/// A sign-up's `locale` field: a well-formed tag Porter has templates for
/// (`de-AT` is recorded as `de`), or the message for the field.
pub fn requested(templates: &Templates, raw: &str) -> Result<Locale, String> {
    let tag = Locale::parse(raw).map_err(|e| e.to_string())?;
    tag.lookup(templates.locales()).cloned().ok_or_else(|| {
        let supported: Vec<&str> = templates.locales().map(Locale::as_str).collect();
        format!(
            "is not a supported locale (supported: {})",
            supported.join(", ")
        )
    })
}

/// `q` in thousandths (RFC 9110 §12.4.2: `0` to `1` with up to three
/// decimals); `None` when malformed.
fn parse_quality(raw: &str) -> Option<u16> {
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::platform::config::{Brand, TemplatesConfig};

    fn templates(default: &str) -> Templates {
        Templates::load(&TemplatesConfig {
            dir: None,
            default_locale: Locale::parse(default).expect("tag"),
            brand: Brand {
                product_name: "Porter".into(),
                support_url: None,
                support_email: None,
            },
        })
        .expect("built-in templates load")
    }

    fn negotiated(templates: &Templates, accept_language: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(accept_language).expect("header"),
        );
        negotiate(templates, &headers).to_string()
    }

    #[test]
    fn accept_language_picks_the_best_supported_locale() {
        let t = templates("en");
        for (header, expected) in [
            ("de", "de"),
            ("de-CH", "de"),
            ("de-CH, de;q=0.9, en;q=0.8", "de"),
            ("fr-FR, fr;q=0.9, de;q=0.5, en;q=0.4", "de"),
            ("en;q=0.5, de;q=0.6", "de"),
            ("de;q=0.5, en;q=0.5", "de"),
            ("de;q=0, en", "en"),
            ("fr, *;q=0.1", "en"),
            ("", "en"),
            ("de;q=2, de;q=abc, en_US, ;;;, de;q=0.0001", "en"),
            ("DE-at;Q=1.000", "de"),
        ] {
            assert_eq!(negotiated(&t, header), expected, "{header:?}");
        }
    }

    #[test]
    fn without_a_match_the_default_locale_answers() {
        assert_eq!(negotiated(&templates("de"), "fr, it"), "de");
        assert_eq!(
            negotiate(&templates("de"), &HeaderMap::new()).as_str(),
            "de"
        );
    }

    #[test]
    fn a_requested_locale_must_be_well_formed_and_supported() {
        let t = templates("en");
        assert_eq!(requested(&t, "de").map(|l| l.to_string()), Ok("de".into()));
        assert_eq!(
            requested(&t, "de-AT").map(|l| l.to_string()),
            Ok("de".into())
        );
        assert_eq!(
            requested(&t, "EN-gb").map(|l| l.to_string()),
            Ok("en".into())
        );
        assert_eq!(
            requested(&t, "fr"),
            Err("is not a supported locale (supported: de, en)".into())
        );
        assert!(
            requested(&t, "en_US")
                .expect_err("malformed")
                .starts_with("is not a BCP 47 language tag")
        );
    }
}
