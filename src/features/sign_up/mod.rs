//! Sign-up: `POST /api/users` records a registration and owes its
//! activation email.
//!
//! A sign-up may touch three streams in one transaction: the new
//! registration, the address's current holder (a pending registration it
//! supersedes, or an active account whose owner is told of the attempt),
//! and, for an owned address, the previous sign-up held against it, which
//! it supersedes. Claims move only there, with the event that ends the
//! earlier registration.
//! What a sign-up does to those streams is the domain's address policy
//! (`domain::account::decide_address`); the holders are only read,
//! under the address lock, and the outcome appended in one transaction.
//!
//! The answer is the same `202` whatever the address's state; only a taken
//! username is refused.

use chrono::Utc;
use uuid::Uuid;

use crate::{
    domain::{
        Account, AccountCommand, AccountEvent, AddressClaim, EmailAddress, Locale, PasswordHash,
        Registration, Username,
        account::{AddressDecision, AddressSignUp, decide_address},
        decide,
    },
    platform::{
        commands::{
            CommandError, Commands, MAX_ATTEMPTS, claimant, encode_all, pause_before_round,
        },
        store::{self, Append, AppendError, Claim, ClaimKind, EventMetadata, account_stream},
    },
};

pub mod http;

/// What a person asked for at sign-up, parsed at the edge.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub username: Username,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    pub locale: Locale,
}

/// What a sign-up did. The person is answered the same `202` whichever it
/// was; the difference is for logs and tests.
#[derive(Debug)]
pub struct SignedUp {
    /// The new registration, as it stands after the sign-up.
    pub registration: Account,
    pub address: AddressClaim,
}

/// Registers a sign-up as a new registration that always claims its
/// username, whatever the address: a taken username is the only refusal,
/// so answers never tell whether an address has an account. The address
/// goes to the new registration when it is free or held by a pending
/// registration (which is superseded in the same transaction); an active
/// or blocked account keeps it, its owner is told of the attempt, and
/// the new registration supersedes the previous sign-up held against
/// that address, so a later sign-up frees an earlier one's username
/// whatever the address. A lost race on the address (a concurrent
/// sign-up, activation or expiry) is decided again.
pub async fn sign_up(
    commands: &Commands,
    sign_up: SignUp,
    metadata: &EventMetadata,
) -> Result<SignedUp, CommandError> {
    let account_id = Uuid::new_v4();
    let request_id = Uuid::now_v7();
    let email = sign_up.email.canonical();
    let claim = |kind, value: &str| {
        (
            Claim {
                kind,
                value: value.to_owned(),
            },
            account_id,
        )
    };
    for attempt in 0..MAX_ATTEMPTS {
        pause_before_round(attempt).await;
        let mut tx = store::lock_address(commands.pool(), email).await?;
        let holder = claimant(&mut tx, ClaimKind::Email, email).await?;
        let previous_attempt = match &holder {
            Some(owner) if owner.owns_its_address() => {
                claimant(&mut tx, ClaimKind::EmailAttempt, email).await?
            }
            _ => None,
        };
        let at = Utc::now();
        let sign_up_at = AddressSignUp {
            registration_id: account_id,
            notice_request_id: Uuid::now_v7(),
            at,
        };
        let AddressDecision::Record {
            address,
            holder_writes,
        } = decide_address(holder, previous_attempt, sign_up_at)?
        else {
            // Read a claim just before its registration ended and
            // released it: decide again on the address's new holders.
            continue;
        };
        let registration = Registration {
            account_id,
            request_id,
            username: sign_up.username.clone(),
            email: sign_up.email.clone(),
            password_hash: sign_up.password_hash.clone(),
            locale: sign_up.locale.clone(),
            registered_at: at,
            address,
        };
        let events = decide(None, AccountCommand::Register(registration))?;
        let address_claim = if address.claims_address() {
            ClaimKind::Email
        } else {
            ClaimKind::EmailAttempt
        };
        let claims = [
            claim(ClaimKind::Username, sign_up.username.canonical()),
            claim(address_claim, email),
        ];
        let mut appends = vec![Append {
            account_id,
            expected_version: 0,
            events: encode_all(&events)?,
            releases_claims: false,
        }];
        for (account, events) in &holder_writes {
            appends.push(Append {
                account_id: account.id,
                expected_version: account.version,
                events: encode_all(events)?,
                releases_claims: events.iter().any(AccountEvent::ends_registration),
            });
        }
        match store::append_all_in(tx, &appends, &claims, metadata).await {
            Ok(()) => {
                for (account, events) in holder_writes {
                    if events.is_empty() {
                        // Merged into the owner's notice: it is on its
                        // way or was sent within the interval.
                        commands.push_outstanding(&account).await;
                    } else {
                        let from_version = account.version;
                        commands
                            .committed(Some(account), events, from_version)
                            .await?;
                    }
                }
                let executed = commands.committed(None, events, 0).await?;
                return Ok(SignedUp {
                    registration: executed.account,
                    address,
                });
            }
            Err(AppendError::ClaimTaken(ClaimKind::Username)) => {
                return Err(CommandError::ClaimTaken(ClaimKind::Username));
            }
            Err(
                AppendError::ClaimTaken(ClaimKind::Email | ClaimKind::EmailAttempt)
                | AppendError::Conflict { .. },
            ) => {
                continue;
            }
            Err(AppendError::Database(e)) => return Err(e.into()),
        }
    }
    Err(CommandError::Contended(account_stream(account_id)))
}
