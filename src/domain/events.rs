//! The account stream's events: the facts Porter records, in the past tense.
//!
//! Names and payload fields are a stored format: events written years ago must
//! still decode. A payload change that old readers could not handle gets a new
//! `schema_version` and an upcaster in [`AccountEvent::decode`], never an edit
//! of what is already stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

/// A PHC-format password hash. Its `Debug` is redacted so a hash never reaches
/// a log line through a derived `Debug` of the event that carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegistered {
    pub account_id: Uuid,
    pub username: String,
    pub username_canonical: String,
    pub email: String,
    pub email_canonical: String,
    pub password_hash: PasswordHash,
    pub locale: String,
    /// When the registration was made. Absent in registrations recorded
    /// before registrations could expire; the log's `recorded_at` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
    /// The pending registration of the same address that this one replaced.
    /// A registration that superseded another is *contested*: confirming it
    /// needs its password as well as the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Uuid>,
    /// The active account that already owns the address. Such a registration
    /// holds only its username (so that answers never tell whether an address
    /// has an account), gets no link, and expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_owner: Option<Uuid>,
}

/// A later sign-up for the same address replaced this pending registration:
/// its links stop working and its claims went to the later one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationSuperseded {
    /// The registration that took over the address.
    pub by: Uuid,
    pub at: DateTime<Utc>,
}

/// The address's owner said "This wasn't me" on the confirmation page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationCancelled {
    /// The request whose link was used to cancel.
    pub request_id: Uuid,
    pub at: DateTime<Utc>,
}

/// The registration stayed unconfirmed for `REGISTRATION_TTL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationExpired {
    pub at: DateTime<Utc>,
}

/// An email request was recorded but not sent, because the address had
/// already been sent as many emails as `EMAIL_PER_ADDRESS` allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailWithheld {
    pub request_id: Uuid,
    pub reason: String,
}

/// An operator verified the account by hand (admin API or `porter
/// accounts activate`); the actor is in the event's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountActivatedManually {
    pub activated_at: DateTime<Utc>,
}

/// An operator blocked the account: it cannot sign in, and its sessions and
/// outstanding keys were revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBlocked {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUnblocked {
    pub at: DateTime<Utc>,
}

/// Why an activation email was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationReason {
    SignUp,
    Resend,
    /// A sign-up attempt with the address of a still-pending account.
    RepeatedSignUp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequested {
    pub request_id: Uuid,
    pub reason: ActivationReason,
}

/// An activation email went out.
///
/// Schema version 2. Version 1 (stored until the first operator release) kept
/// `key_fingerprint: Option<String>` and `expires_at: Option<DateTime>` side by
/// side, which could say "a key without an expiry" or "an expiry without a
/// key"; version 2 nests both in one optional [`IssuedKey`]. Stored v1
/// payloads stay as they are and are brought up to v2 when read (see
/// `upcast`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationEmailSent {
    pub request_id: Uuid,
    pub sent_at: DateTime<Utc>,
    /// The key the email carried; `None` for a notice to an active account,
    /// which carries no link.
    pub key: Option<IssuedKey>,
}

/// What the log keeps about a key that went out in an email: never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    /// The first 16 hex digits of SHA-256(key): enough to correlate with Redis
    /// and logs, useless for guessing the key.
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationEmailFailed {
    pub request_id: Uuid,
    pub reason: String,
    pub permanent: bool,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountActivated {
    /// The request whose key was confirmed.
    pub request_id: Uuid,
    pub activated_at: DateTime<Utc>,
}

/// Someone signed up with the address of this (active or blocked) account;
/// its owner is emailed a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUpAttemptedForExistingEmail {
    pub request_id: Uuid,
    /// When the sign-up came: attempts within `SIGN_UP_NOTICE_INTERVAL` of
    /// it record nothing more. Absent in attempts recorded before attempts
    /// were merged by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_at: Option<DateTime<Utc>>,
}

/// An operator asked to send again an email whose delivery failed for good
/// (`porter deliveries retry`). It is a new request of the same kind as the
/// failed one, so the email job handles it like any other request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRetryRequested {
    /// The new request; its id is the event id and so the new job's id.
    pub request_id: Uuid,
    /// The failed request this one sends again.
    pub retry_of: Uuid,
}

