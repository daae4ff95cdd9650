//! Signing in and out, the signed-in account, and changing the password.
//!
//! `POST /api/sessions` answers a wrong password and a login that names no
//! account with the same `401`, and both cost one hash on the bounded
//! hashing threads. Failures are counted per client IP and per login as
//! typed (its canonical form, whether or not an account holds it), so a
//! username and the email of one account never share a budget and the
//! answer never tells whether a login names an account. Each attempt
//! reserves one unit of both budgets before its hash and gives them back
//! when the password is right, so a concurrent burst hashes no more wrong
//! guesses than the budgets hold; a client over either budget is answered
//! `429` before anything is hashed, whether or not its password is right,
//! so the budget cannot be used to test passwords. A successful sign-in
//! answers a device token ([`crate::features::sign_in::device_tokens`]); presented with a
//! later sign-in to the same account, it moves that attempt from the
//! login's budget to the device's own, so whoever spends a login's budget
//! does not lock its owner out of a device they signed in from before.
//! Successful sign-ins have budgets of their own, checked at the same point
//! and spent only by a right password. Only the right password learns that
//! an account is pending (`403`). A hash made with older Argon2 parameters
//! is replaced after a successful sign-in (`PasswordChanged`, reason
//! `rehash`).
//!
//! Everything else here needs `Authorization: Bearer <token>`; see
//! [`crate::platform::sessions`] for what a token is and where it lives.

use chrono::{DateTime, Utc};
use http::{HeaderMap, Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{Answer, Auth, BodyType, Content, Operation, RequestBody, Tag},
        request,
        response::{ApiError, Body, PasswordChanged, json_response, no_content},
    },
    services::AppState,
};

mod budgets;

use budgets::{SuccessBudgets, Throttle};

pub static SIGN_IN: Operation = Operation {
    id: "sign_in",
    tag: Tag::Sessions,
    summary: "Sign in: a session token",
    description: "A wrong password and a login that names no account get the same 401; only \
        the right password learns that an account is pending or blocked (403).",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<SignInBody>()),
    answers: &[
        Answer::json::<NewSession>(201, "Signed in"),
        Answer::error(401, "The login or the password is wrong"),
        Answer::error(403, "The account is not active yet, or blocked"),
        Answer::error(429, "Too many attempts for this login, device or client"),
    ],
};

pub static SIGN_OUT_EVERYWHERE: Operation = Operation {
    id: "sign_out_everywhere",
    tag: Tag::Sessions,
    summary: "End every session of the account",
    description: "This one included.",
    auth: Auth::Session,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::new(204, "Signed out everywhere", Content::Nothing)],
};

pub static SIGN_OUT: Operation = Operation {
    id: "sign_out",
    tag: Tag::Sessions,
    summary: "End this session",
    description: "The token stops working at once.",
    auth: Auth::Session,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::new(204, "Signed out", Content::Nothing)],
};

pub static ME: Operation = Operation {
    id: "me",
    tag: Tag::Sessions,
    summary: "The signed-in account",
    description: "Who the session token belongs to.",
    auth: Auth::Session,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::json::<AccountView>(200, "The account")],
};

pub static CHANGE_PASSWORD: Operation = Operation {
    id: "change_password",
    tag: Tag::Sessions,
    summary: "Change the password",
    description: "Needs the current password; every other session ends and the owner is \
        emailed.",
    auth: Auth::Session,
    parameters: &[],
    body: RequestBody::Json(BodyType::of::<ChangePasswordBody>()),
    answers: &[
        Answer::json::<PasswordChanged>(200, "Changed"),
        Answer::error(403, "The account is not active"),
        Answer::error(429, "Too many wrong current passwords"),
    ],
};
use crate::{
    domain::{
        Account, AccountCommand, DomainError, EmailAddress, Password, SignInRefused, Username,
    },
    features::sign_in::device_tokens::{DeviceId, DeviceTokens},
    platform::{
        commands::CommandError,
        sessions::{Session, SessionOwner, SessionToken},
        store::{self, ClaimKind},
    },
};

