//! What Porter renders: the emails and pages every locale must have, the
//! files each maps to, and sample contexts covering every branch of them (the
//! start-up check and `porter templates preview` render with these).

use serde_json::{Value, json};

/// Which email to render; each maps to a folder of each locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    /// `activation/`: context `username`, `link`, `expires_in` (seconds,
    /// for `{{duration}}`), `expires_at` (RFC 3339, for `{{datetime}}`).
    Activation,
    /// `already-registered/`: context `username` and optional `link`
    /// (present while the account is still pending).
    AlreadyRegistered,
    /// `password-reset/`: context `username`, `link`, `expires_in`,
    /// `expires_at` (as for `Activation`).
    PasswordReset,
    /// `password-changed/`: context `username`.
    PasswordChanged,
}

impl EmailKind {
    /// Every kind; the start-up check renders each.
    pub const ALL: [Self; 4] = [
        Self::Activation,
        Self::AlreadyRegistered,
        Self::PasswordReset,
        Self::PasswordChanged,
    ];

    /// The folder of its `subject.hbs`, `body.txt.hbs`, `body.html.hbs`.
    pub const fn folder(self) -> &'static str {
        match self {
            Self::Activation => "activation",
            Self::AlreadyRegistered => "already-registered",
            Self::PasswordReset => "password-reset",
            Self::PasswordChanged => "password-changed",
        }
    }

    /// Contexts covering each branch of the templates, for the start-up
    /// check and `porter templates preview`.
    pub fn samples(self) -> Vec<Value> {
        let link = "https://porter.example/activate/Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0";
        match self {
            Self::Activation => vec![json!({
                "username": "alice",
                "link": link,
                "expires_in": 900,
                "expires_at": "2026-12-03T09:15:00Z",
            })],
            Self::AlreadyRegistered => vec![
                json!({ "username": "alice", "link": link }),
                json!({ "username": "alice" }),
            ],
            Self::PasswordReset => vec![json!({
                "username": "alice",
                "link": "https://porter.example/reset-password/Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                "expires_in": 1800,
                "expires_at": "2026-12-03T09:45:00Z",
            })],
            Self::PasswordChanged => vec![json!({ "username": "alice" })],
        }
    }
}

/// Which HTML page to render (`pages/` of each locale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Context `key`, `username`, `requested_at` (RFC 3339 or null),
    /// `contested` (bool: ask for the password) and `wrong_password` (bool):
    /// names the registration, posts to `/api/activate-account/{key}`, and
    /// offers "This wasn't me" (`…/{key}/cancel`); rendering it changes
    /// nothing.
    Activate,
    /// No context fields: the registration was cancelled.
    Cancelled,
    /// Context `already_active` (bool).
    Activated,
    /// No context fields: the uniform page for an unusable link (410).
    LinkInvalid,
    /// Context `key` and optional `error` (what is wrong with the password
    /// tried): a form that posts a new password to
    /// `/api/password-reset/{key}`; rendering it changes nothing.
    ResetPassword,
    /// No context fields: the password was set.
    PasswordReset,
    /// No context fields: the uniform page for an unusable reset link (410).
    ResetLinkInvalid,
}

impl Page {
    /// Every page; the start-up check renders each.
    pub const ALL: [Self; 7] = [
        Self::Activate,
        Self::Cancelled,
        Self::Activated,
        Self::LinkInvalid,
        Self::ResetPassword,
        Self::PasswordReset,
        Self::ResetLinkInvalid,
    ];

    /// Its name below `pages/`, without `.html.hbs`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Cancelled => "cancelled",
            Self::Activated => "activated",
            Self::LinkInvalid => "link-invalid",
            Self::ResetPassword => "reset-password",
            Self::PasswordReset => "password-reset",
            Self::ResetLinkInvalid => "reset-link-invalid",
        }
    }

    /// Contexts covering each branch, like [`EmailKind::samples`].
    pub fn samples(self) -> Vec<Value> {
        match self {
            Self::Activate => {
                let page = |contested: bool, wrong_password: bool, requested_at: Value| {
                    json!({
                        "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                        "username": "alice",
                        "requested_at": requested_at,
                        "contested": contested,
                        "wrong_password": wrong_password,
                    })
                };
                let at = json!("2026-12-03T09:12:00Z");
                vec![
                    page(false, false, at.clone()),
                    page(true, false, at.clone()),
                    page(true, true, at),
                    page(false, false, Value::Null),
                ]
            }
            Self::Cancelled => vec![json!({})],
            Self::Activated => vec![
                json!({ "already_active": false }),
                json!({ "already_active": true }),
            ],
            Self::LinkInvalid | Self::PasswordReset | Self::ResetLinkInvalid => vec![json!({})],
            Self::ResetPassword => vec![
                json!({ "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0", "error": null }),
                json!({
                    "key": "Zx81kQp0aB3cD4eF5gH6iJ7kL8mN9oP0",
                    "error": "must be at least 12 characters",
                }),
            ],
        }
    }

    pub(super) fn file(self) -> String {
        format!("pages/{}.html.hbs", self.name())
    }
}
