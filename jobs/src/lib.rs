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
    /// Activation and "already registered" emails.
    pub const EMAIL: &str = "queue:email";
}

/// Send the email that an event in an account's stream asks for.
///
/// The job carries identifiers only; the worker reloads the account from the
/// event log, so a job that waited in Redis never acts on stale data. The job id
/// is the id of the requesting event, which makes enqueueing idempotent: the web
/// process and the outbox relay can both push it and it runs once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAccountEmail {
    /// The account whose stream holds the request.
    pub account_id: Uuid,
    /// The `event_id` of the `ActivationRequested` or
    /// `SignUpAttemptedForExistingEmail` event that asked for this email.
    pub request_id: Uuid,
}

impl SendAccountEmail {
    /// The job id used when enqueueing: the requesting event's id.
    pub fn job_id(&self) -> String {
        self.request_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let job = SendAccountEmail {
            account_id: Uuid::nil(),
            request_id: Uuid::max(),
        };
        let json = serde_json::to_string(&job).expect("serialize");
        assert_eq!(
            json,
            r#"{"account_id":"00000000-0000-0000-0000-000000000000","request_id":"ffffffff-ffff-ffff-ffff-ffffffffffff"}"#
        );
        let back: SendAccountEmail = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, job);
    }
}
