//! Activation links: a harmless page, the confirming `POST`, and "This
//! wasn't me".
//!
//! `GET /activate/{key}` only renders a page naming the registration the
//! link confirms, so mail scanners and link previews that fetch the URL
//! cannot consume the key or cancel anything. The `POST`s change state: one
//! appends `AccountActivated` (a contested registration also needs the
//! password chosen at its sign-up), the other `RegistrationCancelled`, which
//! releases the registration's claims. The key stays until its TTL, so a
//! second click is told "already active" (the aggregate makes the second
//! confirmation a no-op, not the key).
//!
//! Every unusable link (malformed, unknown, expired, revoked, or of a
//! registration that was superseded, cancelled or expired) gets the same
//! `410`, so responses reveal nothing about which keys exist. A live key is
//! looked up before any failure budget is consulted, so other people's
//! failures from a shared address never refuse it with `429`.
//!
//! Pages are in the locale of the registration the link belongs to, and for
//! an unusable link in the browser's (`Accept-Language`).

use chrono::Utc;
use http::{HeaderMap, Response, StatusCode};
use hyper::{Request, body::Incoming};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::platform::{
    http::{
        context::RequestContext,
        openapi::{self, Answer, Auth, BodyType, Content, Operation, Parameter, RequestBody, Tag},
        request::{self, NoFields},
        request_locale,
        response::{ApiError, Body, html_response, json_response},
    },
    services::AppState,
};
use crate::{
    domain::{Account, AccountCommand, AccountStatus, DomainError, LinkKey, Locale, Password},
    platform::{commands::CommandError, link_keys::KeyGrant, mail::Page, rate_limit::Budget},
};

const KEY: Parameter = Parameter::path(
    "key",
    "The 32-character activation key from the email",
    || openapi::pattern("^[A-Za-z0-9]{32}$"),
);
const INVALID: &str = "Unknown, malformed, expired or revoked key, or a registration that was \
    superseded, cancelled or expired; one uniform answer with a hint to ask for a new link";
const TOO_MANY_FAILURES: Answer = Answer::error(429, "Too many unusable links from this client");

pub static PAGE: Operation = Operation {
    id: "activation_page",
    tag: Tag::SignUp,
    summary: "The page behind the emailed link",
    description: "Names the registration the link confirms and offers to confirm or cancel \
        it; it changes nothing, so link scanners cannot spend the key.",
    auth: Auth::Public,
    parameters: &[KEY],
    body: RequestBody::None,
    answers: &[
        Answer::new(
            200,
            "The confirmation page (or: already active)",
            Content::Page,
        ),
        Answer::new(410, INVALID, Content::Page),
    ],
};

pub static ACTIVATE: Operation = Operation {
    id: "activate",
    tag: Tag::SignUp,
    summary: "Confirm the address: activate the account",
    description: "A registration that superseded another one of the same address also needs \
        the password chosen at its sign-up. Confirming again answers `already_active`.",
    auth: Auth::Public,
    parameters: &[KEY],
    body: RequestBody::JsonOrForm(BodyType::of::<ConfirmBody>()),
    answers: &[
        Answer::new(
            200,
            "Active",
            Content::JsonOrPage(BodyType::of::<Activated>()),
        ),
        Answer::new(
            403,
            "The registration is contested and needs its password (`password_required`)",
            Content::ErrorOrPage,
        ),
        Answer::new(410, INVALID, Content::ErrorOrPage),
        TOO_MANY_FAILURES,
    ],
};

pub static CANCEL: Operation = Operation {
    id: "cancel_registration",
    tag: Tag::SignUp,
    summary: "\"This wasn't me\": cancel the pending registration",
    description: "Releases its username and address.",
    auth: Auth::Public,
    parameters: &[KEY],
    body: RequestBody::Empty,
    answers: &[
        Answer::new(
            200,
            "Cancelled",
            Content::JsonOrPage(BodyType::of::<Cancelled>()),
        ),
        Answer::new(410, INVALID, Content::ErrorOrPage),
        TOO_MANY_FAILURES,
    ],
};

