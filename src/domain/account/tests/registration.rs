//! Sign-up, the address policy, activation and how registrations end.

use super::*;
use crate::domain::{
    account::{AccountStatus, AddressDecision, AddressSignUp, EmailPlan, decide_address},
    events::{
        RegistrationCancelled, RegistrationExpired, RegistrationSuperseded,
        SignUpAttemptedForExistingEmail,
    },
};

#[test]
fn registering_records_the_account_and_asks_for_an_activation_email() {
    let events = registered();
    check(
        vec![],
        AccountCommand::Register(registration()),
        Ok(events.clone()),
    );
    let AccountEvent::AccountRegistered(registered) = &events[0] else {
        panic!("first event is the registration");
    };
    assert_eq!(registered.email_canonical, "ada@example.com");
    assert_eq!(registered.email, "Ada@Example.com");
}

#[test]
fn registering_twice_is_refused() {
    check(
        registered(),
        AccountCommand::Register(registration()),
        Err(DomainError::AlreadyExists),
    );
}

#[test]
fn commands_on_a_missing_account_are_refused() {
    check(
        vec![],
        AccountCommand::Activate {
            request_id: id(2),
            at: at(0),
            password_confirmed: false,
        },
        Err(DomainError::NoSuchAccount),
    );
}

#[test]
fn activating_a_pending_account_records_it_once() {
    check(
        registered(),
        AccountCommand::Activate {
            request_id: id(2),
            at: at(5),
            password_confirmed: false,
        },
        Ok(vec![activated()]),
    );
    let mut history = registered();
    history.push(activated());
    check(
        history,
        AccountCommand::Activate {
            request_id: id(2),
            at: at(9),
            password_confirmed: false,
        },
        Ok(vec![]),
    );
}

#[test]
fn state_tracks_version_status_and_last_email() {
    let mut history = registered();
    history.extend([sent(2), activated()]);
    let account = replay(&history).expect("account exists");
    assert_eq!(account.version, 4);
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.last_email_at, Some(at(1)));
}

#[test]
fn a_sign_up_for_a_pending_address_supersedes_the_pending_registration() {
    check(
        registered(),
        AccountCommand::Supersede {
            by: id(11),
            at: at(3),
        },
        Ok(vec![AccountEvent::RegistrationSuperseded(
            RegistrationSuperseded {
                by: id(11),
                at: at(3),
            },
        )]),
    );
    let mut history = registered();
    history.push(activated());
    check(
        history,
        AccountCommand::Supersede {
            by: id(11),
            at: at(3),
        },
        Err(DomainError::NotPending(AccountStatus::Active)),
    );
    let holder = replay(&registered()).expect("account exists");
    assert_eq!(
        AddressClaim::for_holder(Some(&holder), None),
        AddressClaim::TakesOver(id(1))
    );
    assert_eq!(AddressClaim::for_holder(None, None), AddressClaim::Free);
}

#[test]
fn the_links_of_an_ended_registration_confirm_nothing() {
    let superseded = AccountEvent::RegistrationSuperseded(RegistrationSuperseded {
        by: id(11),
        at: at(3),
    });
    let cancelled = AccountEvent::RegistrationCancelled(RegistrationCancelled {
        request_id: id(2),
        at: at(3),
    });
    let expired = AccountEvent::RegistrationExpired(RegistrationExpired { at: at(3) });
    for (ending, status) in [
        (superseded, AccountStatus::Superseded),
        (cancelled, AccountStatus::Cancelled),
        (expired, AccountStatus::Expired),
    ] {
        assert!(ending.ends_registration());
        let mut history = registered();
        history.push(ending);
        let account = replay(&history).expect("account exists");
        assert_eq!(account.status, status);
        assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
        check(
            history.clone(),
            AccountCommand::Activate {
                request_id: id(2),
                at: at(5),
                password_confirmed: true,
            },
            Err(DomainError::RegistrationEnded(status)),
        );
        check(
            history,
            AccountCommand::RequestActivation { request_id: id(3) },
            Ok(vec![]),
        );
    }
}

#[test]
fn a_contested_registration_is_confirmed_only_with_its_password() {
    let history = register(contested());
    let account = replay(&history).expect("account exists");
    assert!(account.is_contested());
    assert_eq!(account.supersedes, Some(id(1)));
    assert!(account.activation_needs_password());
    check(
        history.clone(),
        activate(false),
        Err(DomainError::PasswordRequired),
    );
    check(
        history,
        activate(true),
        Ok(vec![AccountEvent::AccountActivated(AccountActivated {
            request_id: id(12),
            activated_at: at(5),
        })]),
    );
    let mut confirmed = register(contested());
    confirmed.push(AccountEvent::AccountActivated(AccountActivated {
        request_id: id(12),
        activated_at: at(5),
    }));
    assert!(
        !replay(&confirmed)
            .expect("account exists")
            .activation_needs_password(),
        "an active account's link confirms nothing, so it asks for nothing"
    );
    // An uncontested registration ignores whether a password came along.
    assert!(
        !replay(&registered())
            .expect("account exists")
            .is_contested()
    );
    check(
        registered(),
        AccountCommand::Activate {
            request_id: id(2),
            at: at(5),
            password_confirmed: false,
        },
        Ok(vec![activated()]),
    );
}

