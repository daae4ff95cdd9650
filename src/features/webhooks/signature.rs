//! Standard Webhooks signatures: what lets a receiver tell Porter's
//! deliveries from forgeries with any of that specification's libraries.
//!
//! A secret is `whsec_` and the base64 of 32 random bytes; the signed
//! content is `{webhook-id}.{webhook-timestamp}.{body}`; the header is
//! `v1,` and the base64 of its HMAC-SHA256, one such entry per live secret,
//! separated by spaces (during a rotation the old and the new secret both
//! sign, so a receiver can switch at its own pace).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngExt as _;
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret.
const SECRET_BYTES: usize = 32;

/// A signing secret, as printed once to the operator.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A stored secret that is not `whsec_` and base64.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is `whsec_` and base64")]
pub struct MalformedSecret;

impl Secret {
    /// A new secret from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A secret as stored, checked.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        let key = text.strip_prefix(SECRET_PREFIX).ok_or(MalformedSecret)?;
        match STANDARD.decode(key) {
            Ok(bytes) if !bytes.is_empty() => Ok(Self(text.to_owned())),
            _ => Err(MalformedSecret),
        }
    }

    /// The `whsec_…` text: to store, or to print once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).unwrap_or(&self.0);
        STANDARD.decode(encoded).unwrap_or_default()
    }
}

/// The `webhook-signature` header of a delivery: one `v1,` entry per secret,
/// in the order given.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(&secret.key()).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_specifications_published_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        assert_eq!(
            sign(
                &[secret],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_secrets_give_two_entries_in_order() {
        let (new, old) = (Secret::generate(), Secret::generate());
        let both = sign(&[new.clone(), old.clone()], "evt_1", 1, b"{}");
        let entries: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            entries,
            [
                sign(&[new], "evt_1", 1, b"{}"),
                sign(&[old], "evt_1", 1, b"{}")
            ]
        );
    }

    #[test]
    fn generated_secrets_parse_and_differ_and_garbage_does_not() {
        let secret = Secret::generate();
        assert!(secret.expose().starts_with(SECRET_PREFIX));
        assert_eq!(secret.key().len(), SECRET_BYTES);
        assert_eq!(Secret::parse(secret.expose()).expect("parses"), secret);
        assert_ne!(Secret::generate(), secret);
        for garbage in [
            "",
            "whsec_",
            "whsec_not base64!",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(Secret::parse(garbage).is_err(), "{garbage:?}");
        }
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