/// A live key and the pending or active registration it belongs to.
struct Link {
    key: LinkKey,
    grant: KeyGrant,
    account: Account,
}

/// Resolves `raw_key` to a usable link, or `None` for every kind of
/// unusable one.
async fn resolve(state: &AppState, raw_key: &str) -> Result<Option<Link>, ApiError> {
    let Ok(key) = LinkKey::parse(raw_key) else {
        return Ok(None);
    };
    let grant = state
        .activation_keys
        .lookup(&key)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let Some(grant) = grant else {
        return Ok(None);
    };
    let account = state.commands.load(grant.account_id).await?;
    Ok(account
        .filter(|account| !account.status.is_ended())
        .map(|account| Link {
            key,
            grant,
            account,
        }))
}

impl Link {
    /// The locale the registration chose at sign-up.
    fn locale<'a>(&self, state: &'a AppState) -> &'a Locale {
        state.templates.locale_for(&self.account.locale)
    }
}

pub async fn page(
    state: &AppState,
    raw_key: &str,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let Some(link) = resolve(state, raw_key).await? else {
        return link_invalid(state, headers, true);
    };
    if link.account.status == AccountStatus::Active {
        return activated_page(state, link.locale(state), true);
    }
    confirmation_page(state, &link, StatusCode::OK, false)
}

fn confirmation_page(
    state: &AppState,
    link: &Link,
    status: StatusCode,
    wrong_password: bool,
) -> Result<Response<Body>, ApiError> {
    let html = state
        .templates
        .render_page(
            link.locale(state),
            Page::Activate,
            &json!({
                "key": link.key.expose(),
                "username": link.account.username.as_str(),
                "requested_at": link.account.registered_at,
                "contested": link.account.is_contested(),
                "wrong_password": wrong_password,
            }),
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(status, html))
}

/// What confirming a link may need.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConfirmActivation)]
pub struct ConfirmBody {
    /// The password chosen at this registration's sign-up; needed only when
    /// the registration is contested
    #[schema(write_only)]
    password: Option<String>,
}

/// A confirmed link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activated {
    #[schema(inline)]
    status: ActiveStatus,
    already_active: bool,
    message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ActiveStatus {
    Active,
}

/// A cancelled sign-up.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancelled {
    #[schema(inline)]
    status: CancelledStatus,
    message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum CancelledStatus {
    Cancelled,
}

pub async fn activate(
    state: &AppState,
    context: &RequestContext,
    raw_key: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = request.headers().clone();
    let (ConfirmBody { password }, format) = request::optional_body(request).await?;
    let wants_html = request::answers_with_page(&headers, format);
    let Some(link) = resolve(state, raw_key).await? else {
        return refuse_unusable_link(state, context, &headers, wants_html).await;
    };
    let contested = link.account.activation_needs_password();
    let password_confirmed = contested && confirm_password(state, context, &link, password).await?;
    if contested && !password_confirmed {
        tracing::info!(account_id = %link.account.id, "contested activation without its password");
        if wants_html {
            return confirmation_page(state, &link, StatusCode::FORBIDDEN, true);
        }
        return Err(ApiError::PasswordRequired);
    }
    let command = AccountCommand::Activate {
        request_id: link.grant.request_id,
        at: Utc::now(),
        password_confirmed,
    };
    let locale = link.locale(state);
    context.commit_begins();
    let executed = match state
        .commands
        .execute_on(link.account, command, &context.event_metadata())
        .await
    {
        Ok(executed) => executed,
        Err(CommandError::Domain(DomainError::PasswordRequired)) => {
            return Err(ApiError::PasswordRequired);
        }
        // Superseded, cancelled or expired between the lookup and the append.
        Err(CommandError::Domain(_)) => return link_invalid(state, &headers, wants_html),
        Err(e) => return Err(e.into()),
    };
    let already_active = executed.events.is_empty();
    if already_active {
        tracing::info!(account_id = %executed.account.id, "activation repeated");
    } else {
        tracing::info!(account_id = %executed.account.id, "activation succeeded");
    }
    if wants_html {
        return activated_page(state, locale, already_active);
    }
    let message = if already_active {
        "Your account was already active."
    } else {
        "Your account is active. You can now sign in."
    };
    Ok(json_response(
        StatusCode::OK,
        &Activated {
            status: ActiveStatus::Active,
            already_active,
            message,
        },
    ))
}

