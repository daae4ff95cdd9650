//! The key in an emailed link, whatever the link is for (activating an
//! account, resetting a password): `platform::link_keys::KeyPurpose` says which, this type
//! only what a key is. Whoever holds one can act on the account it belongs
//! to, so the key is treated as a bearer secret: it is generated from the
//! operating system's randomness, only its SHA-256 hash is stored (a leaked
//! database then activates or resets nothing), logs see a short fingerprint
//! of that hash, and `Debug` never shows it. The raw key leaves the process
//! only inside the emailed link.
//!
//! 32 characters drawn uniformly from 62 give about 190 bits of entropy, far
//! more than can be guessed online; that is also why a fast unsalted hash is
//! enough for storage, unlike for passwords.
//!
//! Keys are looked up by their hash, so the type deliberately has no `==`:
//! comparing raw keys would invite a comparison that leaks timing.

use std::fmt;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

const KEY_LEN: usize = 32;
const FINGERPRINT_LEN: usize = 16;

/// A well-formed link key: 32 ASCII letters and digits.
pub struct LinkKey(String);

/// Why a string is not a link key; the messages are meant for an API
/// field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkKeyError {
    #[error("must be exactly {KEY_LEN} characters long")]
    WrongLength,
    #[error("may only contain the letters A to Z, a to z and the digits 0 to 9")]
    InvalidCharacter,
}

impl LinkKey {
    /// Checks that `raw` has the shape of a key. Whether the key belongs to an
    /// account is decided by looking up its [`storage_hash`](Self::storage_hash).
    pub fn parse(raw: &str) -> Result<Self, LinkKeyError> {
        if raw.chars().count() != KEY_LEN {
            return Err(LinkKeyError::WrongLength);
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LinkKeyError::InvalidCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Draws a new key from the thread-local generator, a ChaCha12 stream
    /// cipher seeded and periodically reseeded from the operating system.
    pub fn generate() -> Self {
        Self(Alphanumeric.sample_string(&mut rand::rng(), KEY_LEN))
    }

    /// A short, non-reversible label for logs and support requests: the first
    /// 16 hex digits of the key's SHA-256 hash.
    pub fn fingerprint(&self) -> String {
        let mut hash = self.storage_hash();
        hash.truncate(FINGERPRINT_LEN);
        hash
    }

    /// The lower-case hex SHA-256 hash of the key, which is what gets stored.
    pub fn storage_hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The raw key, for building the emailed link only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "Abcdefghijklmnopqrstuvwxyz012345";

    #[test]
    fn accepts_well_formed_keys() {
        for input in [
            SAMPLE,
            "00000000000000000000000000000000",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        ] {
            let key = LinkKey::parse(input).unwrap();
            assert_eq!(key.expose(), input);
        }
    }

    #[test]
    fn refuses_malformed_keys() {
        use LinkKeyError::*;
        // Each case is (input, expected error, why).
        let cases = [
            ("", WrongLength, "empty"),
            (
                "Abcdefghijklmnopqrstuvwxyz01234",
                WrongLength,
                "31 characters",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz0123456",
                WrongLength,
                "33 characters",
            ),
            (
                " Abcdefghijklmnopqrstuvwxyz012345",
                WrongLength,
                "surrounding space is not trimmed",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz01234-",
                InvalidCharacter,
                "hyphen",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz01234 ",
                InvalidCharacter,
                "space",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz01234é",
                InvalidCharacter,
                "non-ASCII letter",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz01234５",
                InvalidCharacter,
                "full-width digit",
            ),
            (
                "Abcdefghijklmnopqrstuvwxyz01234\n",
                InvalidCharacter,
                "line feed",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(
                LinkKey::parse(input).err(),
                Some(expected),
                "{input:?} ({why})"
            );
        }
    }

    #[test]
    fn hashes_match_sha256() {
        let key = LinkKey::parse(SAMPLE).unwrap();
        // Computed independently with `printf %s "$SAMPLE" | sha256sum`.
        let expected = "99ace9ac249ad4adce3e97d48cf9e52fd415e937dbe66c07e4c03f954a2d3ac1";
        assert_eq!(key.storage_hash(), expected);
        assert_eq!(key.fingerprint(), &expected[..FINGERPRINT_LEN]);
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let key = LinkKey::generate();
            assert_eq!(key.expose().len(), KEY_LEN);
            assert!(key.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(LinkKey::parse(key.expose()).is_ok());
            assert!(seen.insert(key.expose().to_owned()), "duplicate key");
        }
    }

    #[test]
    fn generated_keys_use_the_whole_alphabet() {
        let drawn: HashSet<u8> = (0..200)
            .flat_map(|_| LinkKey::generate().expose().bytes().collect::<Vec<_>>())
            .collect();
        // 6,400 draws from 62 symbols miss one with probability below 1e-40.
        assert_eq!(drawn.len(), 62);
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = LinkKey::parse(SAMPLE).unwrap();
        assert_eq!(format!("{key:?}"), "LinkKey(<redacted>)");
        assert_eq!(format!("{key:#?}"), "LinkKey(<redacted>)");
        assert!(!format!("{:?}", Some(&key)).contains(SAMPLE));
    }

    #[test]
    fn error_messages_read_as_field_errors() {
        assert_eq!(
            LinkKeyError::WrongLength.to_string(),
            "must be exactly 32 characters long"
        );
        assert!(
            LinkKeyError::InvalidCharacter
                .to_string()
                .starts_with("may only")
        );
    }

    proptest! {
        #[test]
        fn well_formed_keys_round_trip(raw in "[A-Za-z0-9]{32}") {
            let key = LinkKey::parse(&raw).unwrap();
            prop_assert_eq!(key.expose(), raw.as_str());
            let hash = key.storage_hash();
            prop_assert_eq!(hash.len(), 64);
            prop_assert!(hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            prop_assert!(hash.starts_with(&key.fingerprint()));
            prop_assert_eq!(key.fingerprint().len(), FINGERPRINT_LEN);
        }

        #[test]
        fn strings_that_are_not_32_alphanumerics_are_refused(raw in any::<String>()) {
            let well_formed = raw.len() == KEY_LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric());
            prop_assert_eq!(LinkKey::parse(&raw).is_ok(), well_formed);
        }

        #[test]
        fn debug_never_shows_the_key(raw in "[A-Za-z0-9]{32}") {
            let key = LinkKey::parse(&raw).unwrap();
            let debug = format!("{key:?}");
            prop_assert!(!debug.contains(&raw));
            prop_assert!(!debug.contains(&key.fingerprint()));
        }
    }
}
