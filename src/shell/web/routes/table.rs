//! The route table: every row Porter's API listener serves, each with its
//! operation for the document, and the document assembled from them.

use std::sync::LazyLock;

use http::Method;
use porter_jobs::AddressAction;

use super::{Handler, Route};
use crate::{
    features::{
        activation, address_requests, admin, emails::dev_mail, password_reset, public_events,
        sign_in, sign_up, webhooks, webhooks::manage::Change,
    },
    platform::{
        http::openapi::{self, Operation, Routed},
        mail::DevMailbox,
        services::AppState,
    },
    shell::web::service,
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
        &sign_up::http::OPERATION,
        |s, c, r, _| Box::pin(sign_up::http::sign_up(s, c, r)),
    ),
    row(
        GET_HEAD,
        "/activate/{key}",
        "activation_page",
        &activation::http::PAGE,
        |s, _, r, p| {
            Box::pin(async move { activation::http::page(s, p.get("key"), r.headers()).await })
        },
    ),
    row(
        POST,
        "/api/activate-account/resend",
        "resend",
        &address_requests::http::RESEND,
        |s, c, r, _| {
            Box::pin(address_requests::http::accept(
                s,
                c,
                r,
                AddressAction::Resend,
            ))
        },
    ),
    row(
        POST,
        "/api/activate-account/{key}",
        "activate",
        &activation::http::ACTIVATE,
        |s, c, r, p| Box::pin(activation::http::activate(s, c, p.get("key"), r)),
    ),
    row(
        POST,
        "/api/activate-account/{key}/cancel",
        "cancel_registration",
        &activation::http::CANCEL,
        |s, c, r, p| Box::pin(activation::http::cancel(s, c, p.get("key"), r)),
    ),
    row(
        POST,
        "/api/sessions",
        "sign_in",
        &sign_in::http::SIGN_IN,
        |s, c, r, _| Box::pin(sign_in::http::sign_in(s, c, r)),
    ),
    row(
        DELETE,
        "/api/sessions",
        "sign_out_everywhere",
        &sign_in::http::SIGN_OUT_EVERYWHERE,
        |s, _, r, _| {
            Box::pin(async move { sign_in::http::sign_out_everywhere(s, r.headers()).await })
        },
    ),
    row(
        DELETE,
        "/api/sessions/current",
        "sign_out",
        &sign_in::http::SIGN_OUT,
        |s, _, r, _| Box::pin(async move { sign_in::http::sign_out(s, r.headers()).await }),
    ),
    row(
        GET_HEAD,
        "/api/me",
        "me",
        &sign_in::http::ME,
        |s, _, r, _| Box::pin(async move { sign_in::http::me(s, r.headers()).await }),
    ),
    row(
        POST,
        "/api/me/password",
        "change_password",
        &sign_in::http::CHANGE_PASSWORD,
        |s, c, r, _| Box::pin(sign_in::http::change_password(s, c, r)),
    ),
    row(
        POST,
        "/api/password-reset",
        "password_reset_request",
        &address_requests::http::PASSWORD_RESET,
        |s, c, r, _| {
            Box::pin(address_requests::http::accept(
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
        &password_reset::http::RESET,
        |s, c, r, p| Box::pin(password_reset::http::reset(s, c, p.get("key"), r)),
    ),
    row(
        GET_HEAD,
        "/reset-password/{key}",
        "reset_password_page",
        &password_reset::http::PAGE,
        |s, _, r, p| {
            Box::pin(async move { password_reset::http::page(s, p.get("key"), r.headers()).await })
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
        &public_events::http::EVENTS,
        |s, _, r, _| Box::pin(async move { public_events::http::events(s, &r).await }),
    ),
    row(
        GET,
        "/api/admin/accounts",
        "admin_accounts",
        &admin::http::ACCOUNTS,
        |s, _, r, _| Box::pin(async move { admin::http::accounts(s, &r).await }),
    ),
    row(
        GET,
        "/api/admin/accounts/{id}",
        "admin_account",
        &admin::http::SHOW,
        |s, _, _, p| Box::pin(admin::http::show(s, p.get("id"))),
    ),
    row(
        GET,
        "/api/admin/accounts/{id}/events",
        "admin_account_events",
        &admin::http::HISTORY,
        |s, _, _, p| Box::pin(admin::http::history(s, p.get("id"))),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/resend-activation",
        "admin_resend_activation",
        &admin::http::RESEND_ACTIVATION,
        |s, c, r, p| Box::pin(admin::http::resend_activation(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/activate",
        "admin_activate",
        &admin::http::ACTIVATE,
        |s, c, r, p| Box::pin(admin::http::activate(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/block",
        "admin_block",
        &admin::http::BLOCK,
        |s, c, r, p| Box::pin(admin::http::block(s, c, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/accounts/{id}/unblock",
        "admin_unblock",
        &admin::http::UNBLOCK,
        |s, c, r, p| Box::pin(admin::http::unblock(s, c, p.get("id"), r)),
    ),
    row(
        GET,
        "/api/admin/webhooks",
        "admin_webhooks",
        &webhooks::http::LIST,
        |s, _, _, _| Box::pin(webhooks::http::list(s)),
    ),
    row(
        POST,
        "/api/admin/webhooks",
        "admin_webhooks",
        &webhooks::http::ADD,
        |s, _, r, _| Box::pin(webhooks::http::add(s, r)),
    ),
    row(
        GET,
        "/api/admin/webhooks/{id}",
        "admin_webhook",
        &webhooks::http::SHOW,
        |s, _, _, p| Box::pin(webhooks::http::show(s, p.get("id"))),
    ),
    row(
        DELETE,
        "/api/admin/webhooks/{id}",
        "admin_webhook",
        &webhooks::http::REMOVE,
        |s, _, r, p| Box::pin(webhooks::http::change(s, p.get("id"), Change::Remove, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/pause",
        "admin_webhook_pause",
        &webhooks::http::PAUSE,
        |s, _, r, p| Box::pin(webhooks::http::change(s, p.get("id"), Change::Pause, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/resume",
        "admin_webhook_resume",
        &webhooks::http::RESUME,
        |s, _, r, p| Box::pin(webhooks::http::change(s, p.get("id"), Change::Resume, r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/rotate-secret",
        "admin_webhook_rotate_secret",
        &webhooks::http::ROTATE_SECRET,
        |s, _, r, p| Box::pin(webhooks::http::rotate_secret(s, p.get("id"), r)),
    ),
    row(
        POST,
        "/api/admin/webhooks/{id}/replay",
        "admin_webhook_replay",
        &webhooks::http::REPLAY,
        |s, _, r, p| Box::pin(webhooks::http::replay(s, p.get("id"), r)),
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
        openapi::document(
            ROUTES.iter().filter_map(|route| {
                route.operation.map(|operation| Routed {
                    path: route.path,
                    methods: route.methods,
                    operation,
                })
            }),
            public_events::api_description::section,
        )
    });
    &DOCUMENT
}

/// The document as served and as `porter openapi` prints it.
pub static OPENAPI_TEXT: LazyLock<String> = LazyLock::new(|| {
    let mut text = serde_json::to_string_pretty(openapi_document()).expect("JSON");
    text.push('\n');
    text
});
