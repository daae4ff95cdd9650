//! An account event's stored shape: its type name, schema version and JSON
//! payload, and the way back, through the upcasters that bring payloads
//! written by older versions of Porter up to the current one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

use super::{AccountEvent, ActivationEmailSent, IssuedKey};

/// An event in its stored shape.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: i32,
    pub payload: Value,
}

/// An event that could not be put in its stored shape.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {event_type}: {source}")]
pub struct EncodeError {
    pub event_type: &'static str,
    pub source: serde_json::Error,
}

/// A stored event Porter cannot read. Readers stop on it rather than skip it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?}")]
    UnknownType { event_type: String },
    #[error("unsupported schema version {schema_version} of {event_type}")]
    UnknownVersion {
        event_type: String,
        schema_version: i32,
    },
    #[error("malformed payload of {event_type} v{schema_version}: {source}")]
    MalformedPayload {
        event_type: String,
        schema_version: i32,
        source: serde_json::Error,
    },
}

/// The current schema version of each event type: what [`AccountEvent::encode`]
/// writes and what [`AccountEvent::decode`] parses after upcasting. `None` for
/// a type this version of Porter does not know.
pub fn current_schema_version(event_type: &str) -> Option<i32> {
    match event_type {
        "ActivationEmailSent" => Some(2),
        "AccountRegistered"
        | "ActivationRequested"
        | "ActivationEmailFailed"
        | "AccountActivated"
        | "SignUpAttemptedForExistingEmail"
        | "EmailRetryRequested"
        | "RegistrationSuperseded"
        | "RegistrationCancelled"
        | "RegistrationExpired"
        | "EmailWithheld"
        | "AccountActivatedManually"
        | "AccountBlocked"
        | "AccountUnblocked" => Some(1),
        "PasswordResetRequested" | "PasswordChanged" => Some(1),
        _ => None,
    }
}

impl AccountEvent {
    /// The stored shape of this event. A payload that does not serialize is
    /// an error for the caller to report: writing JSON `null` into an
    /// append-only log would keep a broken event there for good.
    pub fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        let payload = match self {
            Self::AccountRegistered(e) => serde_json::to_value(e),
            Self::ActivationRequested(e) => serde_json::to_value(e),
            Self::ActivationEmailSent(e) => serde_json::to_value(e),
            Self::ActivationEmailFailed(e) => serde_json::to_value(e),
            Self::AccountActivated(e) => serde_json::to_value(e),
            Self::SignUpAttemptedForExistingEmail(e) => serde_json::to_value(e),
            Self::EmailRetryRequested(e) => serde_json::to_value(e),
            Self::RegistrationSuperseded(e) => serde_json::to_value(e),
            Self::RegistrationCancelled(e) => serde_json::to_value(e),
            Self::RegistrationExpired(e) => serde_json::to_value(e),
            Self::EmailWithheld(e) => serde_json::to_value(e),
            Self::AccountActivatedManually(e) => serde_json::to_value(e),
            Self::AccountBlocked(e) => serde_json::to_value(e),
            Self::AccountUnblocked(e) => serde_json::to_value(e),
            Self::PasswordResetRequested(e) => serde_json::to_value(e),
            Self::PasswordChanged(e) => serde_json::to_value(e),
        }
        .map_err(|source| EncodeError {
            event_type: self.event_type(),
            source,
        })?;
        Ok(EncodedEvent {
            event_type: self.event_type(),
            schema_version: self.schema_version(),
            payload,
        })
    }

    pub fn decode(
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<Self, DecodeError> {
        fn parse<T: DeserializeOwned>(
            event_type: &str,
            schema_version: i32,
            payload: Value,
        ) -> Result<T, DecodeError> {
            serde_json::from_value(payload).map_err(|source| DecodeError::MalformedPayload {
                event_type: event_type.to_owned(),
                schema_version,
                source,
            })
        }
        let Some(v) = current_schema_version(event_type) else {
            return Err(DecodeError::UnknownType {
                event_type: event_type.to_owned(),
            });
        };
        let payload = upcast(event_type, schema_version, payload)?;
        Ok(match event_type {
            "AccountRegistered" => Self::AccountRegistered(parse(event_type, v, payload)?),
            "ActivationRequested" => Self::ActivationRequested(parse(event_type, v, payload)?),
            "ActivationEmailSent" => Self::ActivationEmailSent(parse(event_type, v, payload)?),
            "ActivationEmailFailed" => Self::ActivationEmailFailed(parse(event_type, v, payload)?),
            "AccountActivated" => Self::AccountActivated(parse(event_type, v, payload)?),
            "SignUpAttemptedForExistingEmail" => {
                Self::SignUpAttemptedForExistingEmail(parse(event_type, v, payload)?)
            }
            "EmailRetryRequested" => Self::EmailRetryRequested(parse(event_type, v, payload)?),
            "RegistrationSuperseded" => {
                Self::RegistrationSuperseded(parse(event_type, v, payload)?)
            }
            "RegistrationCancelled" => Self::RegistrationCancelled(parse(event_type, v, payload)?),
            "RegistrationExpired" => Self::RegistrationExpired(parse(event_type, v, payload)?),
            "EmailWithheld" => Self::EmailWithheld(parse(event_type, v, payload)?),
            "AccountActivatedManually" => {
                Self::AccountActivatedManually(parse(event_type, v, payload)?)
            }
            "AccountBlocked" => Self::AccountBlocked(parse(event_type, v, payload)?),
            "AccountUnblocked" => Self::AccountUnblocked(parse(event_type, v, payload)?),
            "PasswordResetRequested" => {
                Self::PasswordResetRequested(parse(event_type, v, payload)?)
            }
            "PasswordChanged" => Self::PasswordChanged(parse(event_type, v, payload)?),
            other => {
                return Err(DecodeError::UnknownType {
                    event_type: other.to_owned(),
                });
            }
        })
    }
}

