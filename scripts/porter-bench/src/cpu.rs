//! Where the CPU went during each phase: Porter's web and worker processes,
//! the `porter replay` command the bench runs, the Postgres backends serving
//! the bench's database, Redis, the bench itself, and the rest of the machine
//! (Postgres's background processes, the kernel, and anything else running
//! here).
//!
//! A command the bench runs to completion has exited, and its backends with
//! it, by the time the phase's last snapshot is taken: the command's CPU is
//! read from the bench's counters of waited-for children, and the backends
//! are read while the work runs ([`Phase::sample_while`]), so neither ends
//! up as "rest of the machine".
//!
//! CPU per operation does not depend on what else the machine is doing, so
//! it stays comparable between runs where throughput does not; and "rest of
//! the machine" shows when a neighbour has skewed a run.

use std::{
    collections::HashMap,
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::time::MissedTickBehavior;

/// How often [`Phase::sample_while`] reads the backends' counters. A
/// backend's CPU after its last reading is lost, so at most this much of
/// each exiting backend's work.
const BACKEND_SAMPLING: Duration = Duration::from_millis(100);

/// Reads CPU counters from `/proc`.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    ticks_per_second: f64,
    /// Matches the process titles of the Postgres backends to watch.
    database_marker: Option<String>,
    web: Option<u32>,
    worker: Option<u32>,
    profiler: Option<Profiler>,
}

/// Turns a `perf record --control fifo:FIFO -D -1` on for one phase only,
/// so a profile shows that phase and nothing else.
#[derive(Debug, Clone)]
pub struct Profiler {
    pub fifo: PathBuf,
    pub phase: String,
}

impl Profiler {
    fn send(&self, command: &str) {
        let sent = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .and_then(|mut fifo| fifo.write_all(format!("{command}\n").as_bytes()));
        if let Err(error) = sent {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "bench: warning: perf control {}: {error}",
                    self.fifo.display()
                );
            }
        }
    }
}

/// A phase being measured; [`Phase::end`] gives its CPU usage.
#[derive(Debug)]
pub struct Phase<'a> {
    meter: &'a CpuMeter,
    name: String,
    before: CpuSnapshot,
    profiled: bool,
    /// The last reading of each backend seen by [`Self::sample_while`].
    backends_seen: HashMap<u32, u64>,
}

impl Phase<'_> {
    /// Runs `work` within the phase, reading the watched Postgres backends
    /// every [`BACKEND_SAMPLING`], so a backend that exits before the phase
    /// ends (a child process's connection) still counts up to its last
    /// reading.
    pub async fn sample_while<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let mut every = tokio::time::interval(BACKEND_SAMPLING);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = every.tick() => self.backends_seen.extend(self.meter.postgres_ticks()),
            }
        }
    }

    pub fn end(self, operations: usize) -> PhaseCpu {
        let mut after = self.meter.snapshot();
        for (pid, ticks) in self.backends_seen {
            after.postgres.entry(pid).or_insert(ticks);
        }
        if self.profiled
            && let Some(profiler) = &self.meter.profiler
        {
            profiler.send("disable");
        }
        self.meter
            .usage(self.name, &self.before, &after, operations)
    }
}

#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    machine_busy: u64,
    web: u64,
    worker: u64,
    bench: u64,
    /// The bench's children that have exited and been waited for.
    children: u64,
    redis: u64,
    postgres: HashMap<u32, u64>,
}

/// Average cores busy during a phase, per consumer.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseCpu {
    pub phase: String,
    pub seconds: f64,
    pub operations: usize,
    pub machine: f64,
    pub web: f64,
    pub worker: f64,
    /// `porter replay`: the bench's child processes that ran to completion
    /// during the phase.
    pub replay: f64,
    pub postgres: f64,
    pub redis: f64,
    pub bench: f64,
    pub rest: f64,
    /// Milliseconds of CPU per operation, per consumer.
    pub web_ms_per_op: Option<f64>,
    pub worker_ms_per_op: Option<f64>,
    pub replay_ms_per_op: Option<f64>,
    pub postgres_ms_per_op: Option<f64>,
}

impl CpuMeter {
    pub fn new(database: &str, profiler: Option<Profiler>) -> Self {
        Self {
            ticks_per_second: clock_ticks(),
            database_marker: Some(format!(" {database} ")),
            web: None,
            worker: None,
            profiler,
        }
    }

    /// The same meter, watching another database's backends.
    pub fn for_database(&self, database: &str) -> Self {
        Self {
            database_marker: Some(format!(" {database} ")),
            ..self.clone()
        }
    }

