//! Public events: the documented contract other systems follow, apart from
//! the internal event names.
//!
//! The log's events are Porter's own storage format; other systems see a
//! small, versioned set of public types (`account.registered`,
//! `account.activated`, …) with a stable id (`evt_` and the log event's id,
//! so a re-read or a re-delivery carries the same id), the account, the
//! time it was recorded, and a `data` object holding only what the type
//! needs: never a password hash, personal data only where the type is about
//! it. Delivery bookkeeping (requests, emails sent, failed or withheld) and
//! password rehashes stay internal. The shape of each type's `data` is in
//! the OpenAPI description (`PublicEvent`), and a change to it is a new
//! [`VERSION`].
//!
//! [`feed`] reads them in log order with the projector's no-skip guarantee:
//! only below the oldest running transaction (`store::read_committed_after`),
//! so a transaction that commits late is still read, after the cursor.

pub mod api_description;
pub mod cli;
pub mod http;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr, Schema,
        schema::{AnyOfBuilder, ObjectBuilder},
    },
};
use uuid::Uuid;

use crate::{
    domain::{AccountEvent, DecodeError, events::PasswordChangeReason},
    platform::store::{self, Cursor, RecordedEvent, TxId},
};

/// The version of the public contract: the types and their `data`.
pub const VERSION: u32 = 1;

/// Every public type, in the order the lifecycle reaches them.
pub const TYPES: [&str; 8] = [
    "account.registered",
    "account.activated",
    "account.registration_superseded",
    "account.registration_cancelled",
    "account.registration_expired",
    "account.password_changed",
    "account.blocked",
    "account.unblocked",
];

/// Longest a feed request may wait for a first event.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting feed request looks at the log again.
const POLL: Duration = Duration::from_millis(100);

/// Why the feed could not be read. Reading runs no command: the log is read,
/// never written, so its errors are its own.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A stored event Porter cannot read; the feed stops there rather than
    /// skip it, so no reader ever misses an event.
    #[error("event {position} in stream {stream_id} cannot be read: {source}")]
    Undecodable {
        stream_id: String,
        position: i64,
        source: DecodeError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One public event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicEvent {
    /// `evt_` and the log event's id: the same however often it is read.
    #[schema(pattern = "^evt_[0-9a-f]{32}$")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = type_schema)]
    pub event_type: &'static str,
    pub account_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// What the type needs; never a password hash
    #[schema(schema_with = data_schema)]
    pub data: EventData,
}

/// The `data` of a public event, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Registered(Registered),
    Activated(Activated),
    Superseded(Superseded),
    PasswordChanged(PasswordChanged),
    Blocked(Blocked),
    /// `account.registration_cancelled`, `account.registration_expired`,
    /// `account.unblocked`.
    Nothing {},
}

/// `account.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    username: String,
    email: String,
    locale: String,
}

/// `account.activated`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activated {
    #[schema(inline)]
    method: ActivationMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ActivationMethod {
    /// With the emailed link.
    Link,
    /// By an operator or the admin API.
    Manual,
}

/// `account.registration_superseded`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Superseded {
    superseded_by: Uuid,
}

/// `account.password_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChanged {
    #[schema(inline)]
    reason: ChangeReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ChangeReason {
    Change,
    Reset,
}

/// `account.blocked`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    reason: String,
}

fn type_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(TYPES))
        .into()
}

/// One object schema per shape of [`EventData`], titled with its types.
fn data_schema() -> RefOr<Schema> {
    let titled = |title: &str, schema: RefOr<Schema>| match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object.title = Some(title.to_owned());
            RefOr::T(Schema::Object(object))
        }
        other => other,
    };
    let nothing = ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .max_properties(Some(0));
    AnyOfBuilder::new()
        .item(titled("account.registered", Registered::schema()))
        .item(titled("account.activated", Activated::schema()))
        .item(titled(
            "account.registration_superseded",
            Superseded::schema(),
        ))
        .item(titled(
            "account.password_changed",
            PasswordChanged::schema(),
        ))
        .item(titled("account.blocked", Blocked::schema()))
        .item(titled(
            "account.registration_cancelled, account.registration_expired, account.unblocked",
            nothing.into(),
        ))
        .into()
}

