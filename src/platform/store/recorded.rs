//! The log as read back: a recorded event and the cursor that orders it.
//!
//! Postgres orders the log by `(tx_id, position)`, where `tx_id` is an
//! `xid8` that sqlx reads only as text; the one conversion from that text
//! lives here so no reader can rewind a cursor by mis-parsing it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{AccountEvent, DecodeError};

/// An event as read back from the log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedEvent {
    pub position: i64,
    /// The writing transaction id (`xid8`, read as text and parsed).
    #[sqlx(try_from = "String")]
    pub tx_id: TxId,
    pub event_id: Uuid,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<AccountEvent, DecodeError> {
        AccountEvent::decode(&self.event_type, self.schema_version, self.payload.clone())
    }

    /// The account whose stream holds this event.
    pub fn account_id(&self) -> Option<Uuid> {
        self.stream_id
            .strip_prefix("account-")
            .and_then(|id| Uuid::parse_str(id).ok())
    }

    /// The cursor just past this event.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tx_id: self.tx_id,
            position: self.position,
        }
    }
}

/// A Postgres `xid8`: 64-bit, never wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TxId(pub u64);

/// `xid8` has no Rust type in sqlx, so every statement reads it as text; this
/// is the one place that text becomes a [`TxId`]. A value that does not parse
/// is a decoding error, never a silent 0 (which would rewind a cursor to the
/// start of the log).
impl TryFrom<String> for TxId {
    type Error = sqlx::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(TxId).map_err(|e| {
            sqlx::Error::Decode(
                anyhow::Error::new(e)
                    .context(format!("xid8 {text:?}"))
                    .into(),
            )
        })
    }
}

/// A place in the global order `(tx_id, position)`. Readers resume after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub tx_id: TxId,
    pub position: i64,
}

impl Cursor {
    /// A cursor from a row's `tx_id::text` and `position`.
    pub(super) fn from_row((tx_id, position): (String, i64)) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tx_id: TxId::try_from(tx_id)?,
            position,
        })
    }
}

/// The columns of a [`RecordedEvent`], for every `SELECT` of whole events.
pub(super) const EVENT_COLUMNS: &str = "position, tx_id::text AS tx_id, event_id, stream_id, version, event_type, \
     schema_version, payload, metadata, recorded_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_id_that_does_not_parse_is_an_error_not_zero() {
        assert_eq!(
            TxId::try_from("18446744073709551615".to_owned()).expect("parses"),
            TxId(u64::MAX)
        );
        for bad in ["", "-1", "12a", "18446744073709551616"] {
            assert!(TxId::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(Cursor::from_row(("x".into(), 7)).is_err());
    }
}