#[test]
fn a_sign_up_for_an_owned_address_holds_its_username_without_a_link() {
    let held = Registration {
        address: AddressClaim::OwnedBy {
            owner: id(1),
            supersedes: None,
        },
        account_id: id(11),
        ..registration()
    };
    let events = register(held.clone());
    assert_eq!(events.len(), 1, "no activation request");
    check(vec![], AccountCommand::Register(held), Ok(events.clone()));
    let account = replay(&events).expect("registration exists");
    assert_eq!(account.address_owner, Some(id(1)));
    assert_eq!(account.outstanding_request(), None);
    assert!(!account.may_request_activation());
    check(
        events.clone(),
        AccountCommand::RequestActivation { request_id: id(3) },
        Ok(vec![]),
    );
    check(
        events,
        activate(true),
        Err(DomainError::AddressOwnedElsewhere),
    );
}

#[test]
fn this_wasnt_me_cancels_a_pending_registration_once() {
    let cancel = AccountCommand::Cancel {
        request_id: id(2),
        at: at(4),
    };
    let cancelled = AccountEvent::RegistrationCancelled(RegistrationCancelled {
        request_id: id(2),
        at: at(4),
    });
    check(registered(), cancel.clone(), Ok(vec![cancelled.clone()]));
    let mut history = registered();
    history.push(cancelled);
    check(history, cancel.clone(), Ok(vec![]));
    let mut history = registered();
    history.push(activated());
    check(
        history,
        cancel,
        Err(DomainError::NotPending(AccountStatus::Active)),
    );
}

#[test]
fn a_registration_expires_only_when_pending_and_old_enough() {
    let ttl = chrono::Duration::hours(72);
    let expire = |seconds| AccountCommand::Expire {
        at: at(seconds),
        ttl,
    };
    let deadline = ttl.num_seconds();
    check(registered(), expire(deadline - 1), Ok(vec![]));
    check(
        registered(),
        expire(deadline),
        Ok(vec![AccountEvent::RegistrationExpired(
            RegistrationExpired { at: at(deadline) },
        )]),
    );
    let mut history = registered();
    history.push(activated());
    check(history, expire(deadline + 1), Ok(vec![]));
    let mut history = registered();
    history.push(AccountEvent::RegistrationExpired(RegistrationExpired {
        at: at(deadline),
    }));
    check(history, expire(deadline + 9), Ok(vec![]));
}

#[test]
fn a_sign_up_held_against_an_owned_address_is_superseded_by_the_next_one() {
    let owner = replay(&active()).expect("owner");
    let earlier = Registration {
        address: AddressClaim::for_holder(Some(&owner), None),
        account_id: id(11),
        ..registration()
    };
    let earlier = replay(&register(earlier)).expect("earlier attempt");
    let address = AddressClaim::for_holder(Some(&owner), Some(&earlier));
    assert_eq!(
        address,
        AddressClaim::OwnedBy {
            owner: owner.id,
            supersedes: Some(id(11)),
        }
    );
    let later = register(Registration {
        address,
        account_id: id(12),
        ..registration()
    });
    let later = replay(&later).expect("later attempt");
    assert_eq!(later.address_owner, Some(owner.id));
    assert_eq!(later.supersedes, Some(id(11)));
    assert_eq!(
        decide(
            Some(&earlier),
            AccountCommand::Supersede {
                by: id(12),
                at: at(5)
            }
        )
        .map(|events| events.iter().any(AccountEvent::ends_registration)),
        Ok(true)
    );
}

fn sign_up_at(seconds: i64) -> AddressSignUp {
    AddressSignUp {
        registration_id: id(21),
        notice_request_id: id(22),
        at: at(seconds),
    }
}

fn recorded(decision: AddressDecision) -> (AddressClaim, Vec<(Uuid, Vec<AccountEvent>)>) {
    let AddressDecision::Record {
        address,
        holder_writes,
    } = decision
    else {
        panic!("expected a decision to record, got {decision:?}");
    };
    let writes = holder_writes
        .into_iter()
        .map(|(account, events)| (account.id, events))
        .collect();
    (address, writes)
}

