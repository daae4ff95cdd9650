//! The contract between Porter's web and worker processes: job payloads and the
//! queues they travel on.
//!
//! This crate is deliberately tiny (serde only) so that both sides agree on the
//! wire format without either depending on the other's database, mail or Redis
//! code. Payload field names are part of the contract: jobs already waiting in
//! Redis must still decode after a deploy, so fields are only ever added with a
//! default, never renamed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Queue name suffixes. The full Redis queue name is `{namespace}:{suffix}`, so
/// that two deployments (or two test runs) sharing one Redis never see each
/// other's jobs. Always set explicitly: apalis otherwise names a queue after the
/// Rust type path, which differs between crates.
pub mod queue {
    /// Account emails ([`super::SendAccountEmail`]) and the address requests
    /// that may lead to one ([`super::AddressRequest`]).
    pub const EMAIL: &str = "queue:email";
}

/// Every job on the email queue, as the worker reads it. The two payloads
/// have no field name in common but `request_id`, so each decodes as itself
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmailQueueJob {
    Email(SendAccountEmail),
    Address(AddressRequest),
}

/// Send the email that an event in an account's stream asks for.
///
/// The job carries identifiers only; the worker reloads the account from the
/// event log, so a job that waited in Redis never acts on stale data. The job id
/// is the id of the requesting event, which makes enqueueing idempotent: the web
/// process and the outbox relay can both push it and it runs once.
///
/// A job that has to wait (a transient failure, or too soon after the last
/// email to the address) is not kept in a worker slot: the worker pushes its
/// successor, scheduled for later, and finishes. The successor carries the
/// count of failed attempts, and its id is the request id with the number of
/// times the request was put back (`<request id>.2`), so a run that happens
/// twice pushes one successor, not two. Both counters are left out of the JSON
/// while zero, so a first push reads exactly as it did before they existed,
/// and a payload without them decodes as a first push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAccountEmail {
    /// The account whose stream holds the request.
    pub account_id: Uuid,
    /// The `event_id` of the `ActivationRequested` or
    /// `SignUpAttemptedForExistingEmail` event that asked for this email.
    pub request_id: Uuid,
    /// Attempts at this request that already failed transiently.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u32,
    /// How many times this request was put back on the queue, for a failure
    /// or to wait; part of the job id.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeues: u32,
}

impl SendAccountEmail {
    /// The first job of a request.
    pub fn new(account_id: Uuid, request_id: Uuid) -> Self {
        Self {
            account_id,
            request_id,
            failed_attempts: 0,
            requeues: 0,
        }
    }

    /// The job id used when enqueueing: the requesting event's id, followed
    /// by the requeue count once the job has been put back.
    pub fn job_id(&self) -> String {
        match self.requeues {
            0 => self.request_id.to_string(),
            n => format!("{}.{n}", self.request_id),
        }
    }

    /// The job that runs this request again later, after a failed attempt
    /// (`failed`) or after waiting without trying.
    pub fn requeued(&self, failed: bool) -> Self {
        Self {
            failed_attempts: self.failed_attempts + u32::from(failed),
            requeues: self.requeues + 1,
            ..self.clone()
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A request about an email address that the web process accepts without
/// looking the address up, so that its answer, and the work done before it,
/// is the same for every address: validate, rate-limit, push this job, answer
/// `202`. The worker looks the address up and records what the request means
/// for the account holding it (if any), which may ask for an email in turn.
///
/// The recorded request keeps `request_id`, so a job that runs twice records
/// it once; this job's own id is [`Self::job_id`], apart from the email job
/// that the recorded request is carried out by (whose id is `request_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRequest {
    pub request_id: Uuid,
    pub action: AddressAction,
    /// The address in its canonical form.
    pub email: String,
    /// The HTTP request that accepted it, for the metadata of what the
    /// worker records.
    #[serde(default)]
    pub http_request_id: Option<String>,
    /// The pseudonymous client hash of the event metadata.
    #[serde(default)]
    pub client_ip_hash: Option<String>,
    /// Attempts that failed for a transient reason before this one, so a
    /// request put back on the queue keeps its retry budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_attempts: u32,
}

/// What an [`AddressRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressAction {
    /// `POST /api/activate-account/resend`: a pending registration gets a
    /// new activation link, any other address nothing.
    Resend,
    /// `POST /api/password-reset`: an active account gets a reset link, a
    /// pending one its activation link, any other address nothing.
    PasswordReset,
}

impl AddressRequest {
    /// The id used when enqueueing: distinct from the email job's, and from
    /// the request's own earlier attempts.
    pub fn job_id(&self) -> String {
        match self.failed_attempts {
            0 => format!("address-request-{}", self.request_id),
            n => format!("address-request-{}.{n}", self.request_id),
        }
    }