/// A sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignIn)]
pub struct SignInBody {
    /// A username or an email address
    login: String,
    #[schema(max_length = 128, write_only)]
    password: String,
    /// The device_token of an earlier sign-in to this account from this
    /// device; failures are then budgeted per device instead of per login.
    /// Anything else (another account's, forged, malformed) counts as no
    /// token
    #[schema(write_only)]
    device_token: Option<String>,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Session)]
pub struct NewSession {
    /// 256 bits, 64 hex digits; send as Authorization: Bearer <token>
    #[schema(pattern = "^[0-9a-f]{64}$")]
    token: String,
    /// The latest the session can live (SESSION_TTL); it ends earlier after
    /// SESSION_IDLE without use
    expires_at: DateTime<Utc>,
    account: AccountView,
    /// Opaque proof that this device signed in to this account (base64url,
    /// 64 characters); keep it and send it with later sign-ins. The same
    /// token comes back when one was presented
    #[schema(pattern = "^[A-Za-z0-9_-]{64}$")]
    device_token: String,
}

/// The signed-in account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Account)]
pub struct AccountView {
    id: Uuid,
    username: String,
    email: String,
}

impl AccountView {
    fn new(id: Uuid, username: &str, email: &str) -> Self {
        Self {
            id,
            username: username.to_owned(),
            email: email.to_owned(),
        }
    }
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangePassword)]
pub struct ChangePasswordBody {
    #[schema(write_only)]
    current_password: String,
    /// The sign-up password policy applies
    #[schema(min_length = 12, max_length = 128, write_only)]
    new_password: String,
}

pub async fn sign_in(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let SignInBody {
        login,
        password,
        device_token,
    } = request::json_body(request).await?;
    let raw_password = password;
    let password = Password::for_sign_in(&raw_password)
        .map_err(|e| ApiError::field("password", e.to_string()))?;
    let (account_id, login_subject) = resolve_login(state, &login).await?;
    let device_tokens = DeviceTokens::new(&state.config.secret_key);
    // A token that is not this account's is no token.
    let device = account_id
        .zip(device_token.as_deref())
        .and_then(|(account_id, token)| device_tokens.verify(account_id, token));
    let subject = device.map_or(login_subject, DeviceId::budget_subject);
    let throttle = Throttle::new(state, context, subject);
    let successes = SuccessBudgets::new(state, context, account_id);
    successes.check().await?;

    // A login that names no account reads an empty stream, so both paths
    // make the same queries before the same one hash.
    let account = state
        .commands
        .load(account_id.unwrap_or_else(Uuid::new_v4))
        .await?;
    let stored = account
        .as_ref()
        .map(|account| account.password_hash.clone());
    let reserved = throttle.reserve().await?;
    let verification = match state.hasher.verify(password, stored).await {
        Ok(verification) => verification,
        Err(shed) => {
            // Nothing was tested: not a failure.
            reserved.refund().await;
            return Err(shed.into());
        }
    };
    let Some(account) = account.filter(|_| verification.matches) else {
        reserved.keep();
        tracing::info!("sign-in refused: wrong login or password");
        return Err(ApiError::InvalidCredentials);
    };
    reserved.refund().await;
    if let Err(refused) = account.may_sign_in() {
        tracing::info!(account_id = %account.id, ?refused, "sign-in refused");
        return Err(refusal_answer(refused));
    }
    if verification.outdated {
        upgrade_hash(state, context, &account, &raw_password).await;
    }
    successes.spend().await?;
    let owner = SessionOwner {
        account_id: account.id,
        username: account.username.as_str(),
        email: account.email.as_typed(),
    };
    let (token, expires_at) = state
        .sessions
        .create(owner)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    if let Some(overtaken) = overtaken_while_signing_in(state, &account).await? {
        state
            .sessions
            .revoke(&token.storage_hash())
            .await
            .map_err(|e| ApiError::Unavailable(e.into()))?;
        return Err(overtaken);
    }
    tracing::info!(account_id = %account.id, "signed in");
    let device = device.unwrap_or_else(DeviceId::generate);
    Ok(json_response(
        StatusCode::CREATED,
        &NewSession {
            token: token.expose().to_owned(),
            expires_at,
            account: AccountView::new(
                account.id,
                account.username.as_str(),
                account.email.as_typed(),
            ),
            device_token: device_tokens.token(account.id, device),
        },
    ))
}

