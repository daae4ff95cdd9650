//! The email-request outbox: merging, plans, delivery records and retries.

use super::*;
use crate::domain::{
    account::{
        EmailPlan, RetryNotNeeded, RetryPlan, SIGN_UP_NOTICE_INTERVAL,
        requests::SETTLED_REQUESTS_KEPT,
    },
    events::{EmailWithheld, SignUpAttemptedForExistingEmail},
};

#[test]
fn recording_a_sent_email_is_idempotent() {
    check(
        registered(),
        AccountCommand::RecordEmailSent {
            request_id: id(2),
            sent_at: at(1),
            key: Some(key("fp", 901)),
        },
        Ok(vec![sent(2)]),
    );
    let mut history = registered();
    history.push(sent(2));
    check(
        history,
        AccountCommand::RecordEmailSent {
            request_id: id(2),
            sent_at: at(2),
            key: Some(key("other", 902)),
        },
        Ok(vec![]),
    );
}

#[test]
fn an_unknown_request_cannot_be_recorded_as_sent() {
    check(
        registered(),
        AccountCommand::RecordEmailFailed {
            request_id: id(99),
            reason: "x".into(),
            permanent: true,
            attempts: 1,
        },
        Err(DomainError::UnknownRequest(id(99))),
    );
}

#[test]
fn a_failure_after_the_email_went_out_is_not_recorded() {
    let mut history = registered();
    history.push(sent(2));
    check(
        history,
        AccountCommand::RecordEmailFailed {
            request_id: id(2),
            reason: "timeout".into(),
            permanent: false,
            attempts: 3,
        },
        Ok(vec![]),
    );
}

#[test]
fn resend_asks_again_only_while_pending() {
    let mut history = registered();
    history.push(sent(2));
    check(
        history,
        AccountCommand::RequestActivation { request_id: id(3) },
        Ok(vec![resend(3)]),
    );
    let mut history = registered();
    history.push(activated());
    check(
        history,
        AccountCommand::RequestActivation { request_id: id(3) },
        Ok(vec![]),
    );
}

#[test]
fn requests_while_an_email_is_outstanding_are_coalesced() {
    // The sign-up's own activation email has not gone out yet.
    check(
        registered(),
        AccountCommand::RequestActivation { request_id: id(3) },
        Ok(vec![]),
    );
    check(
        registered(),
        AccountCommand::RecordSignUpAttempt {
            request_id: id(3),
            at: at(3),
        },
        Ok(vec![]),
    );
    let account = replay(&registered()).expect("account exists");
    assert_eq!(account.outstanding_request(), Some(id(2)));

    let mut history = registered();
    history.push(sent(2));
    let account = replay(&history).expect("account exists");
    assert_eq!(account.outstanding_request(), None);
    assert_eq!(
        account.next_email_allowed_at(chrono::Duration::seconds(60)),
        Some(at(61))
    );
}

#[test]
fn email_plan_sends_each_request_once_and_skips_superseded_ones() {
    let account = replay(&registered()).expect("account exists");
    assert_eq!(
        account.email_plan(id(2)),
        Ok(EmailPlan::Activation { sequence: 2 })
    );

    let mut history = registered();
    history.push(resend(3));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(2)),
        Ok(EmailPlan::Nothing),
        "superseded by the resend"
    );
    assert_eq!(
        account.email_plan(id(3)),
        Ok(EmailPlan::Activation { sequence: 3 })
    );

    history.push(sent(3));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(3)),
        Ok(EmailPlan::Nothing),
        "already sent"
    );
    assert_eq!(
        account.email_plan(id(9)),
        Err(DomainError::UnknownRequest(id(9)))
    );
}

#[test]
fn a_repeated_sign_up_gets_a_notice_with_a_link_only_while_pending() {
    let attempt = AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
        request_id: id(4),
        attempted_at: None,
    });
    let mut history = registered();
    history.push(attempt.clone());
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(4)),
        Ok(EmailPlan::AlreadyRegistered {
            activation: Some(3)
        })
    );

    let mut history = registered();
    history.extend([activated(), attempt]);
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(4)),
        Ok(EmailPlan::AlreadyRegistered { activation: None })
    );
}

#[test]
fn a_failed_activation_email_is_retried_as_a_new_request_that_sends_the_link() {
    let mut history = registered();
    history.push(failed(2));
    let account = replay(&history).expect("account exists");
    assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
    check(history.clone(), retry(2, 3), Ok(vec![retried(2, 3)]));

    history.push(retried(2, 3));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(3)),
        Ok(EmailPlan::Activation { sequence: 4 })
    );
    check(history.clone(), retry(2, 3), Ok(vec![]));
    assert_eq!(
        account.retry_plan(id(2), id(3)),
        Ok(RetryPlan::AlreadyRequested)
    );
}

