//! `porter events`: the event log, readable, with personal data masked.
//!
//! Events are listed in the log's global order `(tx_id, position)`, the order
//! every reader applies them in. By default email addresses and usernames are
//! masked (`a***@example.com`, `u***`), also inside free text such as an SMTP
//! error; `--reveal` shows them. Password hashes are never printed, not even
//! with `--reveal`: nothing an operator does needs one.
//!
//! `--follow` reads like the projector, only below the oldest running
//! transaction, so an event that commits late is still printed, in order.

use std::{io::Write, time::Duration};

use serde_json::{Map, Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{
        masking::{mask_addresses_in, mask_email, mask_name},
        text::printable,
    },
    platform::store::{self, Cursor, EventFilter, RecordedEvent},
};

/// How often `--follow` polls for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    JsonLines,
}

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub filter: EventFilter,
    /// Start after the event at this position (0: from the first event).
    pub after: i64,
    pub limit: i64,
    pub follow: bool,
    pub format: Format,
    pub reveal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("there is no event at position {0}")]
    NoSuchPosition(i64),
    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("read events: {0}")]
    Database(#[from] sqlx::Error),
}

/// The place in the global order just after the event at `position`.
pub async fn cursor_after(pool: &PgPool, position: i64) -> Result<Cursor, EventsError> {
    if position <= 0 {
        return Ok(Cursor::default());
    }
    store::cursor_at(pool, position)
        .await?
        .ok_or(EventsError::NoSuchPosition(position))
}

/// Lists events to `out`; with `follow`, keeps printing new ones until
/// `cancel`.
pub async fn run(
    pool: &PgPool,
    options: &ListOptions,
    out: &mut dyn Write,
    cancel: &CancellationToken,
) -> Result<(), EventsError> {
    let mut cursor = cursor_after(pool, options.after).await?;
    if options.format == Format::Table {
        writeln!(out, "{}", table_header())?;
    }
    let limit = options.limit.max(1);
    loop {
        let events =
            store::read_events(pool, &options.filter, cursor, limit, options.follow).await?;
        for event in &events {
            let line = match options.format {
                Format::Table => table_row(event, options.reveal),
                Format::JsonLines => json_line(event, options.reveal),
            };
            writeln!(out, "{line}")?;
            cursor = event.cursor();
        }
        out.flush()?;
        if !options.follow {
            return Ok(());
        }
        if events.len() as i64 == limit {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = cancel.cancelled() => return Ok(()),
        }
    }
}

pub fn table_header() -> String {
    format!(
        "{:>9}  {:<20}  {:<44}  {:>3}  {:<31}  {:>1}  PAYLOAD",
        "POSITION", "RECORDED (UTC)", "STREAM", "VER", "TYPE", "V"
    )
}

/// One event as a table row: its place, stream, type and masked payload.
pub fn table_row(event: &RecordedEvent, reveal: bool) -> String {
    format!(
        "{:>9}  {:<20}  {:<44}  {:>3}  {:<31}  {:>1}  {}",
        event.position,
        event.recorded_at.format("%Y-%m-%d %H:%M:%SZ"),
        event.stream_id,
        event.version,
        event.event_type,
        event.schema_version,
        printable(&redact(&event.payload, reveal).to_string()),
    )
}

/// One event as a JSON object on one line, payload and metadata masked.
pub fn json_line(event: &RecordedEvent, reveal: bool) -> String {
    json!({
        "position": event.position,
        "tx_id": event.tx_id.0.to_string(),
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": event.version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_at,
        "payload": redact(&event.payload, reveal),
        "metadata": redact(&event.metadata, reveal),
    })
    .to_string()
}

/// A payload fit to print: fields holding a password are removed whatever
/// `reveal` says; unless `reveal`, email and username fields are masked, and
/// so is anything shaped like an email address in other strings.
pub fn redact(value: &Value, reveal: bool) -> Value {
    match value {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                if key.contains("password") {
                    continue;
                }
                let value = match value {
                    Value::String(text) if !reveal && key.starts_with("email") => {
                        Value::String(mask_email(text))
                    }
                    Value::String(text) if !reveal && key.starts_with("username") => {
                        Value::String(mask_name(text))
                    }
                    other => redact(other, reveal),
                };
                out.insert(key.clone(), value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, reveal)).collect()),
        Value::String(text) if !reveal => Value::String(mask_addresses_in(text)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::{domain::text::test_support::HOSTILE, platform::store::TxId};

    fn registered() -> RecordedEvent {
        RecordedEvent {
            position: 42,
            tx_id: TxId(900),
            event_id: Uuid::from_u128(1),
            stream_id: "account-00000000-0000-0000-0000-000000000007".into(),
            version: 1,
            event_type: "AccountRegistered".into(),
            schema_version: 1,
            payload: json!({
                "account_id": "00000000-0000-0000-0000-000000000007",
                "username": "Ada",
                "username_canonical": "ada",
                "email": "Ada.Lovelace@Example.com",
                "email_canonical": "ada.lovelace@example.com",
                "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                "locale": "en",
            }),
            metadata: json!({"request_id": "r-1", "client_ip_hash": "0badc0de"}),
            recorded_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
        }
    }

    #[test]
    fn personal_data_is_masked_and_password_hashes_never_print() {
        let event = registered();
        for line in [table_row(&event, false), json_line(&event, false)] {
            assert!(line.contains("A***@Example.com"), "{line}");
            assert!(line.contains("a***@example.com"), "{line}");
            assert!(line.contains("\"username\":\"A***\""), "{line}");
            assert!(!line.contains("Lovelace"), "{line}");
            assert!(
                !line.contains("\"Ada\"") && !line.contains("\"ada\""),
                "{line}"
            );
            assert!(!line.contains("password"), "{line}");
            assert!(!line.contains("argon2"), "{line}");
        }
        let revealed = json_line(&event, true);
        assert!(revealed.contains("Ada.Lovelace@Example.com"), "{revealed}");
        assert!(!revealed.contains("argon2"), "{revealed}");
        assert!(!revealed.contains("password"), "{revealed}");
    }

    #[test]
    fn table_rows_carry_position_stream_and_type() {
        let row = table_row(&registered(), false);
        assert!(
            row.trim_start().starts_with("42  2027-01-15 08:00:00Z"),
            "{row}"
        );
        assert!(row.contains("AccountRegistered"), "{row}");
        assert!(row.contains("account-00000000-0000-0000-0000-000000000007"));
        let json: Value = serde_json::from_str(&json_line(&registered(), false)).expect("JSON");
        assert_eq!(json["position"], 42);
        assert_eq!(json["tx_id"], "900");
        assert_eq!(json["metadata"]["client_ip_hash"], "0badc0de");
    }

    #[test]
    fn addresses_inside_free_text_are_masked_unless_revealed() {
        let failed = json!({"reason": "refused: jo@example.net", "permanent": true});
        assert_eq!(
            redact(&failed, false),
            json!({"reason": "refused: j***@example.net", "permanent": true})
        );
        assert_eq!(redact(&failed, true), failed);
    }

    #[test]
    fn table_rows_show_terminal_controls_escaped() {
        let mut blocked = registered();
        blocked.event_type = "AccountBlocked".into();
        blocked.payload = json!({ "reason": HOSTILE });
        let row = table_row(&blocked, true);
        assert!(
            !row.contains('\u{9b}') && !row.contains('\u{202e}'),
            "{row:?}"
        );
    }
}
