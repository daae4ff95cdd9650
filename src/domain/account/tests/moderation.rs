//! What operators do: manual activation, block and unblock.

use super::*;
use crate::domain::{
    account::AccountStatus,
    events::{AccountActivatedManually, AccountBlocked, AccountUnblocked, RegistrationExpired},
};

#[test]
fn an_operator_activates_a_pending_registration_once() {
    let manually = AccountEvent::AccountActivatedManually(AccountActivatedManually {
        activated_at: at(7),
    });
    let command = AccountCommand::ActivateManually { at: at(7) };
    check(registered(), command.clone(), Ok(vec![manually.clone()]));
    let mut history = registered();
    history.push(manually);
    let account = replay(&history).expect("account exists");
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(
        account.outstanding_request(),
        None,
        "no link needed any more"
    );
    check(history, command.clone(), Err(DomainError::AlreadyActive));
    let mut expired = registered();
    expired.push(AccountEvent::RegistrationExpired(RegistrationExpired {
        at: at(3),
    }));
    check(
        expired,
        command,
        Err(DomainError::RegistrationEnded(AccountStatus::Expired)),
    );
}

#[test]
fn only_an_active_account_is_blocked_and_only_a_blocked_one_unblocked() {
    let block = AccountCommand::Block {
        reason: "fraud".into(),
        at: at(8),
    };
    let blocked = AccountEvent::AccountBlocked(AccountBlocked {
        reason: "fraud".into(),
        at: at(8),
    });
    check(active(), block.clone(), Ok(vec![blocked.clone()]));
    check(
        registered(),
        block.clone(),
        Err(DomainError::NotActive(AccountStatus::Pending)),
    );
    let mut history = active();
    history.push(blocked);
    assert_eq!(
        replay(&history).expect("account exists").status,
        AccountStatus::Blocked
    );
    check(history.clone(), block, Err(DomainError::AlreadyBlocked));
    // Its old links confirm nothing, and it is not activated again.
    check(
        history.clone(),
        AccountCommand::Activate {
            request_id: id(2),
            at: at(9),
            password_confirmed: true,
        },
        Ok(vec![]),
    );
    let unblocked = AccountEvent::AccountUnblocked(AccountUnblocked { at: at(9) });
    check(
        history.clone(),
        AccountCommand::Unblock { at: at(9) },
        Ok(vec![unblocked.clone()]),
    );
    history.push(unblocked);
    assert_eq!(
        replay(&history).expect("account exists").status,
        AccountStatus::Active
    );
    check(
        history,
        AccountCommand::Unblock { at: at(10) },
        Err(DomainError::NotBlocked),
    );
}
