//! Device tokens (OWASP's "device cookie"): what keeps an owner able to
//! sign in while someone else spends the failed sign-in budget of their
//! login.
//!
//! Failed sign-ins are budgeted per login text, so guessing is slow; but a
//! spent budget refuses the right password too, which would make it a cheap
//! lockout of whoever the attacker names. A successful sign-in therefore
//! answers a token for the device it came from, and a later sign-in that
//! presents it, for the same account, is budgeted per device instead of per
//! login: the attacker, who never signed in as the owner, holds no such
//! token and cannot touch that budget.
//!
//! A token is `base64url(device_id ‖ HMAC-SHA256(key, account_id ‖
//! device_id))`, with a random 128-bit device id and the key derived from
//! `SECRET_KEY` for this purpose alone. Nothing is stored: the MAC is the
//! proof, checked in constant time, and a token of another account, a
//! forged one or a malformed one is simply not valid ([`DeviceTokens::verify`]
//! answers `None` alike), so callers treat it exactly as no token.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngExt as _;
use sha2::Sha256;
use uuid::Uuid;

use crate::platform::config::SecretKey;

const DEVICE_ID_BYTES: usize = 16;
const MAC_BYTES: usize = 32;

/// One device an account signed in from; only ever learnt from a valid
/// token or made fresh at a successful sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId([u8; DEVICE_ID_BYTES]);

impl DeviceId {
    /// A new device, from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; DEVICE_ID_BYTES];
        rand::rng().fill(&mut bytes);
        Self(bytes)
    }

    /// The subject of this device's failed sign-in budget.
    pub fn budget_subject(self) -> String {
        format!("device:{}", hex::encode(self.0))
    }
}

/// Issues and checks device tokens with the key derived from `SECRET_KEY`.
pub struct DeviceTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for DeviceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceTokens(<redacted>)")
    }
}

impl DeviceTokens {
    pub fn new(secret_key: &SecretKey) -> Self {
        Self {
            key: secret_key.derive("device-token"),
        }
    }

    /// The token that proves `device` signed in to `account_id`.
    pub fn token(&self, account_id: Uuid, device: DeviceId) -> String {
        let mut bytes = Vec::with_capacity(DEVICE_ID_BYTES + MAC_BYTES);
        bytes.extend_from_slice(&device.0);
        bytes.extend_from_slice(&self.mac(account_id, device).finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The device `presented` names, if it is a token issued to
    /// `account_id`; `None` for anything else, whatever is wrong with it.
    pub fn verify(&self, account_id: Uuid, presented: &str) -> Option<DeviceId> {
        let bytes = URL_SAFE_NO_PAD.decode(presented).ok()?;
        if bytes.len() != DEVICE_ID_BYTES + MAC_BYTES {
            return None;
        }
        let (id, mac) = bytes.split_at(DEVICE_ID_BYTES);
        let device = DeviceId(id.try_into().ok()?);
        self.mac(account_id, device)
            .verify_slice(mac)
            .ok()
            .map(|()| device)
    }

    fn mac(&self, account_id: Uuid, device: DeviceId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(account_id.as_bytes());
        mac.update(&device.0);
        mac
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn tokens(secret: &str) -> DeviceTokens {
        DeviceTokens::new(&SecretKey::from_str(secret).expect("a long enough secret"))
    }

    #[test]
    fn a_token_proves_its_device_for_its_account_only() {
        let tokens = tokens(&"s".repeat(32));
        let (account, other_account) = (Uuid::new_v4(), Uuid::new_v4());
        let device = DeviceId::generate();
        let token = tokens.token(account, device);
        assert_eq!(tokens.verify(account, &token), Some(device));
        assert_eq!(tokens.verify(other_account, &token), None);

        // Another device id with this token's MAC, a flipped MAC byte, a
        // truncated token, garbage, another deployment's key: all nothing.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64url");
        bytes[0] ^= 1;
        assert_eq!(
            tokens.verify(account, &URL_SAFE_NO_PAD.encode(&bytes)),
            None
        );
        bytes[0] ^= 1;
        bytes[DEVICE_ID_BYTES] ^= 1;
        assert_eq!(
            tokens.verify(account, &URL_SAFE_NO_PAD.encode(&bytes)),
            None
        );
        assert_eq!(tokens.verify(account, &token[..token.len() - 2]), None);
        assert_eq!(tokens.verify(account, "not a token at all!"), None);
        assert_eq!(self::tokens(&"t".repeat(32)).verify(account, &token), None);
    }

    #[test]
    fn each_device_has_its_own_budget_and_the_key_is_never_printed() {
        let (one, other) = (DeviceId::generate(), DeviceId::generate());
        assert_ne!(one.budget_subject(), other.budget_subject());
        assert!(one.budget_subject().starts_with("device:"));
        let secret = "s".repeat(32);
        assert!(!format!("{:?}", tokens(&secret)).contains(&secret));
    }
}