/// Why the session just created for `verified` (the state whose password
/// hash this sign-in checked) must not be handed out, if it must not: the
/// password was changed or reset, or the account blocked, since that state
/// was read.
///
/// A change or reset commits its `PasswordChanged` and only then revokes
/// every session in the account's index (`change_password`,
/// `password_reset::reset`); a block does the same (`admin::block`). This
/// sign-in's session was created either before that revocation, which then
/// finds it in the index and ends it, or after it. In the second case this
/// load, which starts after the create, starts after the revocation and so
/// after the commit, and sees the new credential generation or status; the
/// caller revokes the session before its token leaves. So, whatever the
/// timing, no session opened with a password outlives a change or reset of
/// that password, and a blocked account keeps none.
async fn overtaken_while_signing_in(
    state: &AppState,
    verified: &Account,
) -> Result<Option<ApiError>, ApiError> {
    let Some(now) = state.commands.load(verified.id).await? else {
        return Ok(Some(ApiError::InvalidCredentials));
    };
    if now.credential_generation() != verified.credential_generation() {
        tracing::info!(account_id = %verified.id, "sign-in refused: password changed while it ran");
        return Ok(Some(ApiError::InvalidCredentials));
    }
    Ok(now.may_sign_in().err().map(|refused| {
        tracing::info!(account_id = %verified.id, ?refused, "sign-in refused while it ran");
        refusal_answer(refused)
    }))
}

fn refusal_answer(refused: SignInRefused) -> ApiError {
    match refused {
        SignInRefused::NotActive => ApiError::AccountNotActive,
        SignInRefused::Blocked => ApiError::AccountBlocked,
    }
}

pub async fn me(state: &AppState, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let session = authenticate(state, headers).await?;
    Ok(json_response(
        StatusCode::OK,
        &AccountView::new(session.account_id, &session.username, &session.email),
    ))
}

pub async fn sign_out(state: &AppState, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let session = authenticate(state, headers).await?;
    state
        .sessions
        .revoke(&session.id)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    tracing::info!(account_id = %session.account_id, "signed out");
    Ok(no_content())
}

pub async fn sign_out_everywhere(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let session = authenticate(state, headers).await?;
    let ended = state
        .sessions
        .revoke_all(session.account_id, None)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    tracing::info!(account_id = %session.account_id, ended, "signed out everywhere");
    Ok(no_content())
}

