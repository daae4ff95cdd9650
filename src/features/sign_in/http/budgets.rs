//! The budgets a sign-in spends: failures per login (or device, or
//! account) and client IP, reserved before the hash; successes per account
//! and client IP.

use uuid::Uuid;

use super::account_subject;
use crate::platform::{
    http::{context::RequestContext, response::ApiError},
    rate_limit::{Budget, Reservation},
    services::AppState,
};

/// The failed sign-in budgets of one attempt: its login (or device, or at
/// password change its account) and its client IP.
pub(super) struct Throttle<'a> {
    state: &'a AppState,
    subject: String,
    client: String,
}

impl<'a> Throttle<'a> {
    pub(super) fn new(state: &'a AppState, context: &RequestContext, subject: String) -> Self {
        Self {
            state,
            subject,
            client: context.client_ip.to_string(),
        }
    }

    /// Spends one unit of each budget before the password is checked, or
    /// answers `429` (spending neither) when either is spent.
    pub(super) async fn reserve(&self) -> Result<ReservedAttempt<'a>, ApiError> {
        let limits = &self.state.config.limits;
        let limiter = &self.state.rate_limiter;
        let per_ip = limiter
            .reserve(
                Budget::FailedSignInPerIp,
                limits.failed_sign_in_per_ip,
                &self.client,
            )
            .await?;
        match limiter
            .reserve(
                Budget::FailedSignInPerLogin,
                limits.failed_sign_in_per_login,
                &self.subject,
            )
            .await
        {
            Ok(per_login) => Ok(ReservedAttempt { per_ip, per_login }),
            Err(refused) => {
                per_ip.refund().await;
                Err(refused.into())
            }
        }
    }
}

/// The units one attempt holds until its password is checked.
pub(super) struct ReservedAttempt<'a> {
    per_ip: Reservation<'a>,
    per_login: Reservation<'a>,
}

impl ReservedAttempt<'_> {
    /// A wrong password: both units stay spent.
    pub(super) fn keep(self) {
        self.per_ip.keep();
        self.per_login.keep();
    }

    /// The right password (or none was checked): both units come back.
    pub(super) async fn refund(self) {
        futures::join!(self.per_ip.refund(), self.per_login.refund());
    }
}

/// The budgets of successful sign-ins, per account and per client IP: each
/// success is a session, and sessions live in shared Redis. Checked before
/// anything is hashed, like the failure budgets; spent once the password
/// proved right, and then atomically (admit), so sign-ins that passed the
/// check together cannot all get a session.
pub(super) struct SuccessBudgets<'a> {
    state: &'a AppState,
    account: String,
    client: String,
}

impl<'a> SuccessBudgets<'a> {
    /// A login that names no account is checked against a subject nobody
    /// spends: the same Redis round trip, never refused.
    pub(super) fn new(
        state: &'a AppState,
        context: &RequestContext,
        account_id: Option<Uuid>,
    ) -> Self {
        Self {
            state,
            account: account_subject(account_id.unwrap_or_else(Uuid::new_v4)),
            client: context.client_ip.to_string(),
        }
    }

    /// `429` when either budget is spent; spends nothing.
    pub(super) async fn check(&self) -> Result<(), ApiError> {
        self.run(false).await
    }

    /// Spends one sign-in of each budget, or `429` when either has none.
    pub(super) async fn spend(&self) -> Result<(), ApiError> {
        self.run(true).await
    }

    async fn run(&self, spend: bool) -> Result<(), ApiError> {
        let limits = &self.state.config.limits;
        for (budget, limit, subject) in [
            (
                Budget::SignInPerAccount,
                limits.sign_in_per_account,
                &self.account,
            ),
            (Budget::SignInPerIp, limits.sign_in_per_ip, &self.client),
        ] {
            let limiter = &self.state.rate_limiter;
            if spend {
                limiter.admit(budget, limit, subject).await?;
            } else {
                limiter.check(budget, limit, subject).await?;
            }
        }
        Ok(())
    }
}
