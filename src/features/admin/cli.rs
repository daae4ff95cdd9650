//! `porter accounts` and `porter api-keys`: the admin API's operations for
//! operators with a shell, printed as tables (or JSON with `--json`).
//!
//! The operations themselves are `crate::features::admin` and `crate::features::admin::api_keys`, the
//! same code the admin API runs; this module only renders their results.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::{
    domain::text::printable,
    features::admin::{AccountDetails, HistoryEntry, api_keys::ApiKey},
};

/// The actor recorded in the metadata of events `porter accounts` appends.
pub const OPERATOR_ACTOR: &str = "operator:porter-cli";

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".into(),
        |at| at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

/// One account as `field  value` lines.
pub fn render_details(details: &AccountDetails) -> String {
    let delivery = details.last_delivery.as_ref().map_or_else(
        || "-".into(),
        |delivery| {
            let reason = delivery
                .reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default();
            format!("{} {}{reason}", delivery.outcome, time(Some(delivery.at)))
        },
    );
    let rows = [
        ("id", details.id.to_string()),
        ("status", details.status.to_owned()),
        ("username", details.username.clone()),
        ("email", details.email.clone()),
        ("locale", details.locale.clone()),
        ("registered", time(Some(details.registered_at))),
        ("activated", time(details.activated_at)),
        ("blocked", time(details.blocked_at)),
        (
            "block reason",
            details.block_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("ended", time(details.ended_at)),
        ("emails sent", details.emails_sent.to_string()),
        ("last delivery", delivery),
        ("contested", details.contested.to_string()),
        ("version", details.version.to_string()),
    ];
    let mut text = String::new();
    for (field, value) in rows {
        let _ = writeln!(text, "{field:<14} {}", printable(&value));
    }
    text
}

/// An account's history, one event a line.
pub fn render_history(events: &[HistoryEntry]) -> String {
    let mut text = format!(
        "{:>9}  {:>3}  {:<21}  {:<28}  DATA\n",
        "POSITION", "VER", "RECORDED (UTC)", "TYPE"
    );
    for event in events {
        let _ = writeln!(
            text,
            "{:>9}  {:>3}  {:<21}  {:<28}  {}",
            event.position,
            event.version,
            time(Some(event.recorded_at)),
            event.event_type,
            printable(&event.data.to_string())
        );
    }
    text
}

/// API keys, never their secrets.
pub fn render_keys(keys: &[ApiKey]) -> String {
    let mut text = format!(
        "{:<36}  {:<20}  {:<21}  {:<21}  REVOKED\n",
        "ID", "NAME", "CREATED (UTC)", "LAST USED"
    );
    for key in keys {
        let _ = writeln!(
            text,
            "{:<36}  {:<20}  {:<21}  {:<21}  {}",
            key.id,
            printable(&key.name),
            time(Some(key.created_at)),
            time(key.last_used_at),
            time(key.revoked_at)
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::domain::text::test_support::{HOSTILE, assert_printable};

    #[test]
    fn details_history_and_keys_show_control_characters_escaped() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let details = AccountDetails {
            id: Uuid::nil(),
            status: "blocked",
            username: "ada".into(),
            email: "ada@example.com".into(),
            locale: "en".into(),
            registered_at: at,
            activated_at: Some(at),
            blocked_at: Some(at),
            block_reason: Some(HOSTILE.into()),
            ended_at: None,
            emails_sent: 1,
            last_delivery: None,
            contested: false,
            version: 3,
        };
        let text = render_details(&details);
        assert_printable(&text);
        assert_eq!(text.lines().count(), 14, "one line a field: {text}");
        let history = [HistoryEntry {
            position: 1,
            version: 3,
            event_type: "AccountBlocked",
            recorded_at: at,
            data: json!({ "reason": HOSTILE }),
            metadata: json!({}),
        }];
        let text = render_history(&history);
        assert!(
            !text.contains('\u{202e}') && !text.contains('\u{9b}'),
            "{text:?}"
        );
        let keys = [ApiKey {
            id: Uuid::nil(),
            name: HOSTILE.into(),
            created_at: at,
            last_used_at: None,
            revoked_at: None,
        }];
        assert_printable(&render_keys(&keys));
    }
}
