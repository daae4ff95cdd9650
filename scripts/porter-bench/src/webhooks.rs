//! Webhooks: how fast the worker delivers to receivers on 127.0.0.1, and
//! what a receiver sees of the run's sign-ups.
//!
//! Throughput is measured on the run's own history: fresh subscriptions,
//! each with its own receiver, are replayed from the start of the log (as
//! `porter webhooks replay ID --from start` does), and timed from their
//! first delivery to their last. The history the earlier phases committed,
//! not a generated one: the running worker's relay would push a (no-op)
//! email job for every generated request, and its projector would project
//! every generated event, both competing with the deliveries measured.
//! Each subscription must receive exactly the log's public events, in log
//! order, each signed with its secret (the receiver checks every signature
//! with its own HMAC code), or the rate does not count as met.
//!
//! Subscriptions are added through Porter's library, as `porter webhooks`
//! does; the worker delivers them as in production, with
//! `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` since the receivers are on
//! loopback.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use porter::{
    features::{
        public_events,
        webhooks::subscriptions::{self, Added},
    },
    platform::store::Cursor,
};
use porter_test_support::webhooks::{Delivery, WebhookReceiver};
use serde::Serialize;
use sqlx::PgPool;

use crate::stats::{count, per_second};

/// How often the bench looks at receivers and subscriptions while it waits.
const POLL: Duration = Duration::from_millis(50);
/// Log events read per round when listing the log's public events.
const HISTORY_BATCH: i64 = 1_000;

/// A subscription of every public event and the receiver it delivers to.
#[derive(Debug)]
pub struct Subscribed {
    pub subscription: Added,
    pub receiver: WebhookReceiver,
}

impl Subscribed {
    /// Starts a receiver and subscribes it, from now on, or from the start
    /// of the log when `from_start`.
    pub async fn new(pool: &PgPool, from_start: bool) -> anyhow::Result<Self> {
        let receiver = WebhookReceiver::start().await;
        let subscription = subscriptions::add(pool, &receiver.url(), None)
            .await
            .context("add a webhook subscription")?;
        receiver.trust(subscription.secret.expose());
        if from_start {
            subscriptions::replay_from(pool, subscription.id, Cursor::default())
                .await
                .context("replay the subscription from the start")?;
        }
        Ok(Self {
            subscription,
            receiver,
        })
    }

    /// Waits until a worker holds the subscription (workers look for free
    /// ones every second); `false` if none did within `deadline`.
    pub async fn wait_until_held(&self, pool: &PgPool, deadline: Duration) -> anyhow::Result<bool> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            let held = subscriptions::get(pool, self.subscription.id)
                .await?
                .is_some_and(|s| s.lease_owner.is_some());
            if held {
                return Ok(true);
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(false)
    }

    pub async fn remove(self, pool: &PgPool) -> anyhow::Result<()> {
        subscriptions::remove(pool, self.subscription.id)
            .await
            .context("remove the webhook subscription")?;
        Ok(())
    }
}

/// The ids of the log's public events in log order: what a subscription
/// replayed from the start delivers, read as the worker's deliverer reads
/// them.
pub async fn public_history(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor = Cursor::default();
    loop {
        let batch = public_events::read_after(pool, cursor, HISTORY_BATCH)
            .await
            .context("read the log's public events")?;
        ids.extend(batch.events.into_iter().map(|p| p.event.id));
        cursor = batch.end;
        if batch.exhausted {
            return Ok(ids);
        }
    }
}