#[test]
fn a_retry_is_not_needed_once_the_email_is_moot() {
    let mut history = registered();
    history.extend([failed(2), activated()]);
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.retry_plan(id(2), id(3)),
        Ok(RetryPlan::NotNeeded(RetryNotNeeded::AccountActive))
    );
    check(history, retry(2, 3), Ok(vec![]));

    let mut history = registered();
    history.extend([failed(2), resend(4)]);
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.retry_plan(id(2), id(5)),
        Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded))
    );

    let mut history = registered();
    history.push(sent(2));
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.retry_plan(id(2), id(5)),
        Ok(RetryPlan::NotNeeded(RetryNotNeeded::AlreadySent))
    );
    check(
        history,
        retry(9, 5),
        Err(DomainError::UnknownRequest(id(9))),
    );
}

#[test]
fn a_failed_notice_is_retried_as_a_notice() {
    let notice = AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
        request_id: id(4),
        attempted_at: None,
    });
    let mut history = registered();
    history.extend([activated(), notice, failed(4), retried(4, 5)]);
    let account = replay(&history).expect("account exists");
    assert_eq!(
        account.email_plan(id(5)),
        Ok(EmailPlan::AlreadyRegistered { activation: None })
    );
}

#[test]
fn a_withheld_email_is_no_longer_outstanding() {
    let withheld = AccountEvent::EmailWithheld(EmailWithheld {
        request_id: id(2),
        reason: "budget".into(),
    });
    check(
        registered(),
        AccountCommand::RecordEmailWithheld {
            request_id: id(2),
            reason: "budget".into(),
        },
        Ok(vec![withheld.clone()]),
    );
    let mut history = registered();
    history.push(withheld);
    let account = replay(&history).expect("account exists");
    assert_eq!(account.outstanding_request(), None);
    assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
    check(
        history,
        AccountCommand::RecordEmailWithheld {
            request_id: id(2),
            reason: "budget".into(),
        },
        Ok(vec![]),
    );
}

#[test]
fn password_emails_do_not_hold_back_a_sign_up_notice() {
    let mut history = active();
    history.push(reset_requested(7));
    let account = replay(&history).expect("account exists");
    assert_eq!(account.outstanding_request(), None);
    check(
        history,
        AccountCommand::RecordSignUpAttempt {
            request_id: id(8),
            at: at(8),
        },
        Ok(vec![AccountEvent::SignUpAttemptedForExistingEmail(
            SignUpAttemptedForExistingEmail {
                request_id: id(8),
                attempted_at: Some(at(8)),
            },
        )]),
    );
}

#[test]
fn a_long_history_keeps_the_newest_settled_requests_only() {
    let mut history = active();
    for n in 0..100 {
        let request = 100 + n;
        history.push(AccountEvent::SignUpAttemptedForExistingEmail(
            SignUpAttemptedForExistingEmail {
                request_id: id(request),
                attempted_at: None,
            },
        ));
        history.push(sent(request));
    }
    history.push(reset_requested(7));
    let account = replay(&history).expect("account exists");
    // The 16 newest notices, the activation request (the newest key
    // request is never forgotten), and the outstanding reset request.
    assert_eq!(account.requests.len(), SETTLED_REQUESTS_KEPT + 2);
    assert_eq!(account.email_plan(id(199)), Ok(EmailPlan::Nothing));
    assert_eq!(
        account.email_plan(id(100)),
        Err(DomainError::UnknownRequest(id(100)))
    );
    assert_eq!(
        account.email_plan(id(7)),
        Ok(EmailPlan::PasswordReset {
            sequence: account.version
        })
    );
}

#[test]
fn sign_up_attempts_record_one_notice_per_interval() {
    let attempt = |request: u128, seconds: i64| AccountCommand::RecordSignUpAttempt {
        request_id: id(request),
        at: at(seconds),
    };
    let mut history = active();
    let first = decide(replay(&history).as_ref(), attempt(8, 100)).expect("recorded");
    assert_eq!(first.len(), 1);
    history.extend(first);
    history.push(sent(8));
    // The notice went out; later attempts within the interval merge
    // into it, however many.
    let interval = SIGN_UP_NOTICE_INTERVAL.num_seconds();
    check(history.clone(), attempt(9, 101), Ok(vec![]));
    check(history.clone(), attempt(9, 100 + interval - 1), Ok(vec![]));
    let next = decide(replay(&history).as_ref(), attempt(9, 100 + interval));
    assert!(matches!(
        next.as_deref(),
        Ok([AccountEvent::SignUpAttemptedForExistingEmail(_)])
    ));
    // Attempts recorded before they carried a time never hold one back.
    let mut old = active();
    old.push(AccountEvent::SignUpAttemptedForExistingEmail(
        SignUpAttemptedForExistingEmail {
            request_id: id(8),
            attempted_at: None,
        },
    ));
    old.push(sent(8));
    assert_eq!(
        decide(replay(&old).as_ref(), attempt(9, 101)).map(|events| events.len()),
        Ok(1)
    );
}
