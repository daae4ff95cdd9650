//! The fields each account event records: one struct per event type, and
//! the small types they share.
//!
//! These are the payloads as stored: a field added later is optional
//! (`#[serde(default)]`) so payloads stored before it still decode; any
//! other change is a new schema version (see `codec`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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

/// The email of a request went out, whatever its kind (activation link,
/// notice, reset link, "your password was changed"); the request says
/// which. Stored as `ActivationEmailSent` (see [`super::AccountEvent`]).
///
/// Schema version 2. Version 1 (stored until the first operator release) kept
/// `key_fingerprint: Option<String>` and `expires_at: Option<DateTime>` side by
/// side, which could say "a key without an expiry" or "an expiry without a
/// key"; version 2 nests both in one optional [`IssuedKey`]. Stored v1
/// payloads stay as they are and are brought up to v2 when read (see
/// `upcast`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailSent {
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

/// The email of a request could not be delivered, for now or for good.
/// Stored as `ActivationEmailFailed` (see [`super::AccountEvent`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailFailed {
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