fn superseded_by_the_sign_up() -> AccountEvent {
    AccountEvent::RegistrationSuperseded(RegistrationSuperseded {
        by: id(21),
        at: at(30),
    })
}

#[test]
fn a_free_address_is_claimed_and_touches_no_other_stream() {
    let decision = decide_address(None, None, sign_up_at(30)).expect("decided");
    assert_eq!(recorded(decision), (AddressClaim::Free, vec![]));
    assert!(AddressClaim::Free.claims_address());
}

#[test]
fn a_pending_holder_is_superseded_and_its_claim_taken_over() {
    let holder = replay(&registered()).expect("holder");
    assert!(!holder.owns_its_address());
    let decision = decide_address(Some(holder), None, sign_up_at(30)).expect("decided");
    let (address, writes) = recorded(decision);
    assert_eq!(address, AddressClaim::TakesOver(id(1)));
    assert!(address.claims_address());
    assert_eq!(writes, vec![(id(1), vec![superseded_by_the_sign_up()])]);
}

#[test]
fn an_owner_is_told_once_per_interval_and_the_previous_attempt_is_superseded() {
    let owner = replay(&active()).expect("owner");
    assert!(owner.owns_its_address());
    let earlier = Registration {
        address: AddressClaim::for_holder(Some(&owner), None),
        account_id: id(11),
        ..registration()
    };
    let earlier = replay(&register(earlier)).expect("earlier attempt");
    let decision =
        decide_address(Some(owner.clone()), Some(earlier), sign_up_at(30)).expect("decided");
    let (address, writes) = recorded(decision);
    assert_eq!(
        address,
        AddressClaim::OwnedBy {
            owner: id(1),
            supersedes: Some(id(11)),
        }
    );
    assert!(!address.claims_address());
    let notice = AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
        request_id: id(22),
        attempted_at: Some(at(30)),
    });
    assert_eq!(
        writes,
        vec![
            (id(1), vec![notice.clone()]),
            (id(11), vec![superseded_by_the_sign_up()]),
        ]
    );

    // Within the interval the owner's stream is still written to, with
    // nothing: the notice merges into the one recorded.
    let mut history = active();
    history.push(notice);
    let owner = replay(&history).expect("owner");
    let decision = decide_address(Some(owner), None, sign_up_at(31)).expect("decided");
    assert_eq!(
        recorded(decision),
        (
            AddressClaim::OwnedBy {
                owner: id(1),
                supersedes: None,
            },
            vec![(id(1), vec![])]
        )
    );
}

#[test]
fn a_holder_read_as_it_ended_is_read_again() {
    let mut ended = registered();
    ended.push(AccountEvent::RegistrationExpired(RegistrationExpired {
        at: at(3),
    }));
    let ended = replay(&ended).expect("ended registration");
    assert!(matches!(
        decide_address(Some(ended.clone()), None, sign_up_at(30)),
        Ok(AddressDecision::ReadAgain)
    ));
    let owner = replay(&active()).expect("owner");
    assert!(matches!(
        decide_address(Some(owner), Some(ended), sign_up_at(30)),
        Ok(AddressDecision::ReadAgain)
    ));
}

/// A registration recorded under rules that have changed since: its
/// username, address and locale no longer parse, and are kept as recorded
/// (with the canonical forms their claims hold), because what is in the log
/// has happened. The snapshot keeps them the same way.
#[test]
fn recorded_values_that_no_longer_parse_are_kept_as_recorded() {
    let AccountEvent::AccountRegistered(mut recorded) = registered().remove(0) else {
        panic!("first event is the registration");
    };
    recorded.username = "a__b".into();
    recorded.username_canonical = "a__b".into();
    recorded.email = "Root@Localhost".into();
    recorded.email_canonical = "root@localhost".into();
    recorded.locale = "not a tag".into();
    assert!(Username::parse(&recorded.username).is_err());
    assert!(EmailAddress::parse(&recorded.email).is_err());
    assert!(Locale::parse(&recorded.locale).is_err());

    let account = replay(&[AccountEvent::AccountRegistered(recorded)]).expect("an account");
    assert_eq!(
        (account.username.as_str(), account.username.canonical()),
        ("a__b", "a__b")
    );
    assert_eq!(
        (account.email.as_typed(), account.email.canonical()),
        ("Root@Localhost", "root@localhost")
    );
    assert_eq!(account.locale.as_str(), "not a tag");
    assert_eq!(account.status, AccountStatus::Pending);

    let restored = crate::domain::Account::from_snapshot(account.to_snapshot().expect("stores"))
        .expect("restores");
    assert_eq!(restored, account);
}
