//! Usernames are shown to other people and used to look accounts up, so two
//! names that a person reads as the same must belong to one account, and a name
//! must not be able to carry invisible or layout-changing characters into
//! pages, logs or e-mail headers. Parsing therefore normalizes first and then
//! checks a small allow-list, instead of trying to enumerate everything that is
//! dangerous.
//!
//! # Character set
//!
//! After NFKC normalization a username is 3 to 32 Unicode code points long and
//! every code point is one of:
//!
//! - a letter or digit of any script, as decided by `char::is_alphanumeric`
//!   (the Unicode `Alphabetic` and `Numeric` properties);
//! - `_` (low line), `-` (hyphen-minus) or `.` (full stop).
//!
//! The first code point is a letter or digit, and no two of `_`, `-` and `.`
//! stand next to each other. Everything else is refused: spaces of every kind,
//! control characters such as CR and LF (which could forge e-mail header
//! lines), format characters such as zero-width joiners and bidirectional
//! overrides (which make a name display differently from what it contains),
//! symbols and emoji. Combining marks that are not themselves alphabetic, such
//! as U+0301 COMBINING ACUTE ACCENT, are refused as well, so an accented letter
//! must have a precomposed form; NFKC produces it when one exists, which is why
//! `e` followed by U+0301 is accepted as `é`.
//!
//! Look-alike letters from different scripts (Latin `a` and Cyrillic `а`) are
//! deliberately not handled here: telling them apart needs the Unicode
//! confusables data and a policy decision about mixed scripts.
//!
//! # Canonical form
//!
//! Uniqueness is decided on the canonical form, which is the Unicode
//! compatibility caseless form (Unicode §3.13, definition D146) recomposed with
//! NFC to keep stored strings short. `Ｂｏｂ`, `BOB` and `bob` are one name,
//! and so are `Straße` and `STRASSE`.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

const MIN_CHARS: usize = 3;
const MAX_CHARS: usize = 32;

/// No input longer than this many UTF-8 bytes per permitted code point can
/// normalize to an acceptable length: a code point takes at most 4 bytes, and
/// NFKC composes at most 4 code points into one. Checking the raw byte length
/// first keeps a huge request body from being normalized at all.
pub(super) const MAX_UTF8_BYTES_PER_NFKC_CHAR: usize = 16;

/// A validated username together with the form used to decide uniqueness.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username {
    display: String,
    canonical: String,
}

/// Why a username was refused; the messages are meant for an API field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("must be at least {MIN_CHARS} characters long")]
    TooShort,
    #[error("must be at most {MAX_CHARS} characters long")]
    TooLong,
    #[error("may only contain letters, digits, '_', '-' and '.'")]
    InvalidCharacter,
    #[error("must start with a letter or a digit")]
    MustStartWithLetterOrDigit,
    #[error("must not have two of '_', '-' and '.' in a row")]
    ConsecutivePunctuation,
}

impl Username {
    /// Normalizes `raw` with NFKC and checks it against the rules in the
    /// module documentation.
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        if raw.len() > MAX_CHARS * MAX_UTF8_BYTES_PER_NFKC_CHAR {
            return Err(UsernameError::TooLong);
        }
        let display: String = raw.nfkc().collect();

        let length = display.chars().count();
        if length < MIN_CHARS {
            return Err(UsernameError::TooShort);
        }
        if length > MAX_CHARS {
            return Err(UsernameError::TooLong);
        }
        if !display
            .chars()
            .all(|c| c.is_alphanumeric() || is_punctuation(c))
        {
            return Err(UsernameError::InvalidCharacter);
        }
        if display.starts_with(is_punctuation) {
            return Err(UsernameError::MustStartWithLetterOrDigit);
        }
        let chars: Vec<char> = display.chars().collect();
        if chars
            .windows(2)
            .any(|pair| is_punctuation(pair[0]) && is_punctuation(pair[1]))
        {
            return Err(UsernameError::ConsecutivePunctuation);
        }

        let canonical = compatibility_caseless(&display);
        Ok(Self { display, canonical })
    }

    /// The username an event recorded, taken as recorded: its display and
    /// canonical forms are what [`Self::parse`] made of it then. Nothing is
    /// checked again, because rules judge new names, not names already
    /// granted: a name that today's rules would refuse (say they were made
    /// stricter) still names its account, and its canonical form stays the
    /// one its uniqueness claim holds, even if canonicalization has changed.
    pub fn from_record(display: &str, canonical: &str) -> Self {
        Self {
            display: display.to_owned(),
            canonical: canonical.to_owned(),
        }
    }

    /// The name as the person chose it, after NFKC normalization.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form that decides whether two usernames are the same name.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

