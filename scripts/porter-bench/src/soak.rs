//! `--soak DURATION`: Porter under steady load for a long time, to show that
//! nothing grows or slows down with time.
//!
//! After a short peak measurement (sign-up at 32 clients), sign-ups arrive
//! at [`LOAD_FRACTION`] of that peak for the whole duration, open loop. Each
//! accepted sign-up waits for its email, every [`RESEND_EVERY`]th also asks
//! for a resend, and then it confirms its key, so sign-ups, resends and
//! activations all run together as they would in production. Every minute
//! the web and worker processes' resident memory is read. The report gives
//! the answers by status, the p99 latency per minute and the memory per
//! minute with a least-squares slope: a leak or a queue that never drains
//! shows as a slope, an error as a status.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use porter_test_support::smtp::MailServer;

use crate::{
    Porter, WAIT_DEADLINE,
    load::{Api, SignUp, Status},
    report::status_counts,
    stats::{Latency, ms},
};

/// The share of the measured peak sign-up rate the soak runs at.
pub const LOAD_FRACTION: f64 = 0.8;
/// One sign-up in this many also asks for a resend before activating.
const RESEND_EVERY: u64 = 4;
/// How long the peak measurement runs.
const PEAK_DURATION: Duration = Duration::from_secs(10);

/// Parses `600`, `600s`, `10m` or `1h`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => raw.split_at(at),
        None => (raw, "s"),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 600, 600s, 10m or 1h"))?;
    let seconds = match unit {
        "s" => count,
        "m" => count * 60,
        "h" => count * 3600,
        _ => return Err(format!("{raw:?}: the unit must be s, m or h")),
    };
    if seconds == 0 {
        return Err("must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    SignUp,
    Resend,
    Activation,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::SignUp => "sign-up",
            Self::Resend => "resend",
            Self::Activation => "activation",
        }
    }
}

/// One answered request, filed under the minute it was sent in.
#[derive(Debug)]
struct Record {
    kind: Kind,
    minute: usize,
    latency: Duration,
    status: Status,
}

/// Resident memory of both processes at the end of a minute, in MiB.
#[derive(Debug, Clone, Copy)]
struct MemorySample {
    web: f64,
    worker: f64,
}

/// What a soak measured.
#[derive(Debug)]
pub struct SoakReport {
    peak_per_second: f64,
    rate_per_second: f64,
    duration: Duration,
    busy_note: String,
    records: Vec<Record>,
    memory: Vec<MemorySample>,
    emails_missing: usize,
}

impl Porter<'_> {
    /// Measures the peak sign-up rate, then soaks at [`LOAD_FRACTION`] of it.
    pub async fn soak(&mut self, duration: Duration) -> anyhow::Result<SoakReport> {
        say!("soak: peak sign-up rate @32 for {PEAK_DURATION:?}");
        let peak = crate::sign_ups(&self.api, 32, PEAK_DURATION, 10_000).await;
        let peak_per_second = peak.rate(SignUp::accepted);
        self.drain(&peak).await;
        let rate = (peak_per_second * LOAD_FRACTION).max(1.0);
        say!(
            "soak: {rate:.1} sign-ups/s ({:.0} % of {peak_per_second:.1}/s) for {duration:?}",
            LOAD_FRACTION * 100.0
        );
        let records = Arc::new(Mutex::new(Vec::new()));
        let missing = Arc::new(Mutex::new(0usize));
        let started = Instant::now();
        let mut memory = Vec::new();
        let mut lives = Vec::new();
        let mut next_minute = started + Duration::from_secs(60);
        let mut sequence: u64 = 0;
        loop {
            let at = started + Duration::from_secs_f64(sequence as f64 / rate);
            if at >= started + duration {
                break;
            }
            if at >= next_minute {
                memory.push(self.memory_sample()?);
                self.check_running()?;
                next_minute += Duration::from_secs(60);
            }
            tokio::time::sleep_until(at.into()).await;
            let life = Life {
                api: self.api.clone(),
                sink: self.sink.clone(),
                records: records.clone(),
                missing: missing.clone(),
                started,
                resend: sequence.is_multiple_of(RESEND_EVERY),
            };
            lives.push(tokio::spawn(life.run()));
            sequence += 1;
        }
        tokio::time::sleep_until(next_minute.into()).await;
        memory.push(self.memory_sample()?);
        say!("soak: waiting for the last {} users", lives.len());
        for life in lives {
            let _ = life.await;
        }
        let records = std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
        let emails_missing = *missing.lock().unwrap_or_else(|e| e.into_inner());
        Ok(SoakReport {
            peak_per_second,
            rate_per_second: rate,
            duration,
            busy_note: String::new(),
            records,
            memory,
            emails_missing,
        })
    }

    fn memory_sample(&self) -> anyhow::Result<MemorySample> {
        let mib = |kib: u64| kib as f64 / 1024.0;
        Ok(MemorySample {
            web: mib(self.web.memory()?.current_kib),
            worker: mib(self.worker.memory()?.current_kib),
        })
    }
}