/// `POST /api/me/password`: the signed-in owner, knowing the current
/// password, sets a new one; every other session ends.
pub async fn change_password(
    state: &AppState,
    context: &RequestContext,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let session = authenticate(state, request.headers()).await?;
    // Wrong current passwords spend the sign-in budget, per account (the
    // session names it): a stolen token must not become a way to test
    // passwords.
    let throttle = Throttle::new(state, context, account_subject(session.account_id));
    let ChangePasswordBody {
        current_password: current,
        new_password: new,
    } = request::json_body(request).await?;
    let current = Password::for_sign_in(&current)
        .map_err(|e| ApiError::field("current_password", e.to_string()))?;
    let username = Username::parse(&session.username).ok();
    let new = Password::parse(&new, username.as_ref())
        .map_err(|e| ApiError::field("new_password", e.to_string()))?;
    let Some(account) = state.commands.load(session.account_id).await? else {
        return Err(ApiError::Unauthenticated);
    };
    let reserved = throttle.reserve().await?;
    let matches = state
        .hasher
        .verify(current, Some(account.password_hash.clone()))
        .await
        .map(|verification| verification.matches);
    if let Ok(false) = matches {
        reserved.keep();
        return Err(ApiError::field(
            "current_password",
            "is not the account's current password",
        ));
    }
    // Right, or not checked at all (the hashing queue shed it).
    reserved.refund().await;
    matches?;
    let password_hash = state.hasher.hash(new).await?;
    let command = AccountCommand::ChangePassword {
        password_hash,
        notice_request_id: Uuid::now_v7(),
        at: Utc::now(),
    };
    match state
        .commands
        .execute_on(account, command, &context.event_metadata())
        .await
    {
        Ok(_) => {}
        Err(CommandError::Domain(DomainError::NotActive(_))) => {
            return Err(ApiError::AccountNotActive);
        }
        Err(other) => return Err(other.into()),
    }
    let ended = state
        .sessions
        .revoke_all(session.account_id, Some(&session.id))
        .await
        .map_err(|e| {
            tracing::error!(account_id = %session.account_id, error = %e, "password changed but other sessions not revoked");
            ApiError::Unavailable(e.into())
        })?;
    tracing::info!(account_id = %session.account_id, ended, "password changed");
    Ok(json_response(
        StatusCode::OK,
        &PasswordChanged::new("Your password has been changed and your other sessions have ended."),
    ))
}

/// The live session of the request's bearer token, or `401`.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Session, ApiError> {
    let Some(token) = request::bearer_token(headers).and_then(SessionToken::parse) else {
        return Err(ApiError::Unauthenticated);
    };
    state
        .sessions
        .authenticate(&token)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?
        .ok_or(ApiError::Unauthenticated)
}

/// The account a login names (a username or an email address, compared in
/// canonical form), and the subject of the login's failure budget: the
/// login's kind and canonical form whether or not an account holds it, so
/// the two logins of one account never share a budget and a budget's answer
/// never tells whether an account holds the login. Text that is neither
/// counts as typed, under a prefix of its own so it can never name another
/// login's budget.
async fn resolve_login(state: &AppState, login: &str) -> Result<(Option<Uuid>, String), ApiError> {
    let claim = if login.contains('@') {
        EmailAddress::parse(login)
            .ok()
            .map(|email| (ClaimKind::Email, email.canonical().to_owned()))
    } else {
        Username::parse(login)
            .ok()
            .map(|username| (ClaimKind::Username, username.canonical().to_owned()))
    };
    let Some((kind, canonical)) = claim else {
        return Ok((None, format!("text:{login}")));
    };
    let account_id = store::claim_holder(&state.pool, kind, &canonical).await?;
    Ok((account_id, format!("{}:{canonical}", kind.as_str())))
}

fn account_subject(account_id: Uuid) -> String {
    format!("account:{account_id}")
}

/// Hashes the password again with today's parameters and records it. A
/// failure only costs the upgrade (it is tried again at the next sign-in),
/// never the sign-in.
async fn upgrade_hash(
    state: &AppState,
    context: &RequestContext,
    account: &Account,
    raw_password: &str,
) {
    let upgraded = async {
        let password = Password::for_sign_in(raw_password).map_err(|e| e.to_string())?;
        let password_hash = state
            .hasher
            .hash(password)
            .await
            .map_err(|e| e.to_string())?;
        let command = AccountCommand::UpgradePasswordHash {
            replaces: account.password_hash.clone(),
            password_hash,
            at: Utc::now(),
        };
        state
            .commands
            .execute_on(account.clone(), command, &context.event_metadata())
            .await
            .map_err(|e| e.to_string())
    };
    match upgraded.await {
        Ok(executed) if !executed.events.is_empty() => {
            tracing::info!(account_id = %account.id, "password hash upgraded");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(account_id = %account.id, %error, "password hash not upgraded");
        }
    }
}
