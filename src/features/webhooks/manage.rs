//! Managing subscriptions, as operators (`porter webhooks`) and the
//! application (`/api/admin/webhooks`) ask for it: which event types exist,
//! which URLs are refused and why, where a replay starts, and why a pause,
//! resume or removal cannot be done. What each does to a subscription is
//! [`subscriptions`].

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    destination,
    subscriptions::{self, Added},
};
use crate::{
    features::public_events,
    platform::{
        config::WebhookConfig,
        store::{self, Cursor},
    },
};

/// What was asked that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Refused(#[from] destination::Refused),
    #[error("unknown event type {given:?}; the types are {}", public_events::TYPES.join(", "))]
    UnknownType { given: String },
    #[error(
        "a replay starts from `start`, a feed cursor (`<tx>.<position>`, as `next_cursor`) or an event id (`evt_…`); {given:?} is none"
    )]
    BadPosition { given: String },
    #[error("no event {given}")]
    NoSuchEvent { given: String },
    #[error("no webhook subscription {0}")]
    NotFound(Uuid),
    #[error("webhook subscription {id} is {state}, not {}", change.applies_to())]
    WrongState {
        id: Uuid,
        state: String,
        change: Change,
    },
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
}

/// Subscribes `url` to `types` (every type when `None`), from now on.
pub async fn add(
    pool: &PgPool,
    config: &WebhookConfig,
    url: &str,
    types: Option<Vec<String>>,
) -> Result<Added, WebhookError> {
    if let Some(unknown) = types
        .iter()
        .flatten()
        .find(|given| !public_events::TYPES.contains(&given.as_str()))
    {
        return Err(WebhookError::UnknownType {
            given: unknown.clone(),
        });
    }
    let url = destination::check(url, config.allow_private_networks).await?;
    Ok(subscriptions::add(pool, url.as_str(), types.as_deref()).await?)
}

/// Where `from` says a replay starts: just before the event it names, or
/// at a feed cursor, or at the start of the log.
pub async fn replay(pool: &PgPool, id: Uuid, from: &str) -> Result<Cursor, WebhookError> {
    let bad = || WebhookError::BadPosition {
        given: from.to_owned(),
    };
    let cursor = if from == "start" {
        Cursor::default()
    } else if let Some(event_id) = from.strip_prefix("evt_") {
        let event_id = Uuid::try_parse(event_id).map_err(|_| bad())?;
        store::cursor_before_event(pool, event_id)
            .await?
            .ok_or_else(|| WebhookError::NoSuchEvent {
                given: from.to_owned(),
            })?
    } else {
        public_events::decode_cursor(from).ok_or_else(bad)?
    };
    // A cursor from the future would skip every event until the log got
    // there: no feed ever returned it.
    if cursor > store::last_committed(pool).await? {
        return Err(bad());
    }
    if subscriptions::replay_from(pool, id, cursor).await? {
        Ok(cursor)
    } else {
        Err(WebhookError::NotFound(id))
    }
}

/// Pauses, resumes or removes subscription `id`, telling why not when it
/// cannot be done.
pub async fn change(pool: &PgPool, id: Uuid, change: Change) -> Result<(), WebhookError> {
    let done = match change {
        Change::Pause => subscriptions::pause(pool, id, "paused by an operator").await?,
        Change::Resume => subscriptions::resume(pool, id).await?,
        Change::Remove => subscriptions::remove(pool, id).await?,
    };
    if done {
        return Ok(());
    }
    match subscriptions::get(pool, id).await? {
        Some(subscription) if change != Change::Remove => Err(WebhookError::WrongState {
            id,
            state: subscription.state,
            change,
        }),
        _ => Err(WebhookError::NotFound(id)),
    }
}

/// What [`change`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Remove,
}

impl Change {
    /// What an operator is told when it is done.
    pub fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Remove => "removed",
        }
    }

    /// The states it applies to.
    pub fn applies_to(self) -> &'static str {
        match self {
            Self::Pause => "active",
            Self::Resume => "paused or disabled",
            Self::Remove => "any state",
        }
    }
}
