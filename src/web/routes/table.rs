//! The route table: every row Porter's API listener serves, each with its
//! operation for the document, and the document assembled from them.

use std::sync::LazyLock;

use http::Method;
use porter_jobs::AddressAction;

use super::{Handler, Route};
use crate::{
    mail::DevMailbox,
    web::{
        AppState, activation, address_request, admin_accounts, admin_webhooks, dev_mail, feed,
        openapi::{self, Operation, Routed},
        password_reset, service, sign_in, signup,
    },
    webhooks::manage::Change,
};

const GET: &[Method] = &[Method::GET];
const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];
const DELETE: &[Method] = &[Method::DELETE];

const fn row(
    methods: &'static [Method],
    path: &'static str,
    name: &'static str,
    operation: &'static Operation,
    handler: Handler,
) -> Route {
    Route {
        methods,
        path,
        name,
        operation: Some(operation),
        handler,
    }
}

/// A row the document leaves out: another spelling of a documented path.
const fn undocumented(
    methods: &'static [Method],
    path: &'static str,
    name: &'static str,
    handler: Handler,
) -> Route {
    Route {
        methods,
        path,
        name,
        operation: None,
        handler,
    }
}

/// Every route Porter's API listener serves. The order matters only for a
/// `405`: its route name is the first row whose path fits.
pub static ROUTES: &[Route] = &[
    row(
        POST,
        "/api/users",
        "sign_up",
        &signup::OPERATION,
        |s, c, r, _| Box::pin(signup::sign_up(s, c, r)),
    ),
    row(
        GET_HEAD,
        "/activate/{key}",
        "activation_page",
        &activation::PAGE,
        |s, _, r, p| Box::pin(async move { activation::page(s, p.get("key"), r.headers()).await }),
    ),
    row(
        POST,
        "/api/activate-account/resend",
        "resend",
        &address_request::RESEND,
        |s, c, r, _| Box::pin(address_request::accept(s, c, r, AddressAction::Resend)),
    ),
    row(
        POST,
        "/api/activate-account/{key}",
        "activate",
        &activation::ACTIVATE,
        |s, c, r, p| Box::pin(activation::activate(s, c, p.get("key"), r)),
    ),
    row(
        POST,
        "/api/activate-account/{key}/cancel",
        "cancel_registration",
        &activation::CANCEL,
        |s, c, r, p| Box::pin(activation::cancel(s, c, p.get("key"), r)),
    ),
    row(
        POST,
        "/api/sessions",
        "sign_in",
        &sign_in::SIGN_IN,
        |s, c, r, _| Box::pin(sign_in::sign_in(s, c, r)),
    ),
    row(
        DELETE,
        "/api/sessions",
        "sign_out_everywhere",
        &sign_in::SIGN_OUT_EVERYWHERE,
        |s, _, r, _| Box::pin(async move { sign_in::sign_out_everywhere(s, r.headers()).await }),
    ),
    row(
        DELETE,
        "/api/sessions/current",
        "sign_out",
        &sign_in::SIGN_OUT,
        |s, _, r, _| Box::pin(async move { sign_in::sign_out(s, r.headers()).await }),
    ),
    row(GET_HEAD, "/api/me", "me", &sign_in::ME, |s, _, r, _| {
        Box::pin(async move { sign_in::me(s, r.headers()).await })
    }),
    row(
        POST,
        "/api/me/password",
        "change_password",
        &sign_in::CHANGE_PASSWORD,
        |s, c, r, _| Box::pin(sign_in::change_password(s, c, r)),
    ),
    row(
        POST,
        "/api/password-reset",
        "password_reset_request",
        &address_request::PASSWORD_RESET,
        |s, c, r, _| {
            Box::pin(address_request::accept(
                s,
                c,
                r,
                AddressAction::PasswordReset,
            ))
        },
    ),
    row(
        POST,
        "/api/password-reset/{key}",
        "password_reset",
        &password_reset::RESET,
        |s, c, r, p| Box::pin(password_reset::reset(s, c, p.get("key"), r)),
    ),
    row(
        GET_HEAD,
        "/reset-password/{key}",
        "reset_password_page",
        &password_reset::PAGE,
        |s, _, r, p| {
            Box::pin(async move { password_reset::page(s, p.get("key"), r.headers()).await })
        },
    ),
    row(
        GET_HEAD,
        "/api/openapi.json",
        "openapi",
        &service::OPENAPI,
        |_, _, _, _| Box::pin(async { Ok(service::openapi(&OPENAPI_TEXT)) }),
    ),
    row(
        GET_HEAD,
        "/healthz",
        "healthz",
        &service::HEALTH,
        |_, _, _, _| Box::pin(async { Ok(service::health()) }),
    ),
    row(
        GET_HEAD,
        "/readyz",
        "readyz",
        &service::READINESS,
        |s, _, _, _| Box::pin(service::readiness(s)),
    ),
    // The admin API: the router has checked the API key (`ADMIN_PREFIX`).
    row(
        GET,
        "/api/admin/events",
        "admin_events",
        &feed::EVENTS,
        |s, _, r, _| Box::pin(async move { feed::events(s, &r).await }),
    ),
    row(
        GET,
        "/api/admin/accounts",
        "admin_accounts",
        &admin_accounts::ACCOUNTS,
        |s, _, r, _| Box::pin(async move { admin_accounts::accounts(s, &r).await }),
    ),
    row(
        GET,
        "/api/admin/accounts/{id}",
        "admin_account",
        &admin_accounts::SHOW,
        |s, _, _, p| Box::pin(admin_accounts::show(s, p.get("id"))),
    ),
    row(
        GET,
        "/api/admin/accounts/{id}/events",
        "admin_account_events",
        &admin_accounts::HISTORY,
        |s, _, _, p| Box::pin(admin_accounts::history(s, p.get("id"))),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/resend-activation",
        "admin_resend_activation",
        &admin_accounts::RESEND_ACTIVATION,
        |s, c, r, p| Box::pin(admin_accounts::resend_activation(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/activate",
        "admin_activate",
        &admin_accounts::ACTIVATE,
        |s, c, r, p| Box::pin(admin_accounts::activate(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/block",
        "admin_block",
        &admin_accounts::BLOCK,
        |s, c, r, p| Box::pin(admin_accounts::block(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/unblock",
        "admin_unblock",
        &admin_accounts::UNBLOCK,
        |s, c, r, p| Box::pin(admin_accounts::unblock(s, c, p.get("id"), r)),
    ),
    row(
        GET,
        "/api/admin/webhooks",
        "admin_webhooks",
        &admin_webhooks::LIST,
        |s, _, _, _| Box::pin(admin_webhooks::list(s)),
    ),
    row(
        POST,
        "/api/admin/webhooks",
        "admin_webhooks",
        &admin_webhooks::ADD,
        |s, _, r, _| Box::pin(admin_webhooks::add(s, r)),
    ),
    row(
        GET,
        "/api/admin/webhooks/{id}",
        "admin_webhook",
        &admin_webhooks::SHOW,
        |s, _, _, p| Box::pin(admin_webhooks::show(s, p.get("id"))),
    ),
    row(
        DELETE,
        "/api/admin/webhooks/{id}",
        "admin_webhook",
        &admin_webhooks::REMOVE,
        |s, _, r, p| Box::pin(admin_webhooks::change(s, p.get("id"), Change::Remove, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/pause",
        "admin_webhook_pause",
        &admin_webhooks::PAUSE,
        |s, _, r, p| Box::pin(admin_webhooks::change(s, p.get("id"), Change::Pause, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/resume",
        "admin_webhook_resume",
        &admin_webhooks::RESUME,
        |s, _, r, p| Box::pin(admin_webhooks::change(s, p.get("id"), Change::Resume, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/rotate-secret",
        "admin_webhook_rotate_secret",
        &admin_webhooks::ROTATE_SECRET,
        |s, _, r, p| Box::pin(admin_webhooks::rotate_secret(s, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/replay",
        "admin_webhook_replay",
        &admin_webhooks::REPLAY,
        |s, _, r, p| Box::pin(admin_webhooks::replay(s, p.get("id"), r)),
    ),
    // `porter dev` only (`DEV_MAIL_PREFIX`).
    row(
        GET_HEAD,
        "/dev/mail",
        "dev_mail",
        &dev_mail::INDEX,
        |s, _, _, _| Box::pin(async move { dev_mail::index(mailbox(s)) }),
    ),
    undocumented(GET_HEAD, "/dev/mail/", "dev_mail", |s, _, _, _| {
        Box::pin(async move { dev_mail::index(mailbox(s)) })
    }),
    row(
        GET_HEAD,
        "/dev/mail/{id}",
        "dev_mail",
        &dev_mail::MESSAGE,
        |s, _, _, p| Box::pin(async move { dev_mail::message(mailbox(s), p.get("id")) }),
    ),
    row(
        GET_HEAD,
        "/dev/mail/{id}/html",
        "dev_mail",
        &dev_mail::MESSAGE_HTML,
        |s, _, _, p| Box::pin(async move { dev_mail::message_html(mailbox(s), p.get("id")) }),
    ),
];

/// The dev mailbox, which the `/dev/mail` rows are matched only with.
fn mailbox(state: &AppState) -> &DevMailbox {
    state
        .dev_mailbox
        .as_ref()
        .expect("/dev/mail routes are matched only with a dev mailbox")
}

/// The OpenAPI document of [`ROUTES`], built once.
pub fn openapi_document() -> &'static serde_json::Value {
    static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
        openapi::document(ROUTES.iter().filter_map(|route| {
            route.operation.map(|operation| Routed {
                path: route.path,
                methods: route.methods,
                operation,
            })
        }))
    });
    &DOCUMENT
}

/// The document as served and as `porter openapi` prints it.
pub static OPENAPI_TEXT: LazyLock<String> = LazyLock::new(|| {
    let mut text = serde_json::to_string_pretty(openapi_document()).expect("JSON");
    text.push('\n');
    text
});