/// Checks the password sent along for a contested registration on the
/// hashing threads. Guessing it is bounded by the failed-confirmation
/// budget: one unit is reserved before the hash and given back when the
/// password matches, so a concurrent burst hashes no more guesses than the
/// budget holds.
async fn confirm_password(
    state: &AppState,
    context: &RequestContext,
    link: &Link,
    password: Option<String>,
) -> Result<bool, ApiError> {
    let reservation = state
        .rate_limiter
        .reserve(
            Budget::FailedActivationPerIp,
            state.config.limits.failed_activation_per_ip,
            &context.client_ip.to_string(),
        )
        .await?;
    let verified = match password.as_deref().map(Password::for_sign_in) {
        Some(Ok(password)) => state
            .hasher
            .verify(password, Some(link.account.password_hash.clone()))
            .await
            .map(|verification| verification.matches),
        _ => Ok(false),
    };
    match verified {
        Ok(false) => reservation.keep(),
        // Matched, or never checked (the hashing queue shed it).
        Ok(true) | Err(_) => reservation.refund().await,
    }
    Ok(verified?)
}

/// "This wasn't me": cancels the pending registration the link belongs to,
/// which releases its username and address.
pub async fn cancel(
    state: &AppState,
    context: &RequestContext,
    raw_key: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = request.headers().clone();
    let (NoFields {}, format) = request::optional_body(request).await?;
    let wants_html = request::answers_with_page(&headers, format);
    let Some(link) = resolve(state, raw_key).await? else {
        return refuse_unusable_link(state, context, &headers, wants_html).await;
    };
    let locale = link.locale(state);
    context.commit_begins();
    let command = AccountCommand::Cancel {
        request_id: link.grant.request_id,
        at: Utc::now(),
    };
    match state
        .commands
        .execute_on(link.account, command, &context.event_metadata())
        .await
    {
        Ok(executed) => {
            tracing::info!(account_id = %executed.account.id, "registration cancelled by the address's owner");
        }
        // Active (nothing to cancel) or ended meanwhile: the link is spent.
        Err(CommandError::Domain(_)) => return link_invalid(state, &headers, wants_html),
        Err(e) => return Err(e.into()),
    }
    if wants_html {
        let html = state
            .templates
            .render_page(locale, Page::Cancelled, &json!({}))
            .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(html_response(StatusCode::OK, html));
    }
    Ok(json_response(
        StatusCode::OK,
        &Cancelled {
            status: CancelledStatus::Cancelled,
            message: "The sign-up was cancelled; its username and address are free again.",
        },
    ))
}

/// A `POST` with an unusable link: charged to the client's failure budget
/// (a client that keeps failing is refused with `429`), then the uniform
/// `410`.
async fn refuse_unusable_link(
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    wants_html: bool,
) -> Result<Response<Body>, ApiError> {
    tracing::info!("activation link refused: unknown, expired, revoked or ended");
    state
        .rate_limiter
        .admit(
            Budget::FailedActivationPerIp,
            state.config.limits.failed_activation_per_ip,
            &context.client_ip.to_string(),
        )
        .await?;
    link_invalid(state, headers, wants_html)
}

fn activated_page(
    state: &AppState,
    locale: &Locale,
    already_active: bool,
) -> Result<Response<Body>, ApiError> {
    let html = state
        .templates
        .render_page(
            locale,
            Page::Activated,
            &json!({ "already_active": already_active }),
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::OK, html))
}

fn link_invalid(
    state: &AppState,
    headers: &HeaderMap,
    wants_html: bool,
) -> Result<Response<Body>, ApiError> {
    if !wants_html {
        return Err(ApiError::LinkInvalid);
    }
    let locale = request_locale::negotiate(&state.templates, headers);
    let html = state
        .templates
        .render_page(locale, Page::LinkInvalid, &json!({}))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(html_response(StatusCode::GONE, html))
}
