//! Snapshots of an account's state, so that loading an account reads a
//! bounded number of events however long its stream has grown.
//!
//! A long stream costs every load that folds it from the start: the
//! owner's sign-in, each email job, each admin lookup. Its cost also shows:
//! a sign-in for an account with hundreds of events took measurably longer
//! than one for an unknown login. A snapshot is the state at one version;
//! a load starts from it and folds only the events after it.
//!
//! A snapshot is a cache, never a source of truth: the log decides. Its
//! `schema` names the shape of [`Account`] it was written in and what
//! [`super::account::apply`] derived from the events then; a snapshot of
//! another schema is ignored, and the stream is read from the start.

use serde_json::Value;

use super::Account;

/// The shape of a stored snapshot. Bump it with any change to the fields
/// of [`Account`] (and what they hold) or to what `apply` derives from an
/// event: older snapshots are then ignored and replaced, never misread.
/// `snapshots_keep_their_shape` below pins the serialized form.
pub const SNAPSHOT_SCHEMA: i32 = 2;

/// A load that had to fold this many events or more saves the state it
/// built, so the next load folds fewer than this many (unless more were
/// appended meanwhile without a load through the pool).
pub const SNAPSHOT_EVERY: i64 = 32;

impl Account {
    /// The state as it is stored in a snapshot.
    pub fn to_snapshot(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// The state stored in a snapshot of [`SNAPSHOT_SCHEMA`].
    pub fn from_snapshot(state: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(state)
    }
}

/// How a snapshot stores the account's typed values: a username and an
/// address with both their forms, as recorded, read back with
/// `from_record` (never parsed again: see [`super::Username::from_record`]).
pub(super) mod username {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::domain::Username;

    #[derive(Serialize, Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        display: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        canonical: std::borrow::Cow<'a, str>,
    }

    pub fn serialize<S: Serializer>(name: &Username, serializer: S) -> Result<S::Ok, S::Error> {
        Stored {
            display: name.as_str().into(),
            canonical: name.canonical().into(),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Username, D::Error> {
        let stored = Stored::deserialize(deserializer)?;
        Ok(Username::from_record(&stored.display, &stored.canonical))
    }
}

/// See [`username`].
pub(super) mod email {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::domain::EmailAddress;

    #[derive(Serialize, Deserialize)]
    struct Stored<'a> {
        #[serde(borrow)]
        as_typed: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        canonical: std::borrow::Cow<'a, str>,
    }

    pub fn serialize<S: Serializer>(
        address: &EmailAddress,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        Stored {
            as_typed: address.as_typed().into(),
            canonical: address.canonical().into(),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<EmailAddress, D::Error> {
        let stored = Stored::deserialize(deserializer)?;
        Ok(EmailAddress::from_record(
            &stored.as_typed,
            &stored.canonical,
        ))
    }
}

/// A locale as its tag, read back with [`Locale::from_record`](crate::domain::Locale::from_record).
pub(super) mod locale {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::Locale;

    pub fn serialize<S: Serializer>(locale: &Locale, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(locale.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Locale, D::Error> {
        let tag = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(Locale::from_record(&tag))
    }
}

/// Whether a load that folded `events_read` events should save a snapshot.
pub fn snapshot_due(events_read: usize) -> bool {
    i64::try_from(events_read).unwrap_or(i64::MAX) >= SNAPSHOT_EVERY
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{
        AccountEvent, PasswordHash,
        account::replay,
        events::{
            AccountActivated, AccountRegistered, ActivationReason, ActivationRequested, EmailSent,
            SignUpAttemptedForExistingEmail,
        },
    };

    fn account() -> Account {
        let id = Uuid::from_u128(7);
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp");
        let events = [
            AccountEvent::AccountRegistered(AccountRegistered {
                account_id: id,
                username: "Ada".into(),
                username_canonical: "ada".into(),
                email: "Ada@Example.com".into(),
                email_canonical: "ada@example.com".into(),
                password_hash: PasswordHash("$argon2id$hash".into()),
                locale: "en".into(),
                registered_at: Some(at),
                supersedes: None,
                address_owner: None,
            }),
            AccountEvent::ActivationRequested(ActivationRequested {
                request_id: Uuid::from_u128(8),
                reason: ActivationReason::SignUp,
            }),
            AccountEvent::EmailSent(EmailSent {
                request_id: Uuid::from_u128(8),
                sent_at: at,
                key: None,
            }),
            AccountEvent::AccountActivated(AccountActivated {
                request_id: Uuid::from_u128(8),
                activated_at: at,
            }),
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id: Uuid::from_u128(9),
                attempted_at: Some(at),
            }),
        ];
        replay(&events).expect("an account")
    }

    #[test]
    fn a_snapshot_restores_the_state_it_was_taken_of() {
        let account = account();
        let restored = Account::from_snapshot(account.to_snapshot().expect("serializes"));
        assert_eq!(restored.expect("deserializes"), account);
    }

    /// Fails when the stored shape changes: then bump [`SNAPSHOT_SCHEMA`]
    /// and update the expected value, so older snapshots are ignored.
    #[test]
    fn snapshots_keep_their_shape() {
        let expected = serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000007",
            "username": { "display": "Ada", "canonical": "ada" },
            "email": { "as_typed": "Ada@Example.com", "canonical": "ada@example.com" },
            "password_hash": "$argon2id$hash",
            "locale": "en",
            "registered_at": "2027-01-15T08:00:00Z",
            "supersedes": null,
            "address_owner": null,
            "status": "Active",
            "version": 5,
            "last_email_at": "2027-01-15T08:00:00Z",
            "last_sign_up_notice_at": "2027-01-15T08:00:00Z",
            "requests": {
                "00000000-0000-0000-0000-000000000008":
                    { "kind": "Activation", "sequence": 2, "delivery": "Emailed" },
                "00000000-0000-0000-0000-000000000009":
                    { "kind": "ExistingEmailNotice", "sequence": 5, "delivery": "Outstanding" },
            },
            "newest_key_request": 2,
            "newest_reset_request": 0,
            "password_set_at": 0,
        });
        assert_eq!(
            (
                SNAPSHOT_SCHEMA,
                account().to_snapshot().expect("serializes")
            ),
            (2, expected)
        );
    }

    #[test]
    fn a_load_that_folded_many_events_saves_a_snapshot() {
        assert!(!snapshot_due(0));
        assert!(!snapshot_due(31));
        assert!(snapshot_due(32));
    }
}
