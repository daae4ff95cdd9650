//! The run's results: one JSON document, and the table a person reads.

use std::{collections::BTreeMap, fmt::Write as _, time::Instant};

use serde::Serialize;

use crate::{
    account_load::AccountLoad,
    cpu::PhaseCpu,
    limits::{Argon2Limit, CommitRate, RedisRate},
    load::{Run, SignUp, Status},
    processes::Memory,
    replay::ReplayResult,
    stats::{Latency, count, mann_whitney_p, millis, ms, per_second, percentile},
    webhooks::Throughput,
};

/// Porter's performance targets (issue 6).
pub const SIGN_UP_VS_ARGON2: f64 = 0.85;
/// Issue 11: sign-in is bounded by the same hashing threads.
pub const SIGN_IN_VS_ARGON2: f64 = 0.85;
/// Issue 11: a session check is one Redis round trip.
pub const ME_VS_REDIS_GET: f64 = 0.5;
/// Issue 16: no class of address distinguishable by answer time.
pub const ADDRESS_TIMING_MIN_P: f64 = 0.01;
/// The targets of the two address-request timing phases.
const RESEND_TIMING: &str = "resend: classes indistinguishable by time";
const RESET_TIMING: &str = "reset request: classes indistinguishable by time";
/// The targets of the webhook throughput phases.
const WEBHOOKS_ONE: &str = "webhooks, 1 subscription: deliveries/s";
const WEBHOOKS_FOUR: &str = "webhooks, 4 subscriptions: deliveries/s of each";
pub const EMAIL_P99_MS: f64 = 250.0;
/// Issue 13: deliveries per second of each subscription to a local receiver.
pub const WEBHOOK_DELIVERIES_PER_SECOND: f64 = 1_000.0;
/// Issue 13: from a sign-up's commit to its webhook, at half the peak
/// sign-up rate.
pub const WEBHOOK_LAG_P99_MS: f64 = 250.0;
pub const ACTIVATION_VS_COMMITS: f64 = 0.5;
pub const REPLAY_EVENTS_PER_SECOND: f64 = 100_000.0;
pub const WEB_PEAK_MIB: f64 = 40.0;
pub const WORKER_PEAK_MIB: f64 = 60.0;

/// "Rest of machine" CPU above this in any phase means a neighbour skewed
/// the run (Postgres's own background work and the kernel stay well below).
const NEIGHBOUR_WARNING_CORES: f64 = 0.3;

#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: String,
    pub seconds: f64,
    pub quick: bool,
    pub machine: Machine,
    pub porter_env: BTreeMap<String, String>,
    pub limits: Limits,
    pub sign_up: Vec<LoadSummary>,
    pub sign_up_to_email: ArrivalSummary,
    pub overload: OverloadSummary,
    pub activation: Vec<LoadSummary>,
    pub activation_check: ActivationCheck,
    pub sign_in: LoadSummary,
    pub me: LoadSummary,
    pub resend_timing: AddressTiming,
    pub reset_timing: AddressTiming,
    /// The run's history delivered to one subscription, then to four.
    pub webhook_throughput: Vec<Throughput>,
    pub sign_up_to_webhook: ArrivalSummary,
    pub memory: MemorySummary,
    pub account_load: AccountLoad,
    pub replay: ReplayResult,
    pub cpu: Vec<PhaseCpu>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub postgres: String,
    pub postgres_fsync: String,
    pub postgres_synchronous_commit: String,
    pub redis: String,
}

#[derive(Debug, Serialize)]
pub struct Limits {
    pub argon2: Argon2Limit,
    pub postgres: Vec<CommitRate>,
    pub redis: RedisRate,
    /// `GET` of a small key from 32 clients: what `GET /api/me` is held to.
    pub redis_get: RedisRate,
}

impl Limits {
    pub fn commits_at(&self, clients: usize) -> f64 {
        self.postgres
            .iter()
            .find(|rate| rate.clients == clients)
            .map_or(0.0, |rate| rate.commits_per_second)
    }
}

/// A closed loop at one concurrency.
#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub concurrency: usize,
    pub requests: usize,
    /// Requests answered as expected (`202` for a sign-up, a first `200`
    /// for an activation).
    pub ok: usize,
    pub statuses: BTreeMap<String, usize>,
    pub seconds: f64,
    pub ok_per_second: f64,
    /// Latency of the requests that were answered as expected.
    pub latency: Latency,
}