/// The public event a log event is, if any.
pub fn public(recorded: &RecordedEvent, event: &AccountEvent) -> Option<PublicEvent> {
    let activated = |method| EventData::Activated(Activated { method });
    let changed = |reason| EventData::PasswordChanged(PasswordChanged { reason });
    let (event_type, data) = match event {
        AccountEvent::AccountRegistered(e) => (
            "account.registered",
            EventData::Registered(Registered {
                username: e.username.clone(),
                email: e.email.clone(),
                locale: e.locale.clone(),
            }),
        ),
        AccountEvent::AccountActivated(_) => {
            ("account.activated", activated(ActivationMethod::Link))
        }
        AccountEvent::AccountActivatedManually(_) => {
            ("account.activated", activated(ActivationMethod::Manual))
        }
        AccountEvent::RegistrationSuperseded(e) => (
            "account.registration_superseded",
            EventData::Superseded(Superseded {
                superseded_by: e.by,
            }),
        ),
        AccountEvent::RegistrationCancelled(_) => {
            ("account.registration_cancelled", EventData::Nothing {})
        }
        AccountEvent::RegistrationExpired(_) => {
            ("account.registration_expired", EventData::Nothing {})
        }
        AccountEvent::PasswordChanged(e) => match e.reason {
            PasswordChangeReason::Change => {
                ("account.password_changed", changed(ChangeReason::Change))
            }
            PasswordChangeReason::Reset => {
                ("account.password_changed", changed(ChangeReason::Reset))
            }
            // The same password, hashed with today's cost: nothing happened.
            PasswordChangeReason::Rehash => return None,
        },
        AccountEvent::AccountBlocked(e) => (
            "account.blocked",
            EventData::Blocked(Blocked {
                reason: e.reason.clone(),
            }),
        ),
        AccountEvent::AccountUnblocked(_) => ("account.unblocked", EventData::Nothing {}),
        AccountEvent::ActivationRequested(_)
        | AccountEvent::EmailSent(_)
        | AccountEvent::EmailFailed(_)
        | AccountEvent::SignUpAttemptedForExistingEmail(_)
        | AccountEvent::EmailRetryRequested(_)
        | AccountEvent::EmailWithheld(_)
        | AccountEvent::PasswordResetRequested(_) => return None,
    };
    Some(PublicEvent {
        id: format!("evt_{}", recorded.event_id.simple()),
        event_type,
        account_id: recorded.account_id()?,
        occurred_at: recorded.recorded_at,
        data,
    })
}

/// A feed cursor: a place in the log's `(tx_id, position)` order, opaque to
/// clients.
pub fn encode_cursor(cursor: Cursor) -> String {
    format!("{}.{}", cursor.tx_id.0, cursor.position)
}

/// The place a cursor made by [`encode_cursor`] stands for.
pub fn decode_cursor(text: &str) -> Option<Cursor> {
    let (tx_id, position) = text.split_once('.')?;
    Some(Cursor {
        tx_id: TxId(tx_id.parse().ok()?),
        position: position.parse().ok()?,
    })
}

/// A page of the feed and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PublicEventPage)]
pub struct FeedPage {
    pub events: Vec<PublicEvent>,
    /// Pass as `after` for the next page (past every event this page looked
    /// at, shown or filtered out)
    pub next_cursor: String,
}

/// A public event and the cursor just past it.
#[derive(Debug, Clone, PartialEq)]
pub struct Positioned {
    pub cursor: Cursor,
    pub event: PublicEvent,
}

/// What one read of the log found.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The public events among the log events read, in log order.
    pub events: Vec<Positioned>,
    /// Past every log event read, public or not.
    pub end: Cursor,
    /// Whether the read reached the end of what has committed.
    pub exhausted: bool,
}

/// The public events among the next `limit` log events after `after`, with
/// the projector's no-skip guarantee.
pub async fn read_after(pool: &PgPool, after: Cursor, limit: i64) -> Result<Batch, FeedError> {
    let recorded = store::read_committed_after(pool, after, limit).await?;
    let exhausted = (recorded.len() as i64) < limit;
    let mut batch = Batch {
        events: Vec::new(),
        end: after,
        exhausted,
    };
    for recorded in recorded {
        let event = recorded.decode().map_err(|source| FeedError::Undecodable {
            stream_id: recorded.stream_id.clone(),
            position: recorded.position,
            source,
        })?;
        batch.end = recorded.cursor();
        if let Some(public) = public(&recorded, &event) {
            batch.events.push(Positioned {
                cursor: batch.end,
                event: public,
            });
        }
    }
    Ok(batch)
}

/// Up to `limit` public events after `after`, of `types` when given. With
/// `wait`, a request that finds none looks again until one commits or the
/// wait (at most [`MAX_WAIT`]) is over.
pub async fn feed(
    pool: &PgPool,
    after: Cursor,
    limit: usize,
    types: Option<&[String]>,
    wait: Duration,
) -> Result<FeedPage, FeedError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    let mut cursor = after;
    let mut events = Vec::new();
    loop {
        let batch = read_after(pool, cursor, 500).await?;
        cursor = batch.end;
        for Positioned {
            cursor: past,
            event,
        } in batch.events
        {
            if !is_wanted(types, &event) {
                continue;
            }
            events.push(event);
            if events.len() == limit {
                return Ok(FeedPage {
                    events,
                    next_cursor: encode_cursor(past),
                });
            }
        }
        let waiting = events.is_empty() && tokio::time::Instant::now() < deadline;
        if batch.exhausted && !waiting {
            return Ok(FeedPage {
                events,
                next_cursor: encode_cursor(cursor),
            });
        }
        if batch.exhausted {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether `event` is of one of `types`; every event is when none are given.
pub fn is_wanted(types: Option<&[String]>, event: &PublicEvent) -> bool {
    types.is_none_or(|types| types.iter().any(|t| t == event.event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            tx_id: TxId(1_234_567),
            position: 42,
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)), Some(cursor));
        for garbage in ["", "1", "1.", ".1", "a.1", "1.b", "-1.2"] {
            assert_eq!(decode_cursor(garbage), None, "{garbage:?}");
        }
    }
}
