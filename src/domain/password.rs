//! A password is the one input that must never be seen again after sign-up, so
//! this type can only be handed to the hasher: it has a redacted `Debug`, no
//! `Display` and no serialization. The policy follows NIST SP 800-63B: a
//! length floor and a block-list of known-common passwords rather than
//! composition rules, because composition rules push people towards
//! predictable patterns such as `Password1!` without making guessing harder.
//!
//! The password is NFKC-normalized before it is checked and before it is
//! hashed, so that the same characters typed on different keyboards or input
//! methods produce the same hash; any later verification must normalize the
//! candidate in the same way.
//!
//! The block-list `common-passwords.txt` comes from the "passwords" frequency
//! list shipped in the source of the `zxcvbn` crate, version 3.1.1 (MIT
//! licence, file `src/frequency_lists.rs`): of its 10,000 most frequent
//! entries, the 3,395 with at least 8 characters, lower-cased. Shorter entries
//! were dropped because they can never equal a password long enough to pass.
//! Entries of 8 to 11 characters cannot match at the current 12-character
//! minimum either, but they keep the list meaningful if the minimum is lowered.
//! Most common passwords are short, so today the length floor does most of the
//! work and only the 56 longest entries can still match; catching more would
//! need a larger breached-password corpus.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

use super::username::{MAX_UTF8_BYTES_PER_NFKC_CHAR, Username, compatibility_caseless};

const MIN_CHARS: usize = 12;
const MAX_CHARS: usize = 128;

/// A username shorter than this would match too many unrelated passwords to
/// be worth refusing them.
const MIN_USERNAME_CHARS_TO_MATCH: usize = 3;

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// A password that meets the sign-up policy, in NFKC form.
pub struct Password(String);

/// Why a password was refused; the messages are meant for an API field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_CHARS} characters long")]
    TooShort,
    #[error("must be at most {MAX_CHARS} characters long")]
    TooLong,
    #[error("is one of the most commonly used passwords; choose another")]
    Common,
    #[error("must not contain the username")]
    ContainsUsername,
    #[error("is a repeated or sequential pattern that is easy to guess; choose another")]
    Predictable,
}

impl Password {
    /// Normalizes `raw` with NFKC and checks it against the sign-up policy,
    /// including that it does not contain `username` in any letter case.
    pub fn parse(raw: &str, username: Option<&Username>) -> Result<Self, PasswordError> {
        if raw.len() > MAX_CHARS * MAX_UTF8_BYTES_PER_NFKC_CHAR {
            return Err(PasswordError::TooLong);
        }
        let normalized: String = raw.nfkc().collect();

        let length = normalized.chars().count();
        if length < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if length > MAX_CHARS {
            return Err(PasswordError::TooLong);
        }

        let folded = compatibility_caseless(&normalized);
        // A common password with digits or symbols tacked on ("password1234")
        // is as guessable as the password itself.
        let stem =
            folded.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
        if COMMON_PASSWORDS.contains(folded.as_str()) || COMMON_PASSWORDS.contains(stem) {
            return Err(PasswordError::Common);
        }
        if is_repetition(&folded) || is_sequence(&folded) {
            return Err(PasswordError::Predictable);
        }
        if let Some(username) = username {
            let name = username.canonical();
            if name.chars().count() >= MIN_USERNAME_CHARS_TO_MATCH && folded.contains(name) {
                return Err(PasswordError::ContainsUsername);
            }
        }
        Ok(Self(normalized))
    }

    /// A password given to sign in, set against a stored hash: normalized
    /// like a new one but not held to today's policy (the stored one may
    /// predate it). Only an absurd length is refused, before any hashing.
    pub fn for_sign_in(raw: &str) -> Result<Self, PasswordError> {
        if raw.len() > MAX_CHARS * MAX_UTF8_BYTES_PER_NFKC_CHAR {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(raw.nfkc().collect()))
    }