impl LoadSummary {
    pub fn of<T>(
        concurrency: usize,
        run: &Run<T>,
        ok: impl Fn(&T) -> bool + Copy,
        status: impl Fn(&T) -> &Status,
    ) -> Self {
        Self {
            concurrency,
            requests: run.samples.len(),
            ok: run.count(ok),
            statuses: status_counts(run.samples.iter().map(|s| status(&s.value))),
            seconds: run.elapsed.as_secs_f64(),
            ok_per_second: run.rate(ok),
            latency: Latency::of(&run.latencies(ok)),
        }
    }

    fn row(&self) -> String {
        let failed = self.requests - self.ok;
        let failures = if failed == 0 {
            String::new()
        } else {
            format!(", {failed} NOT OK {:?}", self.statuses)
        };
        format!(
            "{}, {} ({} ok{failures})",
            per_second(self.ok_per_second),
            self.latency.short(),
            self.ok
        )
    }
}

pub fn status_counts<'a>(statuses: impl Iterator<Item = &'a Status>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        let key = match status {
            Status::Code(code) => code.to_string(),
            Status::Transport(_) => "transport error".to_owned(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Answer times of requests about an address (resend, password reset) by
/// class of address.
#[derive(Debug, Serialize)]
pub struct AddressTiming {
    /// Which request: `resend` or `reset request`.
    pub request: &'static str,
    pub classes: Vec<ClassTiming>,
    /// Mann–Whitney U p-value of each pair of classes.
    pub p_values: BTreeMap<String, f64>,
    /// Requests not answered `202`.
    pub refused: usize,
}

#[derive(Debug, Serialize)]
pub struct ClassTiming {
    pub class: &'static str,
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
}

impl AddressTiming {
    pub fn of(
        request: &'static str,
        classes: [(&'static str, &Vec<std::time::Duration>); 3],
        refused: usize,
    ) -> Self {
        let ms_of = |samples: &Vec<std::time::Duration>| -> Vec<f64> {
            samples.iter().map(|d| millis(*d)).collect()
        };
        let mut p_values = BTreeMap::new();
        for (i, (a, a_samples)) in classes.iter().enumerate() {
            for (b, b_samples) in &classes[i + 1..] {
                p_values.insert(
                    format!("{a} vs {b}"),
                    mann_whitney_p(&ms_of(a_samples), &ms_of(b_samples)),
                );
            }
        }
        let classes = classes
            .iter()
            .map(|(class, samples)| {
                let mut sorted = (*samples).clone();
                sorted.sort_unstable();
                ClassTiming {
                    class,
                    count: sorted.len(),
                    p50_ms: millis(percentile(&sorted, 50.0)),
                    p90_ms: millis(percentile(&sorted, 90.0)),
                }
            })
            .collect();
        Self {
            request,
            classes,
            p_values,
            refused,
        }
    }

    pub fn min_p(&self) -> f64 {
        self.p_values.values().copied().fold(1.0, f64::min)
    }
}

/// Sign-ups sent at a fixed rate, and what each led to downstream: its
/// email at the sink, or its `account.registered` at a webhook receiver.
#[derive(Debug, Serialize)]
pub struct ArrivalSummary {
    pub rate_per_second: f64,
    pub sent: usize,
    pub accepted: usize,
    pub arrived: usize,
    /// Arrivals before the client had read the sign-up's `202` (counted as
    /// zero latency).
    pub arrived_before_response: usize,
    pub duplicates_in_run: usize,
    pub sign_up_latency: Latency,
    /// From the `202` to the first arrival for the sign-up's address.
    pub latency: Latency,
}

impl ArrivalSummary {
    /// `run`'s accepted sign-ups, with `arrival` telling when the first
    /// arrival for an address came, if any did.
    pub fn of(
        rate_per_second: f64,
        run: &Run<SignUp>,
        arrival: impl Fn(&str) -> Option<Instant>,
        duplicates_in_run: usize,
    ) -> Self {
        let mut latencies = Vec::new();
        let mut early = 0;
        let accepted = run.samples.iter().filter(|s| s.value.accepted());
        for sample in accepted.clone() {
            if let Some(at) = arrival(&sample.value.email) {
                if at < sample.finished {
                    early += 1;
                }
                latencies.push(at.saturating_duration_since(sample.finished));
            }
        }
        Self {
            rate_per_second,
            sent: run.samples.len(),
            accepted: accepted.count(),
            arrived: latencies.len(),
            arrived_before_response: early,
            duplicates_in_run,
            sign_up_latency: Latency::of(&run.latencies(SignUp::accepted)),
            latency: Latency::of(&latencies),
        }
    }

    fn complete(&self) -> bool {
        self.arrived == self.accepted
    }

    /// `p50 … / p95 … / p99 … (arrived/accepted <verb>)` for the table.
    fn row(&self, verb: &str) -> String {
        format!(
            "{} ({}/{} {verb})",
            self.latency.short(),
            self.arrived,
            self.accepted
        )
    }
}

#[derive(Debug, Serialize)]
pub struct OverloadSummary {
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: usize,
    pub statuses: BTreeMap<String, usize>,
    pub accepted_per_second: f64,
    pub latency_all: Latency,
    pub deadline_ms: f64,
    pub over_deadline: usize,
}

impl OverloadSummary {
    fn count(&self, status: &str) -> usize {
        self.statuses.get(status).copied().unwrap_or(0)
    }
}

#[derive(Debug, Serialize)]
pub struct ActivationCheck {
    pub keys: usize,
    pub emails_without_key: usize,
    pub activated: usize,
    /// `AccountActivated` events in the log.
    pub events: i64,
    /// Of the activated accounts, how many the `accounts` read model shows
    /// active, and how long after the last activation it caught up.
    pub read_model_active: i64,
    pub read_model_catch_up_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PhaseMemory {
    pub after: &'static str,
    pub web: Memory,
    pub worker: Memory,
}

#[derive(Debug, Serialize)]
pub struct MemorySummary {
    /// The processes' ids, to pick them out of a system-wide profile.
    pub web_pid: u32,
    pub worker_pid: u32,
    pub web: Memory,
    pub worker: Memory,
    pub phases: Vec<PhaseMemory>,
    pub web_drain_ms: f64,
    pub worker_drain_ms: f64,
}

/// One target and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub measured: f64,
    pub unit: &'static str,
    pub goal: String,
    /// `measured / limit` where the target is relative to a machine limit.
    pub vs_limit: Option<f64>,
    /// `measured / target value` (for a ceiling, above 1 means missed).
    pub vs_target: f64,
    pub met: bool,
}

impl Report {
    pub fn sign_up_at(&self, concurrency: usize) -> Option<&LoadSummary> {
        self.sign_up.iter().find(|s| s.concurrency == concurrency)
    }

    pub fn activation_at(&self, concurrency: usize) -> Option<&LoadSummary> {
        self.activation
            .iter()
            .find(|s| s.concurrency == concurrency)
    }

    pub fn webhooks_with(&self, subscriptions: usize) -> Option<&Throughput> {
        self.webhook_throughput
            .iter()
            .find(|t| t.subscriptions.len() == subscriptions)
    }
}

/// The target a webhook throughput phase is held to, by how many
/// subscriptions delivered at once (issue 13 names one and four).
fn webhook_target_name(subscriptions: usize) -> Option<&'static str> {
    match subscriptions {
        1 => Some(WEBHOOKS_ONE),
        4 => Some(WEBHOOKS_FOUR),
        _ => None,
    }
}

/// Evaluates every target against the measurements.
pub fn targets(report: &Report) -> Vec<Target> {
    let argon2 = report.limits.argon2.hashes_per_second;
    let commits32 = report.limits.commits_at(32);
    let sign_up32 = report.sign_up_at(32).map_or(0.0, |s| s.ok_per_second);
    let activation32 = report.activation_at(32).map_or(0.0, |s| s.ok_per_second);
    let email_p99 = report.sign_up_to_email.latency.p99_ms;
    let webhook_p99 = report.sign_up_to_webhook.latency.p99_ms;
    let replay = &report.replay;
    let web = report.memory.web.peak_mib();
    let worker = report.memory.worker.peak_mib();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let sign_in32 = report.sign_in.ok_per_second;
    let me32 = report.me.ok_per_second;
    let redis_get = report.limits.redis_get.round_trips_per_second;
    let timing_target = |name: &'static str, timing: &AddressTiming| {
        let min_p = timing.min_p();
        Target {
            name,
            measured: min_p,
            unit: "min p",
            goal: format!("every Mann–Whitney p ≥ {ADDRESS_TIMING_MIN_P}, all 202"),
            vs_limit: None,
            vs_target: ratio(min_p, ADDRESS_TIMING_MIN_P),
            met: min_p >= ADDRESS_TIMING_MIN_P && timing.refused == 0,
        }
    };
    let webhook_target = |name: &'static str, subscriptions: usize| {
        let throughput = report.webhooks_with(subscriptions);
        let slowest = throughput.map_or(0.0, Throughput::slowest);
        Target {
            name,
            measured: slowest,
            unit: "deliveries/s",
            goal: format!(
                "≥ {} per subscription, every event",
                per_second(WEBHOOK_DELIVERIES_PER_SECOND)
            ),
            vs_limit: None,
            vs_target: ratio(slowest, WEBHOOK_DELIVERIES_PER_SECOND),
            met: slowest >= WEBHOOK_DELIVERIES_PER_SECOND
                && throughput.is_some_and(Throughput::complete),
        }
    };
    vec![
        timing_target(RESEND_TIMING, &report.resend_timing),
        timing_target(RESET_TIMING, &report.reset_timing),
        Target {
            name: "sign-in @32 vs Argon2 limit",
            measured: sign_in32,
            unit: "sign-ins/s",
            goal: format!("≥ {SIGN_IN_VS_ARGON2} × {}", per_second(argon2)),
            vs_limit: Some(ratio(sign_in32, argon2)),
            vs_target: ratio(ratio(sign_in32, argon2), SIGN_IN_VS_ARGON2),
            met: sign_in32 >= SIGN_IN_VS_ARGON2 * argon2,
        },
        Target {
            name: "GET /api/me @32 vs Redis GET @32",
            measured: me32,
            unit: "requests/s",
            goal: format!("≥ {ME_VS_REDIS_GET} × {}", per_second(redis_get)),
            vs_limit: Some(ratio(me32, redis_get)),
            vs_target: ratio(ratio(me32, redis_get), ME_VS_REDIS_GET),
            met: me32 >= ME_VS_REDIS_GET * redis_get,
        },
        Target {
            name: "sign-up @32 vs Argon2 limit",
            measured: sign_up32,
            unit: "sign-ups/s",
            goal: format!("≥ {SIGN_UP_VS_ARGON2} × {}", per_second(argon2)),
            vs_limit: Some(ratio(sign_up32, argon2)),
            vs_target: ratio(ratio(sign_up32, argon2), SIGN_UP_VS_ARGON2),
            met: sign_up32 >= SIGN_UP_VS_ARGON2 * argon2,
        },
        Target {
            name: "sign-up → email p99 at half peak",
            measured: email_p99,
            unit: "ms",
            goal: format!("p99 ≤ {EMAIL_P99_MS} ms, every email"),
            vs_limit: None,
            vs_target: ratio(email_p99, EMAIL_P99_MS),
            met: email_p99 <= EMAIL_P99_MS && report.sign_up_to_email.complete(),
        },
        webhook_target(WEBHOOKS_ONE, 1),
        webhook_target(WEBHOOKS_FOUR, 4),
        Target {
            name: "sign-up → webhook p99 at half peak",
            measured: webhook_p99,
            unit: "ms",
            goal: format!("p99 ≤ {WEBHOOK_LAG_P99_MS} ms, every event"),
            vs_limit: None,
            vs_target: ratio(webhook_p99, WEBHOOK_LAG_P99_MS),
            met: webhook_p99 <= WEBHOOK_LAG_P99_MS && report.sign_up_to_webhook.complete(),
        },
        Target {
            name: "activation @32 vs Postgres commits @32",
            measured: activation32,
            unit: "activations/s",
            goal: format!("≥ {ACTIVATION_VS_COMMITS} × {}", per_second(commits32)),
            vs_limit: Some(ratio(activation32, commits32)),
            vs_target: ratio(ratio(activation32, commits32), ACTIVATION_VS_COMMITS),
            met: activation32 >= ACTIVATION_VS_COMMITS * commits32
                && report.activation_check.read_model_active
                    == report.activation_check.activated as i64,
        },
        Target {
            name: "replay",
            measured: replay.events_per_second,
            unit: "events/s",
            goal: format!("≥ {}", per_second(REPLAY_EVENTS_PER_SECOND)),
            vs_limit: None,
            vs_target: ratio(replay.events_per_second, REPLAY_EVENTS_PER_SECOND),
            met: replay.events_per_second >= REPLAY_EVENTS_PER_SECOND && replay.verified,
        },
        Target {
            name: "web peak RSS",
            measured: web,
            unit: "MiB",
            goal: format!("< {WEB_PEAK_MIB} MiB"),
            vs_limit: None,
            vs_target: ratio(web, WEB_PEAK_MIB),
            met: web < WEB_PEAK_MIB,
        },
        Target {
            name: "worker peak RSS",
            measured: worker,
            unit: "MiB",
            goal: format!("< {WORKER_PEAK_MIB} MiB"),
            vs_limit: None,
            vs_target: ratio(worker, WORKER_PEAK_MIB),
            met: worker < WORKER_PEAK_MIB,
        },
        Target {
            name: "overload: no request past the deadline",
            measured: report.overload.over_deadline as f64,
            unit: "requests",
            goal: format!("0 over {:.0} ms", report.overload.deadline_ms),
            vs_limit: None,
            vs_target: report.overload.over_deadline as f64,
            met: report.overload.over_deadline == 0
                && report.overload.count("transport error") == 0
                && report.overload.count("500") == 0,
        },
    ]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The table printed at the end of a run (Markdown, so it pastes into
/// docs/performance.md as it is).
pub fn table(report: &Report) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |what: String, result: String, vs_limit: String, target: String, v: &str| {
        rows.push([what, result, vs_limit, target, v.to_owned()]);
    };
    let limits = &report.limits;
    let argon2 = limits.argon2.hashes_per_second;
    let target = |name: &str| report.targets.iter().find(|t| t.name == name);
    row(
        format!("limit: Argon2id, {} threads", limits.argon2.threads),
        format!(
            "{} (one hash {})",
            per_second(argon2),
            ms(limits.argon2.single_hash_ms)
        ),
        String::new(),
        String::new(),
        "",
    );
    row(
        "limit: Postgres commits @1 / 8 / 32".into(),
        limits
            .postgres
            .iter()
            .map(|r| per_second(r.commits_per_second))
            .collect::<Vec<_>>()
            .join(" / "),
        String::new(),
        String::new(),
        "",
    );
    row(
        format!("limit: Redis PING, {} clients", limits.redis.clients),
        per_second(limits.redis.round_trips_per_second),
        String::new(),
        String::new(),
        "",
    );
    row(
        format!("limit: Redis GET, {} clients", limits.redis_get.clients),
        per_second(limits.redis_get.round_trips_per_second),
        String::new(),
        String::new(),
        "",
    );
    for summary in &report.sign_up {
        let t = (summary.concurrency == 32)
            .then(|| target("sign-up @32 vs Argon2 limit"))
            .flatten();
        row(
            format!("sign-up @{}", summary.concurrency),
            summary.row(),
            format!("{:.2}", summary.ok_per_second / argon2.max(f64::EPSILON)),
            t.map(|t| t.goal.clone()).unwrap_or_default(),
            t.map_or("", |t| verdict(t.met)),
        );
    }
    let email = &report.sign_up_to_email;
    let t = target("sign-up → email p99 at half peak");
    row(
        format!("sign-up → email @ {}", per_second(email.rate_per_second)),
        email.row("arrived"),
        String::new(),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );
    for summary in &report.activation {
        let t = (summary.concurrency == 32)
            .then(|| target("activation @32 vs Postgres commits @32"))
            .flatten();
        let commits = limits.commits_at(summary.concurrency);
        row(
            format!("activation @{}", summary.concurrency),
            summary.row(),
            format!("{:.2}", summary.ok_per_second / commits.max(f64::EPSILON)),
            t.map(|t| t.goal.clone()).unwrap_or_default(),
            t.map_or("", |t| verdict(t.met)),
        );
    }
    let t = target("sign-in @32 vs Argon2 limit");
    row(
        "sign-in @32".into(),
        report.sign_in.row(),
        format!(
            "{:.2}",
            report.sign_in.ok_per_second / argon2.max(f64::EPSILON)
        ),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );
    let t = target("GET /api/me @32 vs Redis GET @32");
    row(
        "GET /api/me @32".into(),
        report.me.row(),
        format!(
            "{:.2}",
            report.me.ok_per_second / limits.redis_get.round_trips_per_second.max(f64::EPSILON)
        ),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );
    for (timing, name) in [
        (&report.resend_timing, RESEND_TIMING),
        (&report.reset_timing, RESET_TIMING),
    ] {
        let t = target(name);
        let classes = |f: fn(&ClassTiming) -> f64| {
            timing
                .classes
                .iter()
                .map(|c| ms(f(c)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        row(
            format!(
                "{} {} ({} each)",
                timing.request,
                timing
                    .classes
                    .iter()
                    .map(|c| c.class)
                    .collect::<Vec<_>>()
                    .join(" / "),
                timing.classes.first().map_or(0, |c| c.count)
            ),
            format!(
                "p50 {}; p90 {}; min p {:.3}{}",
                classes(|c| c.p50_ms),
                classes(|c| c.p90_ms),
                timing.min_p(),
                if timing.refused == 0 {
                    String::new()
                } else {
                    format!(", {} NOT 202", timing.refused)
                }
            ),
            String::new(),
            t.map(|t| t.goal.clone()).unwrap_or_default(),
            t.map_or("", |t| verdict(t.met)),
        );
    }
    for throughput in &report.webhook_throughput {
        let t = webhook_target_name(throughput.subscriptions.len()).and_then(target);
        let (subscriptions, each) = match throughput.subscriptions.len() {
            1 => ("1 subscription".to_owned(), ""),
            n => (format!("{n} subscriptions"), " each"),
        };
        row(
            format!(
                "webhooks, {subscriptions}, {} events{each}",
                count(throughput.events as u64)
            ),
            throughput.row(),
            String::new(),
            t.map(|t| t.goal.clone()).unwrap_or_default(),
            t.map_or("", |t| verdict(t.met)),
        );
    }
    let webhook = &report.sign_up_to_webhook;
    let t = target("sign-up → webhook p99 at half peak");
    row(
        format!(
            "sign-up → webhook @ {}",
            per_second(webhook.rate_per_second)
        ),
        webhook.row("delivered"),
        String::new(),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );
    let check = &report.activation_check;
    row(
        "activated accounts active".into(),
        format!(
            "log {} / read model {} of {} (caught up in {})",
            check.events,
            check.read_model_active,
            check.activated,
            check.read_model_catch_up_ms.map_or("never".into(), ms)
        ),
        String::new(),
        "all".into(),
        verdict(
            check.events == check.activated as i64
                && check.read_model_active == check.activated as i64,
        ),
    );
    row(
        format!(
            "account load, {} events",
            report.account_load.long_history_events
        ),
        report.account_load.row(),
        String::new(),
        String::new(),
        "",
    );
    let replay = &report.replay;
    let t = target("replay");
    row(
        format!("replay, {} events", count(replay.events)),
        format!(
            "{} events/s ({:.1} s{})",
            per_second(replay.events_per_second).trim_end_matches("/s"),
            replay.replay_seconds,
            if replay.verified {
                ""
            } else {
                ", WRONG RESULT"
            }
        ),
        String::new(),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );
    for (name, memory) in [
        ("web peak RSS", &report.memory.web),
        ("worker peak RSS", &report.memory.worker),
    ] {
        let t = target(name);
        row(
            name.into(),
            format!("{:.1} MiB", memory.peak_mib()),
            String::new(),
            t.map(|t| t.goal.clone()).unwrap_or_default(),
            t.map_or("", |t| verdict(t.met)),
        );
    }
    let overload = &report.overload;
    let t = target("overload: no request past the deadline");
    row(
        format!(
            "overload @{}, {:.0} s",
            overload.concurrency, overload.seconds
        ),
        format!(
            "202: {}, 503: {}, 429: {}, other: {}; max {}; {} over {}",
            overload.count("202"),
            overload.count("503"),
            overload.count("429"),
            overload.requests
                - overload.count("202")
                - overload.count("503")
                - overload.count("429"),
            ms(overload.latency_all.max_ms),
            overload.over_deadline,
            ms(overload.deadline_ms),
        ),
        format!(
            "{:.2}",
            overload.accepted_per_second / argon2.max(f64::EPSILON)
        ),
        t.map(|t| t.goal.clone()).unwrap_or_default(),
        t.map_or("", |t| verdict(t.met)),
    );

    let header = ["measurement", "result", "× limit", "target", "verdict"].map(str::to_owned);
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "Porter benchmark {}{} — {} CPUs, {} (fsync {}, synchronous_commit {}), Redis {}",
        report.started_at,
        if report.quick {
            " (QUICK: not comparable)"
        } else {
            ""
        },
        m.cpus,
        m.postgres,
        m.postgres_fsync,
        m.postgres_synchronous_commit,
        m.redis
    );
    let env = &report.porter_env;
    let _ = writeln!(
        out,
        "porter web + worker (release): HASH_CONCURRENCY={} WORKER_CONCURRENCY={} LOG_FORMAT={}; “× limit” is the result over the machine limit it is held to\n",
        env.get("HASH_CONCURRENCY").map_or("?", String::as_str),
        env.get("WORKER_CONCURRENCY").map_or("?", String::as_str),
        env.get("LOG_FORMAT").map_or("?", String::as_str),
    );
    out.push_str(&markdown(&header, &rows));
    if let Some(busiest) = report
        .cpu
        .iter()
        .max_by(|a, b| a.rest.total_cmp(&b.rest))
        .filter(|p| p.rest > NEIGHBOUR_WARNING_CORES)
    {
        let _ = writeln!(
            out,
            "\nWARNING: other work on this machine used up to {:.2} cores (during {}); \
             throughput figures from this run are low, CPU per operation is still comparable.",
            busiest.rest, busiest.phase
        );
    }
    let _ = writeln!(out, "\n{}", cpu_table(&report.cpu));
    let missed: Vec<&str> = report
        .targets
        .iter()
        .filter(|t| !t.met)
        .map(|t| t.name)
        .collect();
    let _ = writeln!(
        out,
        "\n{} of {} targets met{}",
        report.targets.len() - missed.len(),
        report.targets.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!("; missed: {}", missed.join("; "))
        }
    );
    out
}

/// Cores busy on average in each phase, with CPU milliseconds per
/// successful operation for Porter's processes (web, worker, `porter
/// replay`) and its Postgres backends.
fn cpu_table(phases: &[PhaseCpu]) -> String {
    let per_op = |cores: f64, ms: Option<f64>| match ms {
        Some(ms) => format!("{cores:.2} ({ms:.2} ms/op)"),
        None => format!("{cores:.2}"),
    };
    let header = [
        "phase",
        "ops/s",
        "web",
        "worker",
        "replay",
        "postgres",
        "redis",
        "bench",
        "rest of machine",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 9]> = phases
        .iter()
        .map(|p| {
            [
                p.phase.clone(),
                if p.operations == 0 {
                    String::new()
                } else {
                    per_second(p.operations as f64 / p.seconds)
                },
                per_op(p.web, p.web_ms_per_op),
                per_op(p.worker, p.worker_ms_per_op),
                per_op(p.replay, p.replay_ms_per_op),
                per_op(p.postgres, p.postgres_ms_per_op),
                format!("{:.2}", p.redis),
                format!("{:.2}", p.bench),
                if p.rest > NEIGHBOUR_WARNING_CORES {
                    format!("{:.2} (skewed)", p.rest)
                } else {
                    format!("{:.2}", p.rest)
                },
            ]
        })
        .collect();
    let mut out = String::from(
        "CPU, in cores busy on average (of all CPUs), and ms of CPU per successful operation:\n",
    );
    out.push_str(&markdown(&header, &rows));
    out
}

/// A Markdown table with padded columns.
fn markdown<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(header))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String; N]| {
        let mut text = String::from("|");
        for (cell, width) in cells.iter().zip(&widths) {
            let pad = width - cell.chars().count();
            let _ = write!(text, " {cell}{} |", " ".repeat(pad));
        }
        text
    };
    let separator = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("|");
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(header));
    let _ = writeln!(out, "|{separator}|");
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
    out
}