    /// Starts measuring the phase `name` (and profiling it, if asked).
    pub fn start(&self, name: impl Into<String>) -> Phase<'_> {
        let name = name.into();
        let profiled = self.profiler.as_ref().is_some_and(|p| p.phase == name);
        let before = self.snapshot();
        if profiled && let Some(profiler) = &self.profiler {
            profiler.send("enable");
        }
        Phase {
            meter: self,
            name,
            before,
            profiled,
            backends_seen: HashMap::new(),
        }
    }

    pub fn with_porter(&self, web: u32, worker: u32) -> Self {
        Self {
            web: Some(web),
            worker: Some(worker),
            ..self.clone()
        }
    }

    pub fn snapshot(&self) -> CpuSnapshot {
        let ticks = |pid: Option<u32>| pid.and_then(process_ticks).unwrap_or(0);
        let bench = stat(std::process::id());
        let bench_ticks = |field| bench.as_deref().and_then(|s| parse_ticks(s, field));
        CpuSnapshot {
            at: Instant::now(),
            machine_busy: machine_busy_ticks().unwrap_or(0),
            web: ticks(self.web),
            worker: ticks(self.worker),
            bench: bench_ticks(OWN_TICKS).unwrap_or(0),
            children: bench_ticks(CHILDREN_TICKS).unwrap_or(0),
            redis: find_processes(|_, comm| comm == "redis-server")
                .into_iter()
                .filter_map(process_ticks)
                .sum(),
            postgres: self.postgres_ticks(),
        }
    }

    /// The watched Postgres backends' ticks, by pid.
    fn postgres_ticks(&self) -> HashMap<u32, u64> {
        let Some(marker) = &self.database_marker else {
            return HashMap::new();
        };
        find_processes(|cmdline, comm| {
            comm.starts_with("postgres") && cmdline.contains(marker.as_str())
        })
        .into_iter()
        .filter_map(|pid| Some((pid, process_ticks(pid)?)))
        .collect()
    }

    /// What happened between two snapshots, with `operations` done.
    pub fn usage(
        &self,
        phase: impl Into<String>,
        from: &CpuSnapshot,
        to: &CpuSnapshot,
        operations: usize,
    ) -> PhaseCpu {
        let seconds = (to.at - from.at).as_secs_f64().max(f64::EPSILON);
        let cores = |ticks: u64| ticks as f64 / self.ticks_per_second / seconds;
        // Backends that started during the phase count in full; ones that
        // ended are lost (pools keep theirs open, so that is rare).
        let postgres: u64 = to
            .postgres
            .iter()
            .map(|(pid, t)| t.saturating_sub(from.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        let web = cores(to.web.saturating_sub(from.web));
        let worker = cores(to.worker.saturating_sub(from.worker));
        let bench = cores(to.bench.saturating_sub(from.bench));
        let replay = cores(to.children.saturating_sub(from.children));
        let redis = cores(to.redis.saturating_sub(from.redis));
        let postgres = cores(postgres);
        let machine = cores(to.machine_busy.saturating_sub(from.machine_busy));
        let per_op = |c: f64| (operations > 0).then(|| c * seconds * 1000.0 / operations as f64);
        PhaseCpu {
            phase: phase.into(),
            seconds,
            operations,
            machine,
            web,
            worker,
            replay,
            postgres,
            redis,
            bench,
            rest: (machine - web - worker - replay - postgres - redis - bench).max(0.0),
            web_ms_per_op: per_op(web),
            worker_ms_per_op: per_op(worker),
            replay_ms_per_op: per_op(replay),
            postgres_ms_per_op: per_op(postgres),
        }
    }
}

/// `USER_HZ`: the unit of `/proc` CPU counters. 100 on every Linux that
/// matters; `getconf` confirms it where available.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy ticks of all CPUs together (everything but idle and iowait).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(stat.lines().next()?)
}

fn parse_machine_busy(line: &str) -> Option<u64> {
    let fields: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    Some(busy)
}

/// `/proc/<pid>/stat` fields (numbered from 1, as in proc(5)) that start a
/// user + system pair: the process's own threads (utime, stime), and its
/// children that have exited and been waited for (cutime, cstime).
const OWN_TICKS: usize = 14;
const CHILDREN_TICKS: usize = 16;

fn stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// User plus system ticks of a process, all threads included.
fn process_ticks(pid: u32) -> Option<u64> {
    parse_ticks(&stat(pid)?, OWN_TICKS)
}

/// The user + system pair of `/proc/<pid>/stat` that starts at `field`.
fn parse_ticks(stat: &str, field: usize) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; fields
    // resume, from field 3, after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(field - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Pids whose `(cmdline, comm)` satisfy `matches`.
fn find_processes(matches: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                .unwrap_or_default();
            matches(&cmdline, comm.trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_lines() {
        let line = "cpu  100 5 50 1000 20 3 2 1 0 0";
        assert_eq!(parse_machine_busy(line), Some(100 + 5 + 50 + 3 + 2 + 1));
        let process = "4242 (porter (web)) S 1 2 3 4 5 6 7 8 9 10 250 30 40 2 20 0";
        assert_eq!(parse_ticks(process, OWN_TICKS), Some(280));
        assert_eq!(parse_ticks(process, CHILDREN_TICKS), Some(42));
    }

    #[test]
    fn a_child_run_to_completion_is_counted_as_replay() {
        let meter = CpuMeter::new("no_such_database", None);
        let phase = meter.start("child");
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .expect("run sh");
        assert!(status.success());
        let usage = phase.end(1);
        assert!(usage.replay > 0.0, "{usage:?}");
    }

    #[test]
    fn this_process_is_measured() {
        let meter = CpuMeter::new("no_such_database", None);
        let phase = meter.start("spin");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let usage = phase.end(1);
        assert!(usage.bench >= 0.0 && usage.machine >= 0.0);
        assert!(usage.postgres == 0.0);
    }
}
