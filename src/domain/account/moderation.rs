//! Moderation: what an operator does to an account beyond what its owner
//! can: verify a registration without its link, block an active account
//! and unblock it.

use chrono::{DateTime, Utc};

use super::{Account, AccountStatus, DomainError};
use crate::domain::events::{
    AccountActivatedManually, AccountBlocked, AccountEvent, AccountUnblocked,
};

impl Account {
    /// Verifies a pending registration without its link. It must still be
    /// one that its link could confirm: not ended, its address its own.
    pub(super) fn activate_manually(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Active | AccountStatus::Blocked => Err(DomainError::AlreadyActive),
            status if status.is_ended() => Err(DomainError::RegistrationEnded(status)),
            _ if self.address_owner.is_some() => Err(DomainError::AddressOwnedElsewhere),
            _ => Ok(vec![AccountEvent::AccountActivatedManually(
                AccountActivatedManually { activated_at: at },
            )]),
        }
    }

    /// Only an active account is blocked; it cannot sign in until unblocked.
    pub(super) fn block(
        &self,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Active => Ok(vec![AccountEvent::AccountBlocked(AccountBlocked {
                reason,
                at,
            })]),
            AccountStatus::Blocked => Err(DomainError::AlreadyBlocked),
            status => Err(DomainError::NotActive(status)),
        }
    }

    pub(super) fn unblock(&self, at: DateTime<Utc>) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Blocked => Ok(vec![AccountEvent::AccountUnblocked(AccountUnblocked {
                at,
            })]),
            _ => Err(DomainError::NotBlocked),
        }
    }
}
