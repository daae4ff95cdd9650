//! Passwords: change, reset links, rehash, and who may sign in.

use super::*;
use crate::domain::account::{AccountStatus, EmailPlan, RetryNotNeeded, RetryPlan, SignInRefused};

#[test]
fn only_an_active_account_may_sign_in() {
    let pending = replay(&registered()).expect("account exists");
    assert_eq!(pending.may_sign_in(), Err(SignInRefused::NotActive));
    let active = replay(&active()).expect("account exists");
    assert_eq!(active.may_sign_in(), Ok(()));
    assert_eq!(active.password_hash, PasswordHash("$argon2id$hash".into()));
}

#[test]
fn a_reset_request_gets_a_reset_link_when_active_and_the_activation_link_when_pending() {
    check(
        active(),
        AccountCommand::RequestPasswordReset { request_id: id(7) },
        Ok(vec![reset_requested(7)]),
    );
    let mut history = registered();
    history.push(sent(2));
    check(
        history,
        AccountCommand::RequestPasswordReset { request_id: id(7) },
        Ok(vec![resend(7)]),
    );
    let mut history = active();
    history.push(reset_requested(7));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(7)),
        Ok(EmailPlan::PasswordReset { sequence: 5 })
    );
}

#[test]
fn a_reset_request_seen_twice_or_while_its_email_is_on_its_way_records_nothing() {
    let mut history = active();
    history.push(reset_requested(7));
    check(
        history.clone(),
        AccountCommand::RequestPasswordReset { request_id: id(7) },
        Ok(vec![]),
    );
    check(
        history.clone(),
        AccountCommand::RequestPasswordReset { request_id: id(8) },
        Ok(vec![]),
    );
    history.push(sent(7));
    check(
        history,
        AccountCommand::RequestPasswordReset { request_id: id(8) },
        Ok(vec![reset_requested(8)]),
    );
}

#[test]
fn a_reset_link_sets_the_password_once() {
    let mut history = active();
    history.extend([reset_requested(7), sent(7)]);
    check(history.clone(), reset(7, 9), Ok(vec![was_reset(7, 9)]));
    history.push(was_reset(7, 9));
    check(
        history.clone(),
        reset(7, 10),
        Err(DomainError::ResetLinkUnusable),
    );
    let account = replay(&history).expect("account exists");
    assert_eq!(account.password_hash, hash("new"));
    assert_eq!(account.email_plan(id(9)), Ok(EmailPlan::PasswordChanged));
}

#[test]
fn a_newer_reset_request_or_a_change_makes_older_links_unusable() {
    let mut history = active();
    history.extend([reset_requested(7), sent(7), reset_requested(8)]);
    check(
        history.clone(),
        reset(7, 9),
        Err(DomainError::ResetLinkUnusable),
    );
    let account = replay(&history).expect("account exists");
    assert_eq!(account.email_plan(id(7)), Ok(EmailPlan::Nothing));

    let mut history = active();
    history.extend([reset_requested(7), sent(7)]);
    let changed = decide(
        replay(&history).as_ref(),
        AccountCommand::ChangePassword {
            password_hash: hash("changed"),
            notice_request_id: id(11),
            at: at(30),
        },
    )
    .expect("an active account may change its password");
    history.extend(changed);
    check(history, reset(7, 9), Err(DomainError::ResetLinkUnusable));
    check(
        registered(),
        reset(2, 9),
        Err(DomainError::ResetLinkUnusable),
    );
}

#[test]
fn a_password_change_needs_an_active_account_and_emails_the_owner() {
    let command = || AccountCommand::ChangePassword {
        password_hash: hash("changed"),
        notice_request_id: id(11),
        at: at(30),
    };
    check(
        registered(),
        command(),
        Err(DomainError::NotActive(AccountStatus::Pending)),
    );
    check(
        active(),
        command(),
        Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Change,
            password_hash: hash("changed"),
            changed_at: at(30),
            reset_request_id: None,
            notice_request_id: Some(id(11)),
        })]),
    );
}

#[test]
fn a_rehash_replaces_only_the_hash_it_was_made_from_and_emails_nobody() {
    let upgrade = |replaces: &str| AccountCommand::UpgradePasswordHash {
        replaces: hash(replaces),
        password_hash: hash("upgraded"),
        at: at(40),
    };
    let rehashed = AccountEvent::PasswordChanged(PasswordChanged {
        reason: PasswordChangeReason::Rehash,
        password_hash: hash("upgraded"),
        changed_at: at(40),
        reset_request_id: None,
        notice_request_id: None,
    });
    check(active(), upgrade("hash"), Ok(vec![rehashed.clone()]));
    check(active(), upgrade("an older hash"), Ok(vec![]));

    // A rehash is no change: an outstanding reset link keeps working.
    let mut history = active();
    history.extend([reset_requested(7), sent(7), rehashed]);
    check(history, reset(7, 9), Ok(vec![was_reset(7, 9)]));
}

#[test]
fn the_credential_generation_moves_with_a_change_or_reset_never_a_rehash() {
    let generation = |history: &[AccountEvent]| {
        replay(history)
            .expect("account exists")
            .credential_generation()
    };
    let mut history = active();
    let first = generation(&history);
    history.push(AccountEvent::PasswordChanged(PasswordChanged {
        reason: PasswordChangeReason::Rehash,
        password_hash: hash("upgraded"),
        changed_at: at(40),
        reset_request_id: None,
        notice_request_id: None,
    }));
    assert_eq!(generation(&history), first, "a rehash keeps the password");
    history.extend([reset_requested(7), sent(7), was_reset(7, 9)]);
    let after_reset = generation(&history);
    assert_ne!(after_reset, first);
    let changed = decide(
        replay(&history).as_ref(),
        AccountCommand::ChangePassword {
            password_hash: hash("changed"),
            notice_request_id: id(11),
            at: at(50),
        },
    )
    .expect("an active account may change its password");
    history.extend(changed);
    assert_ne!(generation(&history), after_reset);
}

#[test]
fn a_failed_reset_email_is_retried_only_while_its_link_would_work() {
    let mut history = active();
    history.extend([reset_requested(7), failed(7)]);
    check(history.clone(), retry(7, 12), Ok(vec![retried(7, 12)]));
    history.push(retried(7, 12));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(12)),
        Ok(EmailPlan::PasswordReset { sequence: 7 })
    );
    history.push(reset_requested(13));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.retry_plan(id(12), id(14)),
        Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded))
    );
}
