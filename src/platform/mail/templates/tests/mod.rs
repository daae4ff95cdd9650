//! Tests of the templates, with the fixtures they share: rendering what
//! Porter sends and serves (`render`), and loading, overriding and checking
//! the files at start (`load`). The transport's tests render their emails
//! with `render` too.

mod load;
mod render;

use serde_json::{Value, json};

use super::*;
use crate::platform::config::{Brand, TemplatesConfig};

fn config() -> TemplatesConfig {
    TemplatesConfig {
        dir: None,
        default_locale: Locale::english(),
        brand: Brand {
            product_name: "Porter".into(),
            support_url: None,
            support_email: None,
        },
    }
}

fn templates() -> Templates {
    Templates::load(&config()).expect("built-in templates pass the check")
}

fn en() -> Locale {
    Locale::english()
}

fn de() -> Locale {
    Locale::parse("de").expect("tag")
}

pub(in crate::platform::mail) fn activation_ctx() -> Value {
    json!({
        "username": "alice",
        "link": "https://porter.example.com/activate/Zx81kQp0aB3cD4eF5gH6",
        "expires_in": 1800,
        "expires_at": "2026-12-03T09:15:00Z",
    })
}

pub(in crate::platform::mail) fn render(kind: EmailKind, ctx: &Value) -> RenderedEmail {
    templates().render_email(&en(), kind, ctx).expect("renders")
}
