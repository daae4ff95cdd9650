//! A person's locale: a BCP 47 language tag (`en`, `de`, `de-CH`,
//! `zh-Hant-TW`), parsed at the edge like every other input.
//!
//! The tag is stored in the account's events and picks the language of every
//! email and page the account gets, and it names a folder of templates, so
//! only a well-formed tag is accepted: letters and digits in subtags of at
//! most eight, separated by `-`, beginning with a language of two to eight
//! letters, at most 35 characters (RFC 5646's minimum buffer). A tag that
//! is not well formed (`en_US`, `../x`, `e`, `en--us`) never becomes a
//! `Locale`, so it can never reach a file path or a stored event.
//!
//! Case is canonical (RFC 5646 §2.1.1): the language lower case, a
//! four-letter script title case, a two-letter region upper case, the rest
//! lower case; `EN-us` and `en-US` are the same locale.
//!
//! Whether Porter *supports* a well-formed tag is not a domain question (it
//! depends on the templates an operator installed); [`Locale::lookup`] does
//! the matching, given the locales there are.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest tag accepted; RFC 5646 §4.4.1 asks implementations to keep at
/// least this much, and no tag Porter has templates for comes near it.
const MAX_LEN: usize = 35;

/// A well-formed BCP 47 language tag in canonical case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locale(String);

/// Why a tag is not a well-formed locale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocaleError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_LEN} characters")]
    TooLong,
    #[error(
        "is not a BCP 47 language tag (like \"en\", \"de\" or \"de-CH\": letters and digits in parts of at most 8, separated by \"-\", starting with a language of 2 to 8 letters)"
    )]
    Malformed,
}

impl Locale {
    /// Parses a language tag, canonicalizing its case.
    pub fn parse(raw: &str) -> Result<Self, LocaleError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(LocaleError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(LocaleError::TooLong);
        }
        let mut canonical = String::with_capacity(raw.len());
        for (index, subtag) in raw.split('-').enumerate() {
            let well_formed = (1..=8).contains(&subtag.len())
                && subtag.bytes().all(|b| b.is_ascii_alphanumeric())
                && (index > 0
                    || (subtag.len() >= 2 && subtag.bytes().all(|b| b.is_ascii_alphabetic())));
            if !well_formed {
                return Err(LocaleError::Malformed);
            }
            if index > 0 {
                canonical.push('-');
            }
            let alphabetic = subtag.bytes().all(|b| b.is_ascii_alphabetic());
            match (index, subtag.len()) {
                (1.., 2) if alphabetic => canonical.push_str(&subtag.to_ascii_uppercase()),
                (1.., 4) if alphabetic => {
                    let lower = subtag.to_ascii_lowercase();
                    canonical.push_str(&lower[..1].to_ascii_uppercase());
                    canonical.push_str(&lower[1..]);
                }
                _ => canonical.push_str(&subtag.to_ascii_lowercase()),
            }
        }
        Ok(Self(canonical))
    }

    /// The locale an event recorded, taken as recorded (it was parsed when
    /// it was recorded). A tag that today's rules would refuse is kept, not
    /// refused: the log is not rewritten, and choosing templates for it
    /// ([`Self::lookup`]) finds none, so its emails fall back to the default
    /// locale like those of any tag Porter has no templates for.
    pub fn from_record(tag: &str) -> Self {
        Self(tag.to_owned())
    }

    /// `en`, Porter's default locale.
    pub fn english() -> Self {
        Self("en".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The best of `available` for this tag, by RFC 4647 "lookup": the tag
    /// itself, then the tag with its last subtag removed, and so on
    /// (`de-CH-1996` → `de-CH` → `de`). Matching ignores case.
    pub fn lookup<'a>(
        &self,
        available: impl IntoIterator<Item = &'a Self> + Clone,
    ) -> Option<&'a Self> {
        let mut candidate = self.0.as_str();
        loop {
            if let Some(found) = available.clone().into_iter().find(|l| l.0 == candidate) {
                return Some(found);
            }
            let cut = candidate.rfind('-')?;
            candidate = &candidate[..cut];
            // A single-letter subtag introduces an extension and is never
            // the end of a lookup candidate (RFC 4647 §3.4).
            if let Some(single) = candidate.rfind('-').filter(|at| candidate.len() - at == 2) {
                candidate = &candidate[..single];
            }
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Locale {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Locale {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn locale(raw: &str) -> Locale {
        Locale::parse(raw).expect(raw)
    }

    #[test]
    fn well_formed_tags_are_canonicalized() {
        for (raw, canonical) in [
            ("en", "en"),
            ("DE", "de"),
            ("en-us", "en-US"),
            (" de-ch ", "de-CH"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("sr-LATN", "sr-Latn"),
            ("es-419", "es-419"),
            ("de-CH-1996", "de-CH-1996"),
            ("en-US-x-TWAIN", "en-US-x-twain"),
        ] {
            assert_eq!(locale(raw).as_str(), canonical, "{raw}");
        }
    }

    #[test]
    fn malformed_tags_are_refused() {
        assert_eq!(Locale::parse(""), Err(LocaleError::Empty));
        assert_eq!(Locale::parse("   "), Err(LocaleError::Empty));
        assert_eq!(
            Locale::parse("en-abcdefgh-abcdefgh-abcdefgh-abcdefgh"),
            Err(LocaleError::TooLong)
        );
        for raw in [
            "e",
            "en_US",
            "en--us",
            "-en",
            "en-",
            "12",
            "de/..",
            "../de",
            "en us",
            "deutsch-ü",
            "abcdefghi",
            "en-abcdefghi",
            "x-private",
        ] {
            assert_eq!(Locale::parse(raw), Err(LocaleError::Malformed), "{raw}");
        }
    }

    #[test]
    fn lookup_truncates_until_a_match() {
        let available = [locale("de"), locale("en"), locale("pt-BR")];
        let find = |raw: &str| locale(raw).lookup(&available).map(Locale::as_str);
        assert_eq!(find("de"), Some("de"));
        assert_eq!(find("de-CH"), Some("de"));
        assert_eq!(find("de-CH-1996"), Some("de"));
        assert_eq!(find("en-US-x-twain"), Some("en"));
        assert_eq!(find("pt-BR"), Some("pt-BR"));
        assert_eq!(
            find("pt"),
            None,
            "a broader tag never matches a narrower one"
        );
        assert_eq!(find("fr"), None);
    }

    #[test]
    fn serde_goes_through_parse() {
        assert_eq!(
            serde_json::to_string(&locale("de-ch")).expect("serializes"),
            "\"de-CH\""
        );
        assert!(serde_json::from_str::<Locale>("\"en_US\"").is_err());
    }

    proptest! {
        #[test]
        fn a_parsed_tag_parses_to_itself(raw in "[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8}){0,3}") {
            if let Ok(tag) = Locale::parse(&raw) {
                prop_assert_eq!(Locale::parse(tag.as_str()), Ok(tag.clone()));
                prop_assert!(tag.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
    }
}