/// One user's sign-up, optional resend and activation.
struct Life {
    api: Api,
    sink: MailServer,
    records: Arc<Mutex<Vec<Record>>>,
    missing: Arc<Mutex<usize>>,
    started: Instant,
    resend: bool,
}

impl Life {
    async fn run(self) {
        let sent = Instant::now();
        let sign_up = self.api.sign_up().await;
        self.record(Kind::SignUp, sent, sign_up.status.clone());
        if !sign_up.accepted() {
            return;
        }
        let email = std::slice::from_ref(&sign_up.email);
        let key = match self.sink.wait_for(email, WAIT_DEADLINE).await {
            1 => self
                .sink
                .first_to(&sign_up.email)
                .and_then(|mail| mail.find_activation_key()),
            _ => None,
        };
        let Some(key) = key else {
            *self.missing.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            return;
        };
        if self.resend {
            let sent = Instant::now();
            let status = self.api.resend(&sign_up.email).await;
            self.record(Kind::Resend, sent, status);
        }
        let sent = Instant::now();
        let activation = self.api.activate(&key).await;
        self.record(Kind::Activation, sent, activation.status);
    }

    fn record(&self, kind: Kind, sent: Instant, status: Status) {
        let record = Record {
            kind,
            minute: (sent.duration_since(self.started).as_secs() / 60) as usize,
            latency: sent.elapsed(),
            status,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }
}

impl SoakReport {
    /// Notes how busy the machine was, for the report's first line.
    pub fn with_busy_note(mut self, note: String) -> Self {
        self.busy_note = note;
        self
    }

    /// 5xx answers other than `503` (a shed sign-up), and transport errors.
    pub fn server_errors(&self) -> usize {
        self.records
            .iter()
            .filter(|r| match &r.status {
                Status::Code(code) => *code >= 500 && *code != 503,
                Status::Transport(_) => true,
            })
            .count()
    }

    /// The report as text: statuses, the per-minute table and the slopes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "soak: {:.0} min at {:.1} sign-ups/s ({:.0} % of the measured peak {:.1}/s); \
             1 in {RESEND_EVERY} resends; every emailed key activated{}",
            self.duration.as_secs_f64() / 60.0,
            self.rate_per_second,
            LOAD_FRACTION * 100.0,
            self.peak_per_second,
            self.busy_note
        );
        out.push_str("\nanswers by status:\n");
        for kind in [Kind::SignUp, Kind::Resend, Kind::Activation] {
            let counts = status_counts(
                self.records
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| &r.status),
            );
            let counts: Vec<String> = counts
                .iter()
                .map(|(status, n)| format!("{status} × {n}"))
                .collect();
            let _ = writeln!(out, "  {:<10} {}", kind.name(), counts.join(", "));
        }
        let _ = writeln!(
            out,
            "  5xx other than shed 503s, and transport errors: {}; emails that never arrived: {}",
            self.server_errors(),
            self.emails_missing
        );
        out.push_str(
            "\n| minute | sign-ups | p99 sign-up | resends | p99 resend | activations | p99 activation | web RSS | worker RSS |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        let minutes = self.memory.len();
        let mut p99_sign_up = Vec::new();
        for minute in 0..minutes {
            let latency = |kind: Kind| {
                let latencies: Vec<Duration> = self
                    .records
                    .iter()
                    .filter(|r| r.kind == kind && r.minute == minute)
                    .map(|r| r.latency)
                    .collect();
                Latency::of(&latencies)
            };
            let (sign_up, resend, activation) = (
                latency(Kind::SignUp),
                latency(Kind::Resend),
                latency(Kind::Activation),
            );
            p99_sign_up.push(sign_up.p99_ms);
            let memory = self.memory[minute];
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} MiB | {:.1} MiB |",
                minute + 1,
                sign_up.count,
                ms(sign_up.p99_ms),
                resend.count,
                ms(resend.p99_ms),
                activation.count,
                ms(activation.p99_ms),
                memory.web,
                memory.worker
            );
        }
        let web: Vec<f64> = self.memory.iter().map(|m| m.web).collect();
        let worker: Vec<f64> = self.memory.iter().map(|m| m.worker).collect();
        out.push('\n');
        // Over all minutes but the first (warm-up), and over the second half
        // alone: allocators and pools settle early, a leak keeps growing.
        for from in [1, minutes / 2] {
            let _ = writeln!(
                out,
                "slope per minute, least squares over minutes {}..{minutes}: \
                 web RSS {:+.2} MiB, worker RSS {:+.2} MiB, sign-up p99 {:+.1} ms",
                from + 1,
                slope(web.get(from..).unwrap_or_default()),
                slope(worker.get(from..).unwrap_or_default()),
                slope(p99_sign_up.get(from..).unwrap_or_default()),
            );
        }
        out
    }
}

/// The least-squares slope of `values` against their index; zero for fewer
/// than two values.
fn slope(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    if values.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = values.iter().sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - mean_x;
        covariance += dx * (y - mean_y);
        variance += dx * dx;
    }
    covariance / variance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        assert!((slope(&[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-9);
        assert!(slope(&[4.0, 4.0, 4.0]).abs() < 1e-9);
        assert!(slope(&[4.0]).abs() < 1e-9);
    }
}
