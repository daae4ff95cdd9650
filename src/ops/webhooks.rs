//! `porter webhooks`: subscribe receivers to public events and look after
//! them (list, pause, resume, rotate a secret, replay from a position).
//!
//! What each action does to the subscription is `webhooks::subscriptions`;
//! here are the operator's words for it: which event types exist, which
//! URLs are refused and why, where a replay starts, and the table.

use std::fmt::Write as _;

use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    config::WebhookConfig,
    public_events,
    store::{self, Cursor},
    webhooks::{
        destination,
        subscriptions::{self, Added, Listed},
    },
};

/// What an operator asked that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Refused(#[from] destination::Refused),
    #[error("unknown event type {given:?}; the types are {}", public_events::TYPES.join(", "))]
    UnknownType { given: String },
    #[error(
        "--from takes `start`, a feed cursor (`<tx>.<position>`, as `next_cursor`) or an event id (`evt_…`); {given:?} is none"
    )]
    BadPosition { given: String },
    #[error("no event {given}")]
    NoSuchEvent { given: String },
    #[error("no webhook subscription {0}")]
    NotFound(Uuid),
    #[error("webhook subscription {id} is {state}, not {expected}")]
    WrongState {
        id: Uuid,
        state: String,
        expected: &'static str,
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
    let expected = match change {
        Change::Pause => "active",
        Change::Resume => "paused or disabled",
        Change::Remove => return Err(WebhookError::NotFound(id)),
    };
    match subscriptions::get(pool, id).await? {
        None => Err(WebhookError::NotFound(id)),
        Some(subscription) => Err(WebhookError::WrongState {
            id,
            state: subscription.state,
            expected,
        }),
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
}

/// The table `porter webhooks list` prints.
pub fn render(listed: &[Listed]) -> String {
    let mut text = format!(
        "{:<36}  {:<8}  {:>9}  {:>8}  {:>9}  {:>8}  URL / EVENTS / LAST ERROR\n",
        "ID", "STATE", "DELIVERED", "LAG EVTS", "LAG SECS", "FAILURES"
    );
    for Listed {
        subscription: s,
        lag_events,
        lag_seconds,
    } in listed
    {
        let _ = writeln!(
            text,
            "{:<36}  {:<8}  {:>9}  {:>8}  {:>9.1}  {:>8}  {}",
            s.id, s.state, s.delivered, lag_events, lag_seconds, s.failed_attempts, s.url
        );
        let types = s
            .event_types
            .as_ref()
            .map_or_else(|| "all event types".to_owned(), |types| types.join(","));
        let _ = writeln!(text, "{:>90}{types}", "");
        if let Some(reason) = &s.state_reason {
            let _ = writeln!(text, "{:>90}{}: {reason}", "", s.state);
        }
        if let Some(error) = &s.last_error {
            let _ = writeln!(text, "{:>90}last error: {error}", "");
        }
    }
    text
}
