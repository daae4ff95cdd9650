//! An account event's stored shape: its type name, schema version and JSON
//! payload, and the way back, through the upcasters that bring payloads
//! written by older versions of Porter up to the current one.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{AccountEvent, EmailSent, IssuedKey};

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

/// One step of an upcaster: how a payload of `event_type` stored at schema
/// version `from` becomes version `from + 1`.
struct Upcast {
    event_type: &'static str,
    from: i32,
    step: fn(Value) -> Result<Value, DecodeError>,
}

/// Every payload change that old readers could not handle, oldest first.
/// An event type's current schema version is one more than its number of
/// steps here, so a new version is one step in this list and nothing else.
const UPCASTS: &[Upcast] = &[Upcast {
    event_type: "ActivationEmailSent",
    from: 1,
    step: activation_email_sent_v1_to_v2,
}];

/// The current schema version of each event type: what [`AccountEvent::encode`]
/// writes and what [`AccountEvent::decode`] parses after upcasting. `None` for
/// a type this version of Porter does not know.
pub fn current_schema_version(event_type: &str) -> Option<i32> {
    AccountEvent::TYPES
        .contains(&event_type)
        .then(|| schema_version_of_known(event_type))
}

/// The current schema version of a type from [`AccountEvent::TYPES`].
pub(super) fn schema_version_of_known(event_type: &str) -> i32 {
    UPCASTS
        .iter()
        .filter(|upcast| upcast.event_type == event_type)
        .fold(1, |version, _| version + 1)
}

impl AccountEvent {
    /// The stored shape of this event. A payload that does not serialize is
    /// an error for the caller to report: writing JSON `null` into an
    /// append-only log would keep a broken event there for good.
    pub fn encode(&self) -> Result<EncodedEvent, EncodeError> {
        let payload = self.payload_json().map_err(|source| EncodeError {
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
        let Some(current) = current_schema_version(event_type) else {
            return Err(DecodeError::UnknownType {
                event_type: event_type.to_owned(),
            });
        };
        let payload = upcast(event_type, schema_version, payload)?;
        let decoded = Self::from_payload_json(event_type, payload).ok_or_else(|| {
            DecodeError::UnknownType {
                event_type: event_type.to_owned(),
            }
        })?;
        decoded.map_err(|source| DecodeError::MalformedPayload {
            event_type: event_type.to_owned(),
            schema_version: current,
            source,
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
        let upcast = UPCASTS
            .iter()
            .find(|upcast| upcast.event_type == event_type && upcast.from == version)
            .ok_or_else(unknown)?;
        payload = (upcast.step)(payload)?;
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
    let v2 = EmailSent {
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
            AccountEvent::EmailSent(EmailSent {
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
            AccountEvent::EmailSent(EmailSent { key: None, .. })
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
    fn upcasters_climb_one_version_at_a_time_from_version_one() {
        for upcast in UPCASTS {
            assert!(
                AccountEvent::TYPES.contains(&upcast.event_type),
                "{}",
                upcast.event_type
            );
        }
        for event_type in AccountEvent::TYPES {
            let mut froms: Vec<i32> = UPCASTS
                .iter()
                .filter(|upcast| upcast.event_type == *event_type)
                .map(|upcast| upcast.from)
                .collect();
            froms.sort_unstable();
            let current = current_schema_version(event_type).expect("a known type");
            assert_eq!(froms, (1..current).collect::<Vec<_>>(), "{event_type}");
        }
    }

    #[test]
    fn every_type_is_stored_under_one_name() {
        let mut names = AccountEvent::TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AccountEvent::TYPES.len());
        let written: Vec<&str> = samples().iter().map(AccountEvent::event_type).collect();
        for name in AccountEvent::TYPES {
            assert!(written.contains(name), "no sample of {name}");
        }
        assert_eq!(
            samples()[2].encode().expect("encodes").event_type,
            "ActivationEmailSent",
            "the stored name stays"
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
