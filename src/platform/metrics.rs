//! Prometheus metrics: the process-wide registry that the web process and the
//! worker expose on `GET /metrics`, in the OpenMetrics text format.
//!
//! A leaf: anyone may record into it and it depends on nothing but the
//! domain's events. HTTP requests are recorded by the router, domain facts
//! (sign-ups, activations, emails sent and failed) where events are appended
//! ([`record_events`], called by `commands`), so each process counts what it
//! records. Gauges that describe shared state (queue depths, dead letters,
//! live workers, projector lag) are set at scrape time by `gauges`; what a
//! process scrapes and where it serves it lives with that process.

use std::{
    sync::{LazyLock, atomic::AtomicU64},
    time::Duration,
};

use http::StatusCode;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::domain::{AccountEvent, events::PasswordChangeReason};

/// The content type of [`encode_all`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    permanent: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadModelLabels {
    read_model: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionStateLabels {
    subscription: String,
    state: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric Porter exposes; one per process, see [`metrics`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: LatencyFamily,
    signups: Counter,
    activations: Counter,
    emails_sent: Counter,
    emails_failed: Family<FailureLabels, Counter>,
    emails_withheld: Counter,
    registrations_ended: Family<EndLabels, Counter>,
    password_changes: Family<ReasonLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    dead_letters: Gauge,
    live_workers: Gauge,
    projector_lag_events: Family<ReadModelLabels, Gauge>,
    projector_lag_seconds: Family<ReadModelLabels, Gauge<f64, AtomicU64>>,
    hash_queue_depth: Gauge,
    webhook_attempts: Family<OutcomeLabels, Counter>,
    webhook_lag_events: Family<SubscriptionLabels, Gauge>,
    webhook_lag_seconds: Family<SubscriptionLabels, Gauge<f64, AtomicU64>>,
    webhook_failed_attempts: Family<SubscriptionLabels, Gauge>,
    webhook_state: Family<SubscriptionStateLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s; a sign-up spends about 25 ms hashing.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("porter");
        let http_requests = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by route and status, and how long they took",
            http_requests.clone(),
        );
        let signups = Counter::default();
        registry.register("signups", "Accounts registered", signups.clone());
        let activations = Counter::default();
        registry.register("activations", "Accounts activated", activations.clone());
        let emails_sent = Counter::default();
        registry.register(
            "emails_sent",
            "Account emails sent and recorded",
            emails_sent.clone(),
        );
        let emails_failed = Family::<FailureLabels, Counter>::default();
        registry.register(
            "emails_failed",
            "Account emails given up (dead-lettered), by whether the failure was permanent",
            emails_failed.clone(),
        );
        let emails_withheld = Counter::default();
        registry.register(
            "emails_withheld",
            "Account emails recorded but not sent: the address's EMAIL_PER_ADDRESS budget was spent",
            emails_withheld.clone(),
        );
        let registrations_ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "registrations_ended",
            "Pending registrations that ended unconfirmed, by reason (superseded, cancelled, expired)",
            registrations_ended.clone(),
        );
        let password_changes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "password_changes",
            "Passwords replaced, by reason (change, reset, rehash)",
            password_changes.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "email_queue_depth",
            "Email jobs waiting (active), scheduled for later, and running",
            queue_depth.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "email_dead_letters",
            "Email jobs in the dead-letter set",
            dead_letters.clone(),
        );
        let live_workers = Gauge::default();
        registry.register(
            "email_workers_live",
            "Email workers whose heartbeat is recent",
            live_workers.clone(),
        );
        let projector_lag_events = Family::<ReadModelLabels, Gauge>::default();
        registry.register(
            "projector_lag_events",
            "Committed events the read model has not applied yet",
            projector_lag_events.clone(),
        );
        let projector_lag_seconds = Family::<ReadModelLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "projector_lag_seconds",
            "Age of the oldest event the read model has not applied yet",
            projector_lag_seconds.clone(),
        );
        let hash_queue_depth = Gauge::default();
        registry.register(
            "password_hash_queue_depth",
            "Password hashes running or waiting in this web process",
            hash_queue_depth.clone(),
        );
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by this process, by outcome (delivered, gone, failed)",
            webhook_attempts.clone(),
        );
        let webhook_lag_events = Family::<SubscriptionLabels, Gauge>::default();
        registry.register(
            "webhook_lag_events",
            "Committed events a webhook subscription has not been delivered yet",
            webhook_lag_events.clone(),
        );
        let webhook_lag_seconds = Family::<SubscriptionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "webhook_lag_seconds",
            "Age of the oldest event a webhook subscription has not been delivered yet",
            webhook_lag_seconds.clone(),
        );
        let webhook_failed_attempts = Family::<SubscriptionLabels, Gauge>::default();
        registry.register(
            "webhook_failed_attempts",
            "Consecutive failed delivery attempts of a webhook subscription",
            webhook_failed_attempts.clone(),
        );
        let webhook_state = Family::<SubscriptionStateLabels, Gauge>::default();
        registry.register(
            "webhook_subscription_state",
            "1 for each webhook subscription's state (active, paused, disabled)",
            webhook_state.clone(),
        );
        Self {
            registry,
            http_requests,
            signups,
            activations,
            emails_sent,
            emails_failed,
            emails_withheld,
            registrations_ended,
            password_changes,
            queue_depth,
            dead_letters,
            live_workers,
            projector_lag_events,
            projector_lag_seconds,
            hash_queue_depth,
            webhook_attempts,
            webhook_lag_events,
            webhook_lag_seconds,
            webhook_failed_attempts,
            webhook_state,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Records one HTTP request; `route` is the router's route name, never the
/// path (paths carry link keys).
pub fn record_request(route: &'static str, status: StatusCode, elapsed: Duration) {
    metrics()
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            status: status.as_u16(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Counts the facts in events this process just appended.
pub fn record_events(events: &[AccountEvent]) {
    let m = metrics();
    for event in events {
        match event {
            AccountEvent::AccountRegistered(_) => {
                m.signups.inc();
            }
            AccountEvent::AccountActivated(_) | AccountEvent::AccountActivatedManually(_) => {
                m.activations.inc();
            }
            AccountEvent::EmailSent(_) => {
                m.emails_sent.inc();
            }
            AccountEvent::EmailFailed(failed) => {
                let permanent = if failed.permanent { "true" } else { "false" };
                m.emails_failed
                    .get_or_create(&FailureLabels { permanent })
                    .inc();
            }
            AccountEvent::EmailWithheld(_) => {
                m.emails_withheld.inc();
            }
            AccountEvent::RegistrationSuperseded(_) => {
                m.registrations_ended
                    .get_or_create(&EndLabels {
                        reason: "superseded",
                    })
                    .inc();
            }
            AccountEvent::RegistrationCancelled(_) => {
                m.registrations_ended
                    .get_or_create(&EndLabels {
                        reason: "cancelled",
                    })
                    .inc();
            }
            AccountEvent::RegistrationExpired(_) => {
                m.registrations_ended
                    .get_or_create(&EndLabels { reason: "expired" })
                    .inc();
            }
            // Retries are appended by `porter deliveries retry`, a process
            // nobody scrapes; the dead-letter gauge shows their effect.
            // Blocking is an operator's act, visible in the log and the
            // admin API.
            AccountEvent::AccountBlocked(_) | AccountEvent::AccountUnblocked(_) => {}
            AccountEvent::PasswordChanged(changed) => {
                let reason = match changed.reason {
                    PasswordChangeReason::Change => "change",
                    PasswordChangeReason::Reset => "reset",
                    PasswordChangeReason::Rehash => "rehash",
                };
                m.password_changes
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            AccountEvent::ActivationRequested(_)
            | AccountEvent::SignUpAttemptedForExistingEmail(_)
            | AccountEvent::EmailRetryRequested(_)
            | AccountEvent::PasswordResetRequested(_) => {}
        }
    }
}

/// The email queue's state, as the last scrape read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueGauges {
    pub active: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    pub live_workers: u64,
}

pub fn set_queue_gauges(queue: QueueGauges) {
    let m = metrics();
    for (state, value) in [
        ("active", queue.active),
        ("scheduled", queue.scheduled),
        ("running", queue.running),
    ] {
        m.queue_depth
            .get_or_create(&QueueLabels { state })
            .set(value as i64);
    }
    m.dead_letters.set(queue.dead as i64);
    m.live_workers.set(queue.live_workers as i64);
}

/// How far the read model `read_model` is behind the log.
pub fn set_projector_lag(read_model: &'static str, events_behind: i64, seconds_behind: f64) {
    let m = metrics();
    let labels = ReadModelLabels { read_model };
    m.projector_lag_events
        .get_or_create(&labels)
        .set(events_behind);
    m.projector_lag_seconds
        .get_or_create(&labels)
        .set(seconds_behind);
}

/// One webhook delivery attempt by this process: `delivered`, `gone` or
/// `failed`.
pub fn record_webhook_attempt(outcome: &'static str) {
    metrics()
        .webhook_attempts
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// A webhook subscription as it stands, read at scrape time.
#[derive(Debug, Clone)]
pub struct WebhookGauges {
    pub subscription: String,
    pub state: String,
    pub lag_events: i64,
    pub lag_seconds: f64,
    pub failed_attempts: i64,
}

/// Replaces every subscription's gauges, so a removed one disappears.
pub fn set_webhook_gauges(subscriptions: &[WebhookGauges]) {
    let m = metrics();
    m.webhook_lag_events.clear();
    m.webhook_lag_seconds.clear();
    m.webhook_failed_attempts.clear();
    m.webhook_state.clear();
    for gauges in subscriptions {
        let labels = SubscriptionLabels {
            subscription: gauges.subscription.clone(),
        };
        m.webhook_lag_events
            .get_or_create(&labels)
            .set(gauges.lag_events);
        m.webhook_lag_seconds
            .get_or_create(&labels)
            .set(gauges.lag_seconds);
        m.webhook_failed_attempts
            .get_or_create(&labels)
            .set(gauges.failed_attempts);
        m.webhook_state
            .get_or_create(&SubscriptionStateLabels {
                subscription: gauges.subscription.clone(),
                state: gauges.state.clone(),
            })
            .set(1);
    }
}

/// Password hashes running or waiting in this (web) process.
pub fn set_hash_queue_depth(depth: usize) {
    metrics().hash_queue_depth.set(depth as i64);
}

/// The whole registry in the OpenMetrics text format.
pub fn encode_all() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &metrics().registry);
    text
}