/// Polls until every receiver has `count` deliveries or `deadline` passes.
pub async fn wait_for_deliveries(subscribed: &[Subscribed], count: usize, deadline: Duration) {
    let until = Instant::now() + deadline;
    while Instant::now() < until
        && subscribed
            .iter()
            .any(|s| s.receiver.delivered_count() < count)
    {
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until each of `emails` has had its `account.registered` delivered
/// or `deadline` passes; returns when each first arrived, by address.
pub async fn wait_for_registrations(
    receiver: &WebhookReceiver,
    emails: &[String],
    deadline: Duration,
) -> HashMap<String, Instant> {
    let until = Instant::now() + deadline;
    loop {
        let registered = registrations(&receiver.delivered());
        if emails.iter().all(|e| registered.contains_key(e)) || Instant::now() >= until {
            return registered;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// When each address's `account.registered` was first delivered.
fn registrations(deliveries: &[Delivery]) -> HashMap<String, Instant> {
    let mut first = HashMap::new();
    for delivery in deliveries {
        let event = delivery.json();
        if event["type"] == "account.registered"
            && let Some(email) = event["data"]["email"].as_str()
        {
            first.entry(email.to_owned()).or_insert(delivery.at);
        }
    }
    first
}

/// Deliveries beyond the first of each event id: at least once allows
/// them, and they count as work done twice.
pub fn duplicates(deliveries: &[Delivery]) -> usize {
    let distinct: HashSet<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    deliveries.len() - distinct.len()
}

/// Subscriptions delivering the same history at once.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Public events each subscription was to deliver.
    pub events: usize,
    pub subscriptions: Vec<SubscriptionRate>,
    /// From the first delivery of any subscription to the last of any.
    pub seconds: f64,
    pub per_second: f64,
}

/// What one subscription delivered, and how fast.
#[derive(Debug, Serialize)]
pub struct SubscriptionRate {
    pub delivered: usize,
    /// Deliveries the receiver could not verify with the subscription's
    /// secret.
    pub unverified: usize,
    /// Whether it delivered exactly the log's public events, each once,
    /// in log order.
    pub in_log_order: bool,
    /// From its first delivery to its last.
    pub seconds: f64,
    pub per_second: f64,
}

impl Throughput {
    /// What `subscribed` delivered of `history`.
    pub fn of(history: &[String], subscribed: &[Subscribed]) -> Self {
        let deliveries: Vec<Vec<Delivery>> =
            subscribed.iter().map(|s| s.receiver.delivered()).collect();
        let subscriptions = deliveries
            .iter()
            .map(|delivered| {
                let (seconds, per_second) = rate(delivered);
                SubscriptionRate {
                    delivered: delivered.len(),
                    unverified: delivered
                        .iter()
                        .filter(|d| d.verified_by.is_empty())
                        .count(),
                    in_log_order: delivered.iter().map(|d| &d.id).eq(history),
                    seconds,
                    per_second,
                }
            })
            .collect();
        let (seconds, per_second) = rate(&deliveries.concat());
        Self {
            events: history.len(),
            subscriptions,
            seconds,
            per_second,
        }
    }

    /// The slowest subscription's rate: what the per-subscription target
    /// is held to.
    pub fn slowest(&self) -> f64 {
        self.subscriptions
            .iter()
            .map(|s| s.per_second)
            .min_by(f64::total_cmp)
            .unwrap_or(0.0)
    }

    /// Deliveries of all subscriptions together.
    pub fn delivered(&self) -> usize {
        self.subscriptions.iter().map(|s| s.delivered).sum()
    }

    /// Whether every subscription delivered the history exactly, signed.
    pub fn complete(&self) -> bool {
        self.subscriptions.iter().all(SubscriptionRate::complete)
    }

    /// Each subscription's rate, the total, and what went wrong, for the
    /// table.
    pub fn row(&self) -> String {
        let rates: Vec<String> = self
            .subscriptions
            .iter()
            .map(|s| per_second(s.per_second))
            .collect();
        let mut row = rates.join(" / ");
        if self.subscriptions.len() > 1 {
            let _ = write!(row, "; {} in all", per_second(self.per_second));
        }
        let _ = write!(
            row,
            " ({} in {:.1} s)",
            count(self.delivered() as u64),
            self.seconds
        );
        for (n, subscription) in self.subscriptions.iter().enumerate() {
            if !subscription.in_log_order {
                let _ = write!(
                    row,
                    "; subscription {}: {} delivered, NOT the log's {} in order",
                    n + 1,
                    count(subscription.delivered as u64),
                    count(self.events as u64)
                );
            }
            if subscription.unverified > 0 {
                let _ = write!(
                    row,
                    "; subscription {}: {} UNVERIFIED",
                    n + 1,
                    subscription.unverified
                );
            }
        }
        row
    }
}

impl SubscriptionRate {
    fn complete(&self) -> bool {
        self.in_log_order && self.unverified == 0
    }
}

/// Seconds from the first delivery to the last, and deliveries per second
/// over them (n deliveries span n − 1 intervals).
fn rate(deliveries: &[Delivery]) -> (f64, f64) {
    let (Some(first), Some(last)) = (
        deliveries.iter().map(|d| d.at).min(),
        deliveries.iter().map(|d| d.at).max(),
    ) else {
        return (0.0, 0.0);
    };
    let seconds = (last - first).as_secs_f64();
    let intervals = deliveries.len() - 1;
    (seconds, intervals as f64 / seconds.max(f64::EPSILON))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, at: Instant) -> Delivery {
        Delivery {
            id: id.to_owned(),
            timestamp: String::new(),
            signature: String::new(),
            content_type: "application/json".to_owned(),
            body: Default::default(),
            verified_by: vec![0],
            answered: 204,
            at,
        }
    }

    #[test]
    fn a_rate_counts_the_intervals_from_the_first_delivery_to_the_last() {
        let start = Instant::now();
        let deliveries: Vec<Delivery> = (0..11)
            .map(|i| delivery(&format!("evt_{i}"), start + Duration::from_millis(10 * i)))
            .collect();
        let (seconds, per_second) = rate(&deliveries);
        assert!((seconds - 0.1).abs() < 1e-9, "{seconds}");
        assert!((per_second - 100.0).abs() < 1e-6, "{per_second}");
        assert_eq!(rate(&deliveries[..1]), (0.0, 0.0));
        assert_eq!(rate(&[]), (0.0, 0.0));
    }

    #[test]
    fn a_second_delivery_of_an_event_is_a_duplicate() {
        let at = Instant::now();
        let deliveries = ["evt_a", "evt_b", "evt_a"].map(|id| delivery(id, at));
        assert_eq!(duplicates(&deliveries), 1);
        assert_eq!(duplicates(&deliveries[..2]), 0);
    }
}
