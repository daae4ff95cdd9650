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

use super::{Account, AccountCommand, AccountStatus, DomainError, decide};
use crate::domain::{
    EmailAddress, Locale, Username,
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
    pub locale: Locale,
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
            Some(account) if !account.owns_its_address() => Self::TakesOver(account.id),
            Some(account) => Self::OwnedBy {
                owner: account.id,
                supersedes: previous_attempt.map(|attempt| attempt.id),
            },
        }
    }

    /// Whether the registration claims the address itself; a sign-up held
    /// against an owner's address claims only the attempt.
    pub fn claims_address(self) -> bool {
        !matches!(self, Self::OwnedBy { .. })
    }
}

/// The sign-up an address decision is made for.
#[derive(Debug, Clone, Copy)]
pub struct AddressSignUp {
    /// The new registration's id.
    pub registration_id: Uuid,
    /// The request of the notice to the owner, should the address be owned.
    pub notice_request_id: Uuid,
    pub at: DateTime<Utc>,
}

/// What a sign-up does to its address's holders.
#[derive(Debug)]
pub enum AddressDecision {
    /// A holder had just ended when it was read, and is releasing its
    /// claims: read the address's holders again.
    ReadAgain,
    /// Record the registration with `address`, and `holder_writes`.
    Record {
        address: AddressClaim,
        /// The other streams the sign-up appends to, each with its events
        /// (none for an owner whose notice merged into one on its way or
        /// sent within [`super::SIGN_UP_NOTICE_INTERVAL`]).
        holder_writes: Vec<(Account, Vec<AccountEvent>)>,
    },
}

/// The sign-up address policy: what a new sign-up does to the address's
/// `holder` and, when an active or blocked account owns it, to the
/// `previous_attempt` held against it. A pending holder is superseded and
/// its claim taken over; an owner is told of the attempt (at most once per
/// notice interval) and keeps the address, and the previous attempt is
/// superseded, so a later sign-up frees an earlier one's username whatever
/// the address.
pub fn decide_address(
    holder: Option<Account>,
    previous_attempt: Option<Account>,
    sign_up: AddressSignUp,
) -> Result<AddressDecision, DomainError> {
    if [&holder, &previous_attempt]
        .into_iter()
        .flatten()
        .any(|account| account.status.is_ended())
    {
        return Ok(AddressDecision::ReadAgain);
    }
    let address = AddressClaim::for_holder(holder.as_ref(), previous_attempt.as_ref());
    let supersede = AccountCommand::Supersede {
        by: sign_up.registration_id,
        at: sign_up.at,
    };
    let commands = match address {
        AddressClaim::Free => vec![],
        AddressClaim::TakesOver(_) => vec![(holder, supersede)],
        AddressClaim::OwnedBy { .. } => {
            let notice = AccountCommand::RecordSignUpAttempt {
                request_id: sign_up.notice_request_id,
                at: sign_up.at,
            };
            vec![(holder, notice), (previous_attempt, supersede)]
        }
    };
    let mut holder_writes = vec![];
    for (account, command) in commands {
        if let Some(account) = account {
            let events = decide(Some(&account), command)?;
            holder_writes.push((account, events));
        }
    }
    Ok(AddressDecision::Record {
        address,
        holder_writes,
    })
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
        locale: locale.as_str().to_owned(),
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

    /// Whether confirming this registration's link takes its password as
    /// well: it is pending and contested.
    pub fn activation_needs_password(&self) -> bool {
        self.status == AccountStatus::Pending && self.is_contested()
    }

    /// Whether this account owns the address it holds against later
    /// sign-ups (it is active or blocked), rather than being a pending
    /// registration the next sign-up supersedes. Only against an owner does
    /// the previous sign-up held against the address matter.
    pub fn owns_its_address(&self) -> bool {
        matches!(self.status, AccountStatus::Active | AccountStatus::Blocked)
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
            _ if self.activation_needs_password() && !password_confirmed => {
                Err(DomainError::PasswordRequired)
            }
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