    /// The job that tries this request again later, after a failed attempt.
    pub fn retried(&self) -> Self {
        Self {
            failed_attempts: self.failed_attempts + 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let job = SendAccountEmail::new(Uuid::nil(), Uuid::max());
        let json = serde_json::to_string(&job).expect("serialize");
        assert_eq!(
            json,
            r#"{"account_id":"00000000-0000-0000-0000-000000000000","request_id":"ffffffff-ffff-ffff-ffff-ffffffffffff"}"#
        );
        let back: SendAccountEmail = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, job);
        assert_eq!(job.job_id(), "ffffffff-ffff-ffff-ffff-ffffffffffff");
        let read: EmailQueueJob = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(read, EmailQueueJob::Email(job));
    }

    #[test]
    fn a_requeued_job_carries_its_attempts_under_its_own_id() {
        let first = SendAccountEmail::new(Uuid::nil(), Uuid::max());
        let retry = first.requeued(true);
        let waited = retry.requeued(false);
        assert_eq!((retry.failed_attempts, retry.requeues), (1, 1));
        assert_eq!((waited.failed_attempts, waited.requeues), (1, 2));
        assert_eq!(waited.job_id(), "ffffffff-ffff-ffff-ffff-ffffffffffff.2");
        let json = serde_json::to_string(&waited).expect("serialize");
        assert_eq!(
            json,
            r#"{"account_id":"00000000-0000-0000-0000-000000000000","request_id":"ffffffff-ffff-ffff-ffff-ffffffffffff","failed_attempts":1,"requeues":2}"#
        );
        let back: SendAccountEmail = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, waited);
        let read: EmailQueueJob = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(read, EmailQueueJob::Email(waited));
    }

    #[test]
    fn address_request_wire_format_is_stable() {
        let job = AddressRequest {
            request_id: Uuid::max(),
            action: AddressAction::PasswordReset,
            email: "ada@example.com".into(),
            http_request_id: Some("r1".into()),
            client_ip_hash: None,
            failed_attempts: 0,
        };
        let json = serde_json::to_string(&job).expect("serialize");
        assert_eq!(
            json,
            r#"{"request_id":"ffffffff-ffff-ffff-ffff-ffffffffffff","action":"password-reset","email":"ada@example.com","http_request_id":"r1","client_ip_hash":null}"#
        );
        let read: EmailQueueJob = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(read, EmailQueueJob::Address(job.clone()));
        let minimal = r#"{"request_id":"ffffffff-ffff-ffff-ffff-ffffffffffff","action":"password-reset","email":"ada@example.com"}"#;
        let read: AddressRequest = serde_json::from_str(minimal).expect("older payloads decode");
        assert_eq!(read.http_request_id, None);
        assert_eq!(
            job.job_id(),
            "address-request-ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        let retried = job.retried();
        assert_eq!(
            retried.job_id(),
            "address-request-ffffffff-ffff-ffff-ffff-ffffffffffff.1"
        );
        let json = serde_json::to_string(&retried).expect("serialize");
        assert!(json.ends_with(r#","failed_attempts":1}"#), "{json}");
        let resend = AddressRequest {
            action: AddressAction::Resend,
            ..job
        };
        let json = serde_json::to_string(&resend).expect("serialize");
        assert!(json.contains(r#""action":"resend""#), "{json}");
    }
}