/// Someone asked for a password reset of this (active) account; its email
/// carries a reset key. Appended by the worker that looked the address up,
/// never by the web request, so the answer to the request is the same for
/// every address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    /// The request id the web process gave the request; the email job's id.
    pub request_id: Uuid,
}

/// Why a password hash was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordChangeReason {
    /// The owner changed it, signed in and knowing the current one.
    Change,
    /// The owner set it with an emailed reset key.
    Reset,
    /// The same password, hashed again with the current Argon2 parameters
    /// on a successful sign-in.
    Rehash,
}

/// The account's password hash was replaced. A change or a reset revokes
/// every session and emails the owner; a rehash does neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub reason: PasswordChangeReason,
    pub password_hash: PasswordHash,
    pub changed_at: DateTime<Utc>,
    /// For a reset: the `PasswordResetRequested` whose key was used.
    pub reset_request_id: Option<Uuid>,
    /// The "your password was changed" email; `None` for a rehash.
    pub notice_request_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    AccountRegistered(AccountRegistered),
    ActivationRequested(ActivationRequested),
    ActivationEmailSent(ActivationEmailSent),
    ActivationEmailFailed(ActivationEmailFailed),
    AccountActivated(AccountActivated),
    SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail),
    EmailRetryRequested(EmailRetryRequested),
    RegistrationSuperseded(RegistrationSuperseded),
    RegistrationCancelled(RegistrationCancelled),
    RegistrationExpired(RegistrationExpired),
    EmailWithheld(EmailWithheld),
    AccountActivatedManually(AccountActivatedManually),
    AccountBlocked(AccountBlocked),
    AccountUnblocked(AccountUnblocked),
    PasswordResetRequested(PasswordResetRequested),
    PasswordChanged(PasswordChanged),
}

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
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AccountRegistered(_) => "AccountRegistered",
            Self::ActivationRequested(_) => "ActivationRequested",
            Self::ActivationEmailSent(_) => "ActivationEmailSent",
            Self::ActivationEmailFailed(_) => "ActivationEmailFailed",
            Self::AccountActivated(_) => "AccountActivated",
            Self::SignUpAttemptedForExistingEmail(_) => "SignUpAttemptedForExistingEmail",
            Self::EmailRetryRequested(_) => "EmailRetryRequested",
            Self::RegistrationSuperseded(_) => "RegistrationSuperseded",
            Self::RegistrationCancelled(_) => "RegistrationCancelled",
            Self::RegistrationExpired(_) => "RegistrationExpired",
            Self::EmailWithheld(_) => "EmailWithheld",
            Self::AccountActivatedManually(_) => "AccountActivatedManually",
            Self::AccountBlocked(_) => "AccountBlocked",
            Self::AccountUnblocked(_) => "AccountUnblocked",
            Self::PasswordResetRequested(_) => "PasswordResetRequested",
            Self::PasswordChanged(_) => "PasswordChanged",
        }
    }

    /// Whether this event ends a registration that never became an account.
    /// Its username and email claims are released in the transaction that
    /// appends it, and only there.
    pub fn ends_registration(&self) -> bool {
        matches!(
            self,
            Self::RegistrationSuperseded(_)
                | Self::RegistrationCancelled(_)
                | Self::RegistrationExpired(_)
        )
    }

    /// The schema version [`Self::encode`] writes for this event.
    pub fn schema_version(&self) -> i32 {
        current_schema_version(self.event_type()).unwrap_or(1)
    }

    /// Events that ask for an email carry their request id, which becomes
    /// the event id and so the job id: one request, one job.
    pub fn request_id(&self) -> Option<Uuid> {
        match self {
            Self::ActivationRequested(e) => Some(e.request_id),
            Self::SignUpAttemptedForExistingEmail(e) => Some(e.request_id),
            Self::EmailRetryRequested(e) => Some(e.request_id),
            Self::PasswordResetRequested(e) => Some(e.request_id),
            Self::PasswordChanged(e) => e.notice_request_id,
            _ => None,
        }
    }

    /// The payload in its current shape with every secret removed (password
    /// hashes): what the admin API shows of an event.
    pub fn public_payload(&self) -> Result<Value, EncodeError> {
        let mut payload = self.encode()?.payload;
        if let Value::Object(fields) = &mut payload {
            fields.retain(|name, _| !name.contains("password"));
        }
        Ok(payload)
    }

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
    use super::*;

    fn samples() -> Vec<AccountEvent> {
        let id = Uuid::from_u128(7);
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp");
        vec![
            AccountEvent::AccountRegistered(AccountRegistered {
                account_id: id,
                username: "Ada".into(),
                username_canonical: "ada".into(),
                email: "Ada@Example.com".into(),
                email_canonical: "ada@example.com".into(),
                password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                locale: "en".into(),
                registered_at: Some(at),
                supersedes: Some(Uuid::from_u128(6)),
                address_owner: None,
            }),
            AccountEvent::ActivationRequested(ActivationRequested {
                request_id: id,
                reason: ActivationReason::SignUp,
            }),
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: id,
                sent_at: at,
                key: Some(IssuedKey {
                    fingerprint: "0123456789abcdef".into(),
                    expires_at: at,
                }),
            }),
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: id,
                sent_at: at,
                key: None,
            }),
            AccountEvent::ActivationEmailFailed(ActivationEmailFailed {
                request_id: id,
                reason: "550 mailbox unavailable".into(),
                permanent: true,
                attempts: 1,
            }),
            AccountEvent::AccountActivated(AccountActivated {
                request_id: id,
                activated_at: at,
            }),
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id: id,
                attempted_at: Some(at),
            }),
            AccountEvent::EmailRetryRequested(EmailRetryRequested {
                request_id: Uuid::from_u128(8),
                retry_of: id,
            }),
            AccountEvent::RegistrationSuperseded(RegistrationSuperseded {
                by: Uuid::from_u128(9),
                at,
            }),
            AccountEvent::RegistrationCancelled(RegistrationCancelled { request_id: id, at }),
            AccountEvent::RegistrationExpired(RegistrationExpired { at }),
            AccountEvent::EmailWithheld(EmailWithheld {
                request_id: id,
                reason: "address budget spent".into(),
            }),
            AccountEvent::AccountActivatedManually(AccountActivatedManually { activated_at: at }),
            AccountEvent::AccountBlocked(AccountBlocked {
                reason: "chargeback".into(),
                at,
            }),
            AccountEvent::AccountUnblocked(AccountUnblocked { at }),
            AccountEvent::PasswordResetRequested(PasswordResetRequested {
                request_id: Uuid::from_u128(9),
            }),
            AccountEvent::PasswordChanged(PasswordChanged {
                reason: PasswordChangeReason::Reset,
                password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$bmV3".into()),
                changed_at: at,
                reset_request_id: Some(Uuid::from_u128(9)),
                notice_request_id: Some(Uuid::from_u128(10)),
            }),
        ]
    }

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

    #[test]
    fn password_hashes_never_show_in_debug_output() {
        let samples = samples();
        for event in [&samples[0], &samples[samples.len() - 1]] {
            let debug = format!("{event:?}");
            assert!(!debug.contains("argon2id"), "{debug}");
        }
    }

    #[test]
    fn only_a_change_or_reset_asks_for_an_email() {
        let changed = |reason, notice| {
            AccountEvent::PasswordChanged(PasswordChanged {
                reason,
                password_hash: PasswordHash("$argon2id$x".into()),
                changed_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp"),
                reset_request_id: None,
                notice_request_id: notice,
            })
        };
        let notice = Uuid::from_u128(3);
        assert_eq!(
            changed(PasswordChangeReason::Change, Some(notice)).request_id(),
            Some(notice)
        );
        assert_eq!(
            changed(PasswordChangeReason::Rehash, None).request_id(),
            None
        );
        let stored = changed(PasswordChangeReason::Rehash, None)
            .encode()
            .expect("encodes");
        assert_eq!(stored.payload["reason"], "rehash");
    }

    #[test]
    fn public_payloads_carry_no_password_hash() {
        for event in samples() {
            let public = event.public_payload().expect("encodes").to_string();
            assert!(!public.contains("password"), "{public}");
            assert!(!public.contains("argon2id"), "{public}");
        }
        let registered = samples()[0].public_payload().expect("encodes");
        assert_eq!(registered["username"], "Ada");
    }
}
