//! Registration: a sign-up becomes a registration of its own, which is
//! activated through its link (with its password too when contested) or
//! ends: superseded by a later sign-up for its address, cancelled ("This
//! wasn't me") or expired.
//!
//! The address policy (what a sign-up does to the address's current
//! holders) is here too, so the command side only reads the holders and
//! records what it is told.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Account, AccountStatus, DomainError};
use crate::domain::{
    EmailAddress, Username,
    events::{
        AccountActivated, AccountEvent, AccountRegistered, ActivationReason, ActivationRequested,
        PasswordHash, RegistrationCancelled, RegistrationExpired, RegistrationSuperseded,
    },
};

/// A new registration, as parsed at the edge.
#[derive(Debug, Clone)]
pub struct Registration {
    pub account_id: Uuid,
    pub request_id: Uuid,
    pub username: Username,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    pub locale: String,
    pub registered_at: DateTime<Utc>,
    pub address: AddressClaim,
}

/// Where a new registration stands with its email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClaim {
    /// Nobody holds the address: the registration claims it.
    Free,
    /// A pending registration holds it: the new one supersedes it and takes
    /// the claim over.
    TakesOver(Uuid),
    /// An active (or blocked) account owns it: the new registration gets no
    /// link, and the owner is told of the attempt. It supersedes the
    /// previous sign-up held against the owner's address, if any, so a
    /// later sign-up frees an earlier one's username whatever the address.
    OwnedBy {
        owner: Uuid,
        supersedes: Option<Uuid>,
    },
}

impl AddressClaim {
    /// What a sign-up does with an address that `holder` holds (or nobody),
    /// `previous_attempt` being the live sign-up held against an owner's
    /// address (only consulted when the address is owned).
    pub fn for_holder(holder: Option<&Account>, previous_attempt: Option<&Account>) -> Self {
        match holder {
            None => Self::Free,
            Some(account) if account.status == AccountStatus::Pending => {
                Self::TakesOver(account.id)
            }
            Some(account) => Self::OwnedBy {
                owner: account.id,
                supersedes: previous_attempt.map(|attempt| attempt.id),
            },
        }
    }
}

pub(super) fn register(registration: Registration) -> Vec<AccountEvent> {
    let Registration {
        account_id,
        request_id,
        username,
        email,
        password_hash,
        locale,
        registered_at,
        address,
    } = registration;
    let (supersedes, address_owner) = match address {
        AddressClaim::Free => (None, None),
        AddressClaim::TakesOver(earlier) => (Some(earlier), None),
        AddressClaim::OwnedBy { owner, supersedes } => (supersedes, Some(owner)),
    };
    let registered = AccountEvent::AccountRegistered(AccountRegistered {
        account_id,
        username: username.as_str().to_owned(),
        username_canonical: username.canonical().to_owned(),
        email: email.as_typed().to_owned(),
        email_canonical: email.canonical().to_owned(),
        password_hash,
        locale,
        registered_at: Some(registered_at),
        supersedes,
        address_owner,
    });
    if address_owner.is_some() {
        // The owner is emailed (on the owner's stream); this registration
        // gets no link to confirm.
        return vec![registered];
    }
    vec![
        registered,
        AccountEvent::ActivationRequested(ActivationRequested {
            request_id,
            reason: ActivationReason::SignUp,
        }),
    ]
}

impl Account {
    /// A registration that superseded another pending one for its address.
    /// Either side may be the address's owner, so confirming it takes the
    /// password chosen at this sign-up as well as the mailbox's link. A
    /// pending registration lives at most `REGISTRATION_TTL`, so this is
    /// "superseded another within the last `REGISTRATION_TTL`".
    pub fn is_contested(&self) -> bool {
        self.supersedes.is_some()
    }

    /// Confirms the registration through the link of `request_id`. A
    /// link of an account that became active (and maybe blocked since)
    /// confirms nothing new.
    pub(super) fn activate(
        &self,
        request_id: Uuid,
        at: DateTime<Utc>,
        password_confirmed: bool,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Active | AccountStatus::Blocked => Ok(vec![]),
            status if status.is_ended() => Err(DomainError::RegistrationEnded(status)),
            _ if self.address_owner.is_some() => Err(DomainError::AddressOwnedElsewhere),
            _ if self.is_contested() && !password_confirmed => Err(DomainError::PasswordRequired),
            _ => Ok(vec![AccountEvent::AccountActivated(AccountActivated {
                request_id,
                activated_at: at,
            })]),
        }
    }

    /// A later sign-up for the same address, registration `by`, replaces
    /// this pending one.
    pub(super) fn supersede(
        &self,
        by: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Pending => Ok(vec![AccountEvent::RegistrationSuperseded(
                RegistrationSuperseded { by, at },
            )]),
            status => Err(DomainError::NotPending(status)),
        }
    }

    /// "This wasn't me"; a second press records nothing.
    pub(super) fn cancel(
        &self,
        request_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        match self.status {
            AccountStatus::Pending => Ok(vec![AccountEvent::RegistrationCancelled(
                RegistrationCancelled { request_id, at },
            )]),
            AccountStatus::Cancelled => Ok(vec![]),
            status => Err(DomainError::NotPending(status)),
        }
    }

    /// Ends the registration if it is still pending `ttl` after it was made.
    pub(super) fn expire(&self, at: DateTime<Utc>, ttl: chrono::Duration) -> Vec<AccountEvent> {
        let old_enough = self
            .registered_at
            .is_none_or(|registered_at| registered_at + ttl <= at);
        if self.status == AccountStatus::Pending && old_enough {
            vec![AccountEvent::RegistrationExpired(RegistrationExpired {
                at,
            })]
        } else {
            vec![]
        }
    }
}