fn is_punctuation(c: char) -> bool {
    matches!(c, '_' | '-' | '.')
}

/// Returns the compatibility caseless form of `text`, recomposed with NFC.
///
/// Unicode defines compatibility caseless matching as equality of
/// `NFKD(fold(NFKD(fold(NFD(text)))))`; the inner folding and normalization are
/// needed because NFKD can turn a folded character back into one that folds
/// again. Recomposing that result with NFC keeps the equality classes intact,
/// because NFC is one-to-one on NFKD-normalized strings. Password checks use
/// the same function so that "contains the username" compares like with like.
pub(super) fn compatibility_caseless(text: &str) -> String {
    text.nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_names() {
        // Each case is (input, expected display form, expected canonical form, why).
        let cases = [
            ("bob", "bob", "bob", "shortest allowed name"),
            (
                "Bob_Smith-2.0",
                "Bob_Smith-2.0",
                "bob_smith-2.0",
                "all punctuation kinds, separated",
            ),
            (
                "42isthe_answer",
                "42isthe_answer",
                "42isthe_answer",
                "may start with a digit",
            ),
            (
                "trailing_",
                "trailing_",
                "trailing_",
                "only the start is restricted",
            ),
            (
                "Ｂｏｂ＿１",
                "Bob_1",
                "bob_1",
                "full-width letters, digit and low line become ASCII",
            ),
            (
                "e\u{301}ric",
                "éric",
                "éric",
                "a decomposed accent is composed",
            ),
            ("Straße", "Straße", "strasse", "sharp s folds to ss"),
            (
                "STRA\u{1E9E}E",
                "STRA\u{1E9E}E",
                "strasse",
                "capital sharp s folds to ss",
            ),
            (
                "\u{1C5}ak",
                "Džak",
                "džak",
                "the titlecase digraph is split by NFKC",
            ),
            ("Маша", "Маша", "маша", "Cyrillic letters"),
            ("山田太", "山田太", "山田太", "Han characters have no case"),
            (
                "\u{216B}",
                "XII",
                "xii",
                "one Roman numeral character is three letters after NFKC",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz012345",
                "abcdefghijklmnopqrstuvwxyz012345",
                "abcdefghijklmnopqrstuvwxyz012345",
                "32 characters is the limit",
            ),
        ];
        for (input, display, canonical, why) in cases {
            let name = Username::parse(input)
                .unwrap_or_else(|error| panic!("{input:?} ({why}) was refused: {error}"));
            assert_eq!(name.as_str(), display, "display of {input:?} ({why})");
            assert_eq!(
                name.canonical(),
                canonical,
                "canonical of {input:?} ({why})"
            );
        }
    }

    #[test]
    fn counts_code_points_not_bytes() {
        let at_limit = "é".repeat(MAX_CHARS);
        assert!(Username::parse(&at_limit).is_ok());
        let over_limit = "é".repeat(MAX_CHARS + 1);
        assert_eq!(Username::parse(&over_limit), Err(UsernameError::TooLong));
    }

    #[test]
    fn refuses_invalid_names() {
        use UsernameError::*;
        // Each case is (input, expected error, why).
        let cases = [
            ("", TooShort, "empty"),
            ("ab", TooShort, "two characters"),
            (
                "e\u{301}e",
                TooShort,
                "three code points typed, two after NFKC",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz0123456",
                TooLong,
                "33 characters",
            ),
            (
                "_bob",
                MustStartWithLetterOrDigit,
                "starts with punctuation",
            ),
            (
                "＿bob",
                MustStartWithLetterOrDigit,
                "full-width low line is a low line",
            ),
            (".bob", MustStartWithLetterOrDigit, "starts with a dot"),
            ("bob..smith", ConsecutivePunctuation, "two dots"),
            ("bob-_smith", ConsecutivePunctuation, "hyphen then low line"),
            ("bob smith", InvalidCharacter, "space"),
            (" bob", InvalidCharacter, "leading space is not trimmed"),
            (
                "bob\u{A0}smith",
                InvalidCharacter,
                "no-break space becomes a space",
            ),
            ("bob\tsmith", InvalidCharacter, "tab"),
            (
                "bob\r\nBcc: x@example.com",
                InvalidCharacter,
                "header injection",
            ),
            ("bob\u{0}", InvalidCharacter, "NUL"),
            ("bob\u{85}x", InvalidCharacter, "C1 next-line control"),
            ("bo\u{200B}b", InvalidCharacter, "zero-width space"),
            ("bo\u{200D}b", InvalidCharacter, "zero-width joiner"),
            ("bob\u{AD}x", InvalidCharacter, "soft hyphen"),
            (
                "evil\u{202E}gpj.exe",
                InvalidCharacter,
                "right-to-left override",
            ),
            ("bob\u{2066}x", InvalidCharacter, "left-to-right isolate"),
            ("bob\u{FEFF}", InvalidCharacter, "byte order mark"),
            (
                "ab\u{301}c",
                InvalidCharacter,
                "an accent with no precomposed form",
            ),
            ("bob@example.com", InvalidCharacter, "at sign"),
            ("bob+tag", InvalidCharacter, "plus sign"),
            ("bob\u{1F600}", InvalidCharacter, "emoji"),
            (
                "bob\u{BD}",
                InvalidCharacter,
                "a vulgar fraction becomes a fraction slash",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(Username::parse(input), Err(expected), "{input:?} ({why})");
        }
    }

    #[test]
    fn refuses_huge_input_before_normalizing() {
        let huge = "a".repeat(10_000_000);
        assert_eq!(Username::parse(&huge), Err(UsernameError::TooLong));
    }

    #[test]
    fn titlecase_digraphs_are_one_name() {
        // U+01C4, U+01C5 and U+01C6 are the upper, title and lower case forms
        // of the single-character digraph DŽ; NFKC splits each into two letters.
        for form in ["\u{1C4}ak", "\u{1C5}ak", "\u{1C6}ak", "DŽAK", "dz\u{30C}ak"] {
            assert_eq!(
                Username::parse(form).unwrap().canonical(),
                "džak",
                "{form:?}"
            );
        }
    }

    #[test]
    fn canonical_form_is_a_key_not_a_name() {
        // Full case folding turns U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE
        // into `i` followed by U+0307 COMBINING DOT ABOVE, which has no
        // precomposed form; Turkish names stay accepted, but their canonical
        // form would not pass as a username itself.
        let name = Username::parse("\u{130}stanbul").unwrap();
        assert_eq!(name.canonical(), "i\u{307}stanbul");
        assert_eq!(
            Username::parse(name.canonical()),
            Err(UsernameError::InvalidCharacter)
        );
    }

    #[test]
    fn error_messages_read_as_field_errors() {
        let errors = [
            UsernameError::TooShort,
            UsernameError::TooLong,
            UsernameError::InvalidCharacter,
            UsernameError::MustStartWithLetterOrDigit,
            UsernameError::ConsecutivePunctuation,
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
        }
        assert_eq!(
            UsernameError::TooShort.to_string(),
            "must be at least 3 characters long"
        );
    }

    proptest! {
        #[test]
        fn canonicalization_is_idempotent(text in any::<String>()) {
            let once = compatibility_caseless(&text);
            prop_assert_eq!(compatibility_caseless(&once), once);
        }

        #[test]
        fn ascii_names_parse_and_canonicalize_to_lower_case(
            name in "[A-Za-z0-9]([A-Za-z0-9]|[_.-][A-Za-z0-9]){2,15}",
        ) {
            let parsed = Username::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(parsed.canonical(), name.to_ascii_lowercase());
        }

        #[test]
        fn canonical_form_of_an_accepted_name_is_stable(
            name in "[a-zA-Z\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{17F}\u{391}-\u{3A9}\u{410}-\u{44F}\u{FF21}-\u{FF3A}0-9]{3,32}",
        ) {
            if let Ok(parsed) = Username::parse(&name) {
                prop_assert_eq!(compatibility_caseless(parsed.canonical()), parsed.canonical());
                // The canonical form is a lookup key and need not be a valid
                // username itself (see `canonical_form_is_a_key_not_a_name`),
                // but when it is, it must lead back to itself.
                if let Ok(again) = Username::parse(parsed.canonical()) {
                    prop_assert_eq!(again.canonical(), parsed.canonical());
                }
            }
        }

        #[test]
        fn parsing_never_panics_and_accepted_names_obey_the_rules(text in any::<String>()) {
            if let Ok(name) = Username::parse(&text) {
                let length = name.as_str().chars().count();
                prop_assert!((MIN_CHARS..=MAX_CHARS).contains(&length));
                prop_assert!(name.as_str().chars().all(|c| c.is_alphanumeric() || is_punctuation(c)));
            }
        }
    }
}