    /// The normalized password, for the password hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `abcabcabcabc`, `passwordpassword`: one unit said again and again.
fn is_repetition(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    (1..=chars.len() / 2)
        .filter(|unit| chars.len().is_multiple_of(*unit))
        .any(|unit| chars.chunks(unit).all(|chunk| chunk == &chars[..unit]))
}

/// `abcdefghijkl`, `123456789012`, `zyxwvutsrqpo`: each character one step
/// from the last, in one direction (digits wrap from 9 to 0).
fn is_sequence(text: &str) -> bool {
    let step = |a: char, b: char| -> i64 {
        match (a.to_digit(10), b.to_digit(10)) {
            (Some(9), Some(0)) => 1,
            (Some(0), Some(9)) => -1,
            _ => i64::from(u32::from(b)) - i64::from(u32::from(a)),
        }
    };
    let chars: Vec<char> = text.chars().collect();
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|pair| step(pair[0], pair[1]))
        .collect();
    steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn username(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn accepts_valid_passwords() {
        // Each case is (input, username, expected stored form, why).
        let cases = [
            (
                "correct horse battery staple",
                None,
                "correct horse battery staple",
                "spaces are allowed",
            ),
            (
                "zebra quartz violin",
                None,
                "zebra quartz violin",
                "no composition rules",
            ),
            (
                "Tr0ub4dor&3xyz",
                Some("alice"),
                "Tr0ub4dor&3xyz",
                "does not contain the username",
            ),
            (
                "ｚｅｂｒａ－ｑｕａｒｔｚ９",
                None,
                "zebra-quartz9",
                "full-width letters are stored as ASCII",
            ),
            (
                "café-au-lait-\u{1F600}",
                None,
                "café-au-lait-\u{1F600}",
                "any Unicode, including emoji",
            ),
            (
                "cafe\u{301}-au-lait",
                None,
                "café-au-lait",
                "decomposed accents are composed",
            ),
            (
                "密码很长很长很长很长很长",
                None,
                "密码很长很长很长很长很长",
                "Chinese counts code points",
            ),
        ];
        for (input, name, stored, why) in cases {
            let name = name.map(username);
            let password = Password::parse(input, name.as_ref())
                .unwrap_or_else(|error| panic!("{input:?} ({why}) was refused: {error}"));
            assert_eq!(password.expose(), stored, "{input:?} ({why})");
        }
    }

    #[test]
    fn refuses_invalid_passwords() {
        use PasswordError::*;
        let long = "a".repeat(MAX_CHARS + 1);
        // Each case is (input, username, expected error, why).
        let cases = [
            ("", None, TooShort, "empty"),
            ("elevenchars", None, TooShort, "11 characters"),
            (
                "e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}",
                None,
                TooShort,
                "12 code points typed, 6 after NFKC",
            ),
            (long.as_str(), None, TooLong, "129 characters"),
            ("leavemealone", None, Common, "on the list"),
            ("LeaveMeAlone", None, Common, "on the list in another case"),
            (
                "ｌｅａｖｅｍｅａｌｏｎｅ",
                None,
                Common,
                "on the list in full-width letters",
            ),
            ("qwerty123456", None, Common, "keyboard pattern on the list"),
            (
                "password1234!",
                None,
                Common,
                "a listed password with digits appended",
            ),
            ("passwordpassword", None, Predictable, "a word said twice"),
            (
                "aaaaaaaaaaaaaa",
                None,
                Predictable,
                "one character repeated",
            ),
            ("abcabcabcabc", None, Predictable, "a short unit repeated"),
            ("abcdefghijklm", None, Predictable, "an alphabet run"),
            ("789012345678", None, Predictable, "a digit run that wraps"),
            ("zyxwvutsrqpo", None, Predictable, "a run backwards"),
            (
                "my-alice_w-secret",
                Some("alice_w"),
                ContainsUsername,
                "contains the username",
            ),
            (
                "my-ALICE_W-secret",
                Some("alice_w"),
                ContainsUsername,
                "contains the username in another case",
            ),
            (
                "alice_w-secret",
                Some("Alice_W"),
                ContainsUsername,
                "username typed in another case",
            ),
            (
                "STRASSENBAHN-99",
                Some("straße"),
                ContainsUsername,
                "case folding turns sharp s into ss",
            ),
        ];
        for (input, name, expected, why) in cases {
            let name = name.map(username);
            let result = Password::parse(input, name.as_ref());
            assert_eq!(result.err(), Some(expected), "{input:?} ({why})");
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        // Letters seven apart: neither a repetition nor a sequence.
        let varied = |n: usize, base: char| -> String {
            (0..n)
                .map(|i| char::from_u32(u32::from(base) + (i as u32 * 7) % 26).unwrap())
                .collect()
        };
        assert!(Password::parse(&varied(MIN_CHARS, 'a'), None).is_ok());
        assert!(Password::parse(&varied(MAX_CHARS, 'a'), None).is_ok());
        assert!(Password::parse(&varied(MAX_CHARS, 'à'), None).is_ok());
    }

    #[test]
    fn refuses_huge_input_before_normalizing() {
        let huge = "a".repeat(10_000_000);
        assert_eq!(
            Password::parse(&huge, None).err(),
            Some(PasswordError::TooLong)
        );
    }

    #[test]
    fn bundled_list_is_lower_case_and_long_enough() {
        assert!(
            COMMON_PASSWORDS.len() >= 3_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        for entry in COMMON_PASSWORDS.iter() {
            assert!(entry.chars().count() >= 8, "{entry:?}");
            assert_eq!(compatibility_caseless(entry), *entry);
        }
        assert!(COMMON_PASSWORDS.contains("password"));
        assert!(COMMON_PASSWORDS.contains("leavemealone"));
    }

    #[test]
    fn debug_output_is_redacted() {
        let password = Password::parse("correct horse battery staple", None).unwrap();
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
        assert_eq!(format!("{password:#?}"), "Password(<redacted>)");
        let wrapped = Some(password);
        assert!(!format!("{wrapped:?}").contains("horse"));
    }

    #[test]
    fn error_messages_read_as_field_errors() {
        for error in [
            PasswordError::TooShort,
            PasswordError::TooLong,
            PasswordError::Common,
            PasswordError::ContainsUsername,
        ] {
            let message = error.to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
            assert!(!message.is_empty());
        }
        assert_eq!(
            PasswordError::TooShort.to_string(),
            "must be at least 12 characters long"
        );
    }

    proptest! {
        #[test]
        fn random_letter_passwords_parse(raw in "[a-zA-Z]{12,128}") {
            prop_assume!(!COMMON_PASSWORDS.contains(raw.to_lowercase().as_str()));
            let password = Password::parse(&raw, None).unwrap();
            prop_assert_eq!(password.expose(), raw.as_str());
        }

        #[test]
        fn passwords_containing_the_username_are_refused(
            name in "[a-z][a-z0-9]{2,15}",
            before in "[a-zA-Z0-9 ]{0,20}",
            after in "[a-zA-Z0-9 ]{12,20}",
        ) {
            let user = username(&name);
            let raw = format!("{before}{}{after}", name.to_uppercase());
            prop_assume!(!COMMON_PASSWORDS.contains(raw.to_lowercase().as_str()));
            prop_assert_eq!(
                Password::parse(&raw, Some(&user)).err(),
                Some(PasswordError::ContainsUsername)
            );
        }

        #[test]
        fn debug_never_shows_the_secret(raw in "\\PC{12,64}") {
            if let Ok(password) = Password::parse(&raw, None) {
                let debug = format!("{password:?}");
                prop_assert!(!debug.contains(password.expose()));
                prop_assert!(!debug.contains(raw.as_str()));
            }
        }

        #[test]
        fn length_is_counted_after_normalization(raw in any::<String>()) {
            let length = raw.nfkc().count();
            match Password::parse(&raw, None) {
                Ok(password) => prop_assert_eq!(password.expose().chars().count(), length),
                Err(PasswordError::TooShort) => prop_assert!(length < MIN_CHARS),
                Err(PasswordError::TooLong) => prop_assert!(length > MAX_CHARS),
                Err(PasswordError::Common | PasswordError::ContainsUsername | PasswordError::Predictable) => {}
            }
        }
    }
}
