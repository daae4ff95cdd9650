//! Credentials: the password an account signs in with, changed by its
//! owner, reset through an emailed link or rehashed with newer parameters,
//! and whether the account may sign in at all.
//!
//! A reset link works once, and only while it is the account's newest: a
//! newer request, a change or a reset makes older links useless. A rehash
//! keeps the password, so it moves nothing of that.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Account, AccountStatus, DomainError, RequestKind, requests::Delivery};
use crate::domain::events::{
    AccountEvent, PasswordChangeReason, PasswordChanged, PasswordHash, PasswordResetRequested,
};

/// Why an account with the right password may not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefused {
    /// The address was never confirmed (or the registration ended).
    NotActive,
    /// An operator blocked the account.
    Blocked,
}

impl Account {
    /// Whether the owner, having given the right password, may sign in. Every
    /// status but `Active` is refused.
    pub fn may_sign_in(&self) -> Result<(), SignInRefused> {
        match self.status {
            AccountStatus::Active => Ok(()),
            AccountStatus::Blocked => Err(SignInRefused::Blocked),
            AccountStatus::Pending
            | AccountStatus::Superseded
            | AccountStatus::Cancelled
            | AccountStatus::Expired => Err(SignInRefused::NotActive),
        }
    }

    /// Which password the account has: it moves with every change or reset
    /// of the password (the version of the last one, 0 before any) and not
    /// with a rehash, which keeps the password. A sign-in compares the
    /// generation it verified against the one after its session exists
    /// (`features::sign_in`), so no session outlives the password it was opened
    /// with.
    pub fn credential_generation(&self) -> i64 {
        self.password_set_at
    }

    /// Whether the key of `request_id` may still set a new password: it is
    /// the account's newest reset request, no change or reset came after
    /// it, and the account may sign in.
    pub fn reset_usable(&self, request_id: Uuid) -> bool {
        self.requests.get(&request_id).is_some_and(|request| {
            request.kind == RequestKind::PasswordReset
                && request.sequence == self.newest_reset_request
                && request.sequence > self.password_set_at
        }) && self.may_sign_in().is_ok()
    }

    /// What a password reset request records: a reset link for an active
    /// account, a fresh activation link for a pending one, nothing otherwise.
    /// A request already recorded (a job that ran twice) or one arriving while
    /// an earlier email of its kind is still on its way records nothing.
    pub(super) fn password_reset_request(&self, request_id: Uuid) -> Vec<AccountEvent> {
        if self.requests.contains_key(&request_id) {
            return vec![];
        }
        match self.status {
            AccountStatus::Active if self.outstanding_reset().is_none() => {
                vec![AccountEvent::PasswordResetRequested(
                    PasswordResetRequested { request_id },
                )]
            }
            AccountStatus::Active => vec![],
            _ => self.request_activation(request_id),
        }
    }

    /// A reset email that has not gone out yet and would still be sent.
    fn outstanding_reset(&self) -> Option<Uuid> {
        self.requests
            .iter()
            .filter(|(_, request)| request.kind == RequestKind::PasswordReset)
            .filter(|(_, request)| request.delivery == Delivery::Outstanding)
            .find(|(id, _)| self.reset_usable(**id))
            .map(|(id, _)| *id)
    }

    /// The signed-in owner changed the password (the current one was
    /// checked); the owner is told by email.
    pub(super) fn change_password(
        &self,
        password_hash: PasswordHash,
        notice_request_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        if self.may_sign_in().is_err() {
            return Err(DomainError::NotActive(self.status));
        }
        Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Change,
            password_hash,
            changed_at: at,
            reset_request_id: None,
            notice_request_id: Some(notice_request_id),
        })])
    }

    /// The owner set a new password with the key of `reset_request_id`.
    pub(super) fn reset_password(
        &self,
        reset_request_id: Uuid,
        password_hash: PasswordHash,
        notice_request_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        if !self.reset_usable(reset_request_id) {
            return Err(DomainError::ResetLinkUnusable);
        }
        Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Reset,
            password_hash,
            changed_at: at,
            reset_request_id: Some(reset_request_id),
            notice_request_id: Some(notice_request_id),
        })])
    }

    /// Replaces `replaces`, made with older Argon2 parameters, with a hash
    /// of the same password. If another writer changed the password since
    /// the sign-in read it, the upgrade is moot, and must not undo that
    /// change.
    pub(super) fn upgrade_password_hash(
        &self,
        replaces: &PasswordHash,
        password_hash: PasswordHash,
        at: DateTime<Utc>,
    ) -> Vec<AccountEvent> {
        if *replaces != self.password_hash {
            return vec![];
        }
        vec![AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Rehash,
            password_hash,
            changed_at: at,
            reset_request_id: None,
            notice_request_id: None,
        })]
    }
}