/// Brings a stored payload up to its type's current schema version, one
/// version at a time, so each change is written once as a `(type, version)`
/// step and old events pass through every later step. A version newer than
/// this Porter knows is an error, never a guess.
fn upcast(event_type: &str, schema_version: i32, payload: Value) -> Result<Value, DecodeError> {
    let unknown = || DecodeError::UnknownVersion {
        event_type: event_type.to_owned(),
        schema_version,
    };
    let current = current_schema_version(event_type).ok_or_else(unknown)?;
    if !(1..=current).contains(&schema_version) {
        return Err(unknown());
    }
    let mut payload = payload;
    for version in schema_version..current {
        payload = match (event_type, version) {
            ("ActivationEmailSent", 1) => activation_email_sent_v1_to_v2(payload)?,
            _ => return Err(unknown()),
        };
    }
    Ok(payload)
}

/// `ActivationEmailSent` v1 → v2: the flat optional fingerprint and expiry
/// become one optional `key`. The worker only ever wrote both or neither; a
/// v1 payload with just one of them is reported as malformed rather than
/// half-read.
fn activation_email_sent_v1_to_v2(payload: Value) -> Result<Value, DecodeError> {
    #[derive(Deserialize)]
    struct V1 {
        request_id: Uuid,
        key_fingerprint: Option<String>,
        sent_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    }
    let malformed = |source| DecodeError::MalformedPayload {
        event_type: "ActivationEmailSent".into(),
        schema_version: 1,
        source,
    };
    let v1: V1 = serde_json::from_value(payload).map_err(malformed)?;
    let key = match (v1.key_fingerprint, v1.expires_at) {
        (Some(fingerprint), Some(expires_at)) => Some(IssuedKey {
            fingerprint,
            expires_at,
        }),
        (None, None) => None,
        _ => {
            return Err(malformed(serde::de::Error::custom(
                "key_fingerprint and expires_at must be both set or both null",
            )));
        }
    };
    let v2 = ActivationEmailSent {
        request_id: v1.request_id,
        sent_at: v1.sent_at,
        key,
    };
    serde_json::to_value(v2).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::super::tests::samples;
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_stored_shape() {
        for event in samples() {
            let stored = event.encode().expect("encodes");
            let decoded =
                AccountEvent::decode(stored.event_type, stored.schema_version, stored.payload)
                    .expect("decodes");
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn unknown_types_and_versions_are_errors_not_skips() {
        let unknown =
            AccountEvent::decode("AccountDeleted", 1, Value::Null).expect_err("unknown type");
        assert!(unknown.to_string().contains("AccountDeleted"));
        let future =
            AccountEvent::decode("AccountActivated", 9, Value::Null).expect_err("future version");
        assert!(future.to_string().contains("schema version 9"));
        let malformed = AccountEvent::decode("AccountActivated", 1, serde_json::json!({"x": 1}))
            .expect_err("malformed");
        assert!(matches!(malformed, DecodeError::MalformedPayload { .. }));
    }

    #[test]
    fn activation_email_sent_v1_is_upcast_to_the_nested_key_of_v2() {
        let with_key = serde_json::json!({
            "request_id": "00000000-0000-0000-0000-000000000007",
            "key_fingerprint": "0123456789abcdef",
            "sent_at": "2027-01-15T08:00:00Z",
            "expires_at": "2027-01-15T08:15:00Z",
        });
        let decoded = AccountEvent::decode("ActivationEmailSent", 1, with_key).expect("v1 decodes");
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("timestamp");
        assert_eq!(
            decoded,
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: Uuid::from_u128(7),
                sent_at: at("2027-01-15T08:00:00Z"),
                key: Some(IssuedKey {
                    fingerprint: "0123456789abcdef".into(),
                    expires_at: at("2027-01-15T08:15:00Z"),
                }),
            })
        );

        let notice = serde_json::json!({
            "request_id": "00000000-0000-0000-0000-000000000007",
            "key_fingerprint": null,
            "sent_at": "2027-01-15T08:00:00Z",
            "expires_at": null,
        });
        let decoded = AccountEvent::decode("ActivationEmailSent", 1, notice).expect("v1 decodes");
        assert!(matches!(
            decoded,
            AccountEvent::ActivationEmailSent(ActivationEmailSent { key: None, .. })
        ));

        let half = serde_json::json!({
            "request_id": "00000000-0000-0000-0000-000000000007",
            "key_fingerprint": "0123456789abcdef",
            "sent_at": "2027-01-15T08:00:00Z",
            "expires_at": null,
        });
        let error = AccountEvent::decode("ActivationEmailSent", 1, half).expect_err("half a key");
        assert!(
            error.to_string().contains("ActivationEmailSent v1"),
            "{error}"
        );
    }

    #[test]
    fn new_events_are_written_at_their_current_version() {
        for event in samples() {
            let stored = event.encode().expect("encodes");
            assert_eq!(
                Some(stored.schema_version),
                current_schema_version(stored.event_type)
            );
        }
        let sent = samples().remove(2).encode().expect("encodes");
        assert_eq!(sent.schema_version, 2);
        assert!(sent.payload.get("key_fingerprint").is_none());
        assert!(
            AccountEvent::decode("ActivationEmailSent", 0, sent.payload.clone()).is_err(),
            "no version 0"
        );
        assert!(AccountEvent::decode("ActivationEmailSent", 3, sent.payload).is_err());
    }

    #[test]
    fn registrations_stored_before_expiry_and_supersession_still_decode() {
        let v1 = serde_json::json!({
            "account_id": "00000000-0000-0000-0000-000000000007",
            "username": "Ada",
            "username_canonical": "ada",
            "email": "ada@example.com",
            "email_canonical": "ada@example.com",
            "password_hash": "$argon2id$hash",
            "locale": "en",
        });
        let AccountEvent::AccountRegistered(registered) =
            AccountEvent::decode("AccountRegistered", 1, v1).expect("old payload decodes")
        else {
            panic!("a registration");
        };
        assert_eq!(registered.registered_at, None);
        assert_eq!(registered.supersedes, None);
        assert_eq!(registered.address_owner, None);
    }

    #[test]
    fn sign_up_attempts_stored_before_they_were_merged_by_time_still_decode() {
        let v1 = serde_json::json!({ "request_id": "00000000-0000-0000-0000-000000000007" });
        let AccountEvent::SignUpAttemptedForExistingEmail(attempt) =
            AccountEvent::decode("SignUpAttemptedForExistingEmail", 1, v1)
                .expect("old payload decodes")
        else {
            panic!("a sign-up attempt");
        };
        assert_eq!(attempt.attempted_at, None);
    }
}
