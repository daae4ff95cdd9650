//! `porter-bench`: measures Porter against this machine's limits and its
//! performance targets in one run, and reports without judging the build:
//! it exits 0 when a target is missed and non-zero only when the bench
//! itself breaks. `scripts/bench` builds Porter in release mode and runs it.
//!
//! The run, in order: the machine's limits (Argon2id, Postgres commits,
//! Redis round trips); then the real `porter web` and `porter worker`
//! release binaries, started as child processes against a fresh database,
//! their own Redis namespace and an SMTP sink in this process; sign-up at
//! concurrency 1, 8 and 32; sign-up → email at half the peak sign-up rate;
//! overload at concurrency 256; activation at 8 and 32 with the keys from
//! the captured emails; sign-in at 32 with the activated accounts and
//! `GET /api/me` at 32 with their tokens; password reset requests for
//! unknown, pending and active addresses, timed side by side; webhook
//! deliveries of the run's history to one and to four subscriptions, and
//! sign-up → webhook at half the peak sign-up rate (receivers in this
//! process); the processes' peak memory; and replay of a generated log
//! into another fresh database. All traffic goes to 127.0.0.1, and every
//! loop is bounded in count and time.
//!
//! `--soak DURATION` runs a different measurement instead: steady load for
//! the duration (see [`soak`]).

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use porter_test_support::smtp::MailServer;
use sqlx::{Connection as _, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::{
    cpu::{CpuMeter, PhaseCpu, Profiler},
    limits::RedisProbe,
    load::{Api, Run, SignIn, SignUp},
    processes::{PorterEnv, PorterProcess},
    replay::{ReplayResult, Replayer},
    report::{
        ActivationCheck, AddressTiming, ArrivalSummary, LoadSummary, Machine, MemorySummary,
        OverloadSummary, PhaseMemory, Report,
    },
    stats::{Latency, millis},
    webhooks::{Subscribed, Throughput},
};

/// Progress on stderr; defined before the modules so that they can use it.
macro_rules! say {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)]
        { eprintln!("bench: {}", format!($($arg)*)); }
    }};
}

mod account_load;
mod cpu;
mod limits;
mod load;
mod processes;
mod replay;
mod report;
mod soak;
mod stats;
mod webhooks;

/// Resends and password reset requests timed per class (unknown, pending,
/// active).
const RESET_SAMPLES: usize = 200;
/// Addresses per class the reset requests cycle through.
const RESET_ADDRESSES: usize = 5;
/// Email jobs run at once in the worker (Porter's default).
const WORKER_CONCURRENCY: usize = 16;
/// Subscriptions delivering at once in the webhook throughput phases
/// (issue 13's figures).
const WEBHOOK_SUBSCRIPTIONS: [usize; 2] = [1, 4];
/// Sign-ups at or above this latency during overload count as waiting too long:
/// the hashing queue holds 32 sign-ups per hashing thread, under a second
/// of work at the Argon2 limit, so a bounded queue answers well within it.
const OVERLOAD_DEADLINE: Duration = Duration::from_secs(2);
/// How long to wait for emails, a server or a read model before giving up.
const WAIT_DEADLINE: Duration = Duration::from_secs(60);
/// Other work on the machine below this many cores counts as quiet.
const QUIET_CORES: f64 = 0.33;
/// Drop leftover bench databases (from killed runs) older than this.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Parser)]
#[command(
    name = "porter-bench",
    about = "Benchmark Porter's release binaries against this machine's limits and Porter's targets"
)]
struct Args {
    /// Postgres server to use; the bench creates (and drops) its own
    /// `porter_bench_*` databases there.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis to use; the bench's keys live under their own namespace.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The `porter` release binary (default: next to this one).
    #[arg(long)]
    porter: Option<PathBuf>,
    /// Where the JSON report and the processes' logs go.
    #[arg(long, default_value = "var/bench")]
    out: PathBuf,
    /// What rebuilds the read model in the replay measurement.
    #[arg(long, value_enum, default_value_t = Replayer::PorterReplay)]
    replay_with: Replayer,
    /// Events in the generated log for the replay measurement [default:
    /// 1 000 000, or 100 000 with --quick].
    #[arg(long)]
    replay_events: Option<u64>,
    /// Short phases and a small replay, to check that the bench works; the
    /// figures are not comparable with a full run.
    #[arg(long)]
    quick: bool,
    /// Seconds to wait, before measuring, for other work on the machine to
    /// fall below a third of a core (a run starts anyway afterwards, and
    /// says how busy the machine was).
    #[arg(long, default_value_t = 90)]
    wait_quiet: u64,
    /// A `perf record --control fifo:FIFO -D -1` control FIFO: the bench
    /// enables recording for `--perf-phase` only.
    #[arg(long, requires = "perf_phase")]
    perf_control: Option<PathBuf>,
    /// The phase to profile, named as in the CPU table (e.g. "activation @32",
    /// "replay").
    #[arg(long, requires = "perf_control")]
    perf_phase: Option<String>,
    /// Keep the bench databases instead of dropping them at the end.
    #[arg(long)]
    keep: bool,
    /// An extra `NAME=VALUE` for the porter processes' environment, for
    /// experiments (e.g. `MALLOC_ARENA_MAX=2`); may be repeated.
    #[arg(long = "porter-env", value_parser = parse_env_pair)]
    porter_env: Vec<(String, String)>,
    /// Instead of the measurements above, run sign-ups, resends and
    /// activations at 80 % of the measured peak for this long (`600`,
    /// `10m`, `1h`), then report errors by status, p99 per minute and the
    /// processes' memory per minute with its slope.
    #[arg(long, value_parser = soak::parse_duration)]
    soak: Option<Duration>,
    /// Instead of the measurements above, only time loading an account
    /// with a long history against a fresh one (no porter processes).
    #[arg(long, conflicts_with = "soak")]
    account_load_only: bool,
}

fn parse_env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{raw:?} is not NAME=VALUE")),
    }
}

/// How long each phase runs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    argon2: Duration,
    commits: Duration,
    pings: Duration,
    sign_up: [(usize, Duration); 3],
    sign_in: Duration,
    me: Duration,
    sign_up_max: u64,
    email: Duration,
    overload: Duration,
    overload_max: u64,
    activation_max: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let s = Duration::from_secs;
        let scale = |d: Duration| if quick { d / 4 } else { d };
        Self {
            argon2: scale(s(4)),
            commits: scale(s(3)),
            pings: scale(s(3)),
            sign_up: [(1, scale(s(5))), (8, scale(s(6))), (32, scale(s(8)))],
            sign_in: scale(s(8)),
            me: scale(s(6)),
            sign_up_max: 5_000,
            email: scale(s(12)),
            overload: scale(s(5)),
            overload_max: 100_000,
            activation_max: s(30),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one run uses, and cleans up.
#[derive(Debug)]
struct Setup {
    args: Args,
    plan: Plan,
    started_at: chrono::DateTime<chrono::Utc>,
    stamp: String,
    porter: PathBuf,
    log_dir: PathBuf,
    database: String,
    database_url: String,
    replay_database: String,
    replay_database_url: String,
    namespace: String,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let stamp = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let porter = match &args.porter {
        Some(path) => path.clone(),
        None => processes::default_porter_binary().context("locate the porter binary")?,
    };
    anyhow::ensure!(
        porter.is_file(),
        "{} not found: build it with `cargo build --release --bin porter` (scripts/bench does)",
        porter.display()
    );
    let log_dir = args.out.join(&stamp);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    let database = format!("porter_bench_{}", stamp.to_lowercase());
    let replay_database = format!("{database}_replay");
    let setup = Setup {
        plan: Plan::new(args.quick),
        database_url: database_url(&args.database_url, &database)?,
        replay_database_url: database_url(&args.database_url, &replay_database)?,
        database,
        replay_database,
        namespace: format!("porter-bench-{}", stamp.to_lowercase()),
        started_at,
        stamp,
        porter,
        log_dir,
        args,
    };
    say!("run {} (logs in {})", setup.stamp, setup.log_dir.display());
    let mut admin = PgConnection::connect(&setup.args.database_url)
        .await
        .context("connect to Postgres (DATABASE_URL)")?;
    drop_leftover_databases(&mut admin).await;
    for name in [&setup.database, &setup.replay_database] {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("create database {name}"))?;
    }
    if let Some(duration) = setup.args.soak {
        let soaked = Box::pin(soak(&setup, duration)).await;
        cleanup(&setup, &mut admin).await;
        let text = soaked?.render();
        let path = setup.args.out.join(format!("{}-soak.txt", setup.stamp));
        std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
        #[allow(clippy::print_stdout)]
        {
            println!("\n{text}");
            println!("text: {}", path.display());
        }
        say!("finished in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    if setup.args.account_load_only {
        let measured = account_load_only(&setup).await;
        cleanup(&setup, &mut admin).await;
        #[allow(clippy::print_stdout)]
        {
            println!("\naccount load: {}", measured?.row());
        }
        say!("finished in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let measured = Box::pin(measure(&setup)).await;
    cleanup(&setup, &mut admin).await;
    let mut report = measured?;
    report.seconds = started.elapsed().as_secs_f64();
    report.targets = report::targets(&report);

    let json_path = setup.args.out.join(format!("{}.json", setup.stamp));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    #[allow(clippy::print_stdout)]
    {
        println!("\n{}", report::table(&report));
        println!("JSON: {}", json_path.display());
    }
    say!("finished in {:.0} s", report.seconds);
    Ok(())
}

fn database_url(server: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(server).context("DATABASE_URL is not a URL")?;
    url.set_path(name);
    Ok(url.to_string())
}

/// Everything measured while the databases exist: the phases in the order
/// the report shows them, each in its own function below.
async fn measure(setup: &Setup) -> anyhow::Result<Report> {
    migrate(setup).await?;
    let machine = machine(&setup.database_url, &setup.args.redis_url).await?;
    let meter = CpuMeter::new(&setup.database, profiler(&setup.args));
    let mut cpu: Vec<PhaseCpu> = vec![wait_for_quiet(&meter, setup.args.wait_quiet).await];
    let limits = measure_limits(setup, machine.cpus, &meter, &mut cpu).await?;
    let mut porter = Porter::start(setup, machine.cpus, &meter).await?;
    porter.warm_up().await?;
    let sign_up = porter.sign_up(&mut cpu).await?;
    let sign_up_to_email = porter.sign_up_to_email(&sign_up, &mut cpu).await?;
    let overload = porter.overload(&mut cpu).await?;
    let (activation, activation_check) = porter.activation(&mut cpu).await?;
    let (sign_in, tokens) = porter.sign_in(&mut cpu).await?;
    let me = porter.me(&tokens, &mut cpu).await?;
    let resend_timing = porter.address_timing(AddressKind::Resend, &mut cpu).await?;
    let reset_timing = porter.address_timing(AddressKind::Reset, &mut cpu).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&setup.database_url)
        .await
        .context("connect to the bench database")?;
    let webhook_throughput = porter.webhook_throughput(&pool, &mut cpu).await?;
    let sign_up_to_webhook = porter.sign_up_to_webhook(&pool, &sign_up, &mut cpu).await?;
    pool.close().await;
    let porter_env = porter.reported_env();
    let memory = porter.stop().await?;
    say!("account load: long history against fresh");
    let account_load = account_load::run(&setup.database_url).await?;
    let replay = measure_replay(setup, &meter, &mut cpu).await?;
    Ok(Report {
        started_at: setup.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        seconds: 0.0,
        quick: setup.args.quick,
        machine,
        porter_env,
        limits,
        sign_up,
        sign_up_to_email,
        overload,
        activation,
        activation_check,
        sign_in,
        me,
        resend_timing,
        reset_timing,
        webhook_throughput,
        sign_up_to_webhook,
        memory,
        account_load,
        replay,
        cpu,
        targets: Vec::new(),
    })
}

/// `--account-load-only`: the account load phase on the migrated bench
/// database, nothing else.
async fn account_load_only(setup: &Setup) -> anyhow::Result<account_load::AccountLoad> {
    migrate(setup).await?;
    account_load::run(&setup.database_url).await
}

/// Which request about an address a timing phase sends.
#[derive(Debug, Clone, Copy)]
enum AddressKind {
    Resend,
    Reset,
}

impl AddressKind {
    fn name(self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::Reset => "reset request",
        }
    }

    fn phase(self) -> &'static str {
        match self {
            Self::Resend => "resends",
            Self::Reset => "reset requests",
        }
    }
}

/// The soak: Porter started as for the measurements, warmed up, then
/// [`Porter::soak`]. Other work on the machine is noted, not waited for.
async fn soak(setup: &Setup, duration: Duration) -> anyhow::Result<soak::SoakReport> {
    migrate(setup).await?;
    let machine = machine(&setup.database_url, &setup.args.redis_url).await?;
    let meter = CpuMeter::new(&setup.database, None);
    let idle = wait_for_quiet(&meter, 0).await;
    let mut porter = Porter::start(setup, machine.cpus, &meter).await?;
    porter.warm_up().await?;
    let report = porter.soak(duration).await?;
    porter.stop().await?;
    Ok(report.with_busy_note(format!(
        "; other work used {:.2} of {} cores before the start",
        idle.rest, machine.cpus
    )))
}

async fn migrate(setup: &Setup) -> anyhow::Result<()> {
    say!("migrating {}", setup.database);
    processes::migrate(
        &setup.porter,
        &setup.database_url,
        &setup.log_dir.join("migrate.log"),
    )
    .await?;
    processes::migrate(
        &setup.porter,
        &setup.replay_database_url,
        &setup.log_dir.join("migrate-replay.log"),
    )
    .await
}

fn profiler(args: &Args) -> Option<Profiler> {
    match (&args.perf_control, &args.perf_phase) {
        (Some(fifo), Some(phase)) => Some(Profiler {
            fifo: fifo.clone(),
            phase: phase.clone(),
        }),
        _ => None,
    }
}

/// 1. The machine's limits, before Porter runs.
async fn measure_limits(
    setup: &Setup,
    cpus: usize,
    meter: &CpuMeter,
    cpu: &mut Vec<PhaseCpu>,
) -> anyhow::Result<report::Limits> {
    let plan = setup.plan;
    say!("limit: Argon2id on {cpus} threads");
    let argon2_time = plan.argon2;
    let phase = meter.start("limit: Argon2id");
    let setting = |name: &str, default: u32| {
        setup
            .args
            .porter_env
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(default)
    };
    let cost = limits::Argon2Cost {
        memory_kib: setting("ARGON2_MEMORY_KIB", 19_456),
        passes: setting("ARGON2_ITERATIONS", 2),
    };
    let argon2 = tokio::task::spawn_blocking(move || limits::argon2(cpus, argon2_time, cost))
        .await
        .context("argon2 limit panicked")??;
    cpu.push(phase.end(argon2.hashes as usize));
    say!("limit: Postgres single-row commits");
    limits::create_scratch_table(&setup.database_url).await?;
    let mut postgres = Vec::new();
    for clients in [1, 8, 32] {
        let (rate, usage) =
            limits::postgres_commits(&setup.database_url, clients, plan.commits, meter).await?;
        cpu.push(usage);
        postgres.push(rate);
    }
    limits::drop_scratch_table(&setup.database_url).await?;
    let probe_key = format!("{}:probe", setup.namespace);
    say!("limit: Redis PING");
    let phase = meter.start("limit: Redis PING");
    let redis = limits::redis_round_trips(
        &setup.args.redis_url,
        &probe_key,
        RedisProbe::Ping,
        50,
        plan.pings,
    )
    .await?;
    cpu.push(phase.end(redis.round_trips as usize));
    say!("limit: Redis GET @32");
    let phase = meter.start("limit: Redis GET @32");
    let redis_get = limits::redis_round_trips(
        &setup.args.redis_url,
        &probe_key,
        RedisProbe::Get,
        32,
        plan.pings,
    )
    .await?;
    cpu.push(phase.end(redis_get.round_trips as usize));
    Ok(report::Limits {
        argon2,
        postgres,
        redis,
        redis_get,
    })
}

/// Porter's web and worker processes while they run, and what their phases
/// share: the sink they send to, the client, the meter that watches them,
/// memory after each phase, and every address whose sign-up was accepted.
struct Porter<'a> {
    setup: &'a Setup,
    env: PorterEnv,
    web: PorterProcess,
    worker: PorterProcess,
    sink: MailServer,
    api: Api,
    meter: CpuMeter,
    memory: Vec<PhaseMemory>,
    accepted: Vec<String>,
    /// Addresses of the accounts the activation phase activated.
    active: Vec<String>,
}

impl<'a> Porter<'a> {
    /// 2. Porter, as production runs it, with the sink as its SMTP server.
    async fn start(setup: &'a Setup, cpus: usize, meter: &CpuMeter) -> anyhow::Result<Self> {
        let sink = MailServer::bind().await.context("start the SMTP sink")?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut env = PorterEnv {
            vars: [
                ("DATABASE_URL", setup.database_url.clone()),
                ("REDIS_URL", setup.args.redis_url.clone()),
                ("REDIS_NAMESPACE", setup.namespace.clone()),
                ("PORT", port.to_string()),
                ("PUBLIC_BASE_URL", format!("{base}/")),
                ("SMTP_URL", sink.url()),
                ("MAIL_FROM", "Porter <no-reply@porter.example>".into()),
                ("SECRET_KEY", "bench-".repeat(8)),
                ("WORKER_CONCURRENCY", WORKER_CONCURRENCY.to_string()),
                ("HASH_CONCURRENCY", cpus.to_string()),
                ("LOG_FORMAT", "json".into()),
                ("RUST_LOG", "info".into()),
                // The bench's webhook receivers listen on 127.0.0.1.
                ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true".into()),
                // Every bench request comes from 127.0.0.1: open the per-IP
                // budgets so the run measures throughput, not the limits (the
                // test suite covers those).
                ("RATE_LIMIT_SIGN_UP_PER_IP", "100000000/1m".into()),
                ("RATE_LIMIT_SIGN_UP_GLOBAL", "100000000/1m".into()),
                ("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", "100000000/1m".into()),
                ("RATE_LIMIT_RESEND_PER_IP", "100000000/1m".into()),
                ("RATE_LIMIT_RESEND_PER_EMAIL", "100000000/1m".into()),
                ("EMAIL_PER_ADDRESS", "100000000/1m".into()),
                ("RATE_LIMIT_RESET_PER_IP", "100000000/1m".into()),
                ("RATE_LIMIT_RESET_PER_EMAIL", "100000000/1m".into()),
                ("RATE_LIMIT_SIGN_IN_PER_ACCOUNT", "100000000/1m".into()),
                ("RATE_LIMIT_SIGN_IN_PER_IP", "100000000/1m".into()),
                // The overload phase's 256 clients are one client to Porter.
                ("MAX_CONNECTIONS_PER_CLIENT", "100000".into()),
                // Sign-ins reserve failure budgets before they hash.
                ("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "100000000/1m".into()),
                ("RATE_LIMIT_FAILED_SIGN_IN_PER_IP", "100000000/1m".into()),
            ]
            .map(|(name, value)| (name.to_owned(), value))
            .to_vec(),
        };
        for (name, value) in &setup.args.porter_env {
            say!("porter env: {name}={value}");
            env.vars.retain(|(k, _)| k != name);
            env.vars.push((name.clone(), value.clone()));
        }
        let porter = &setup.porter;
        let mut web = PorterProcess::spawn(porter, "web", &env, &setup.log_dir.join("web.log"))?;
        let mut worker =
            PorterProcess::spawn(porter, "worker", &env, &setup.log_dir.join("worker.log"))?;
        let api = Api::new(&base, &setup.stamp.to_lowercase())?;
        wait_until_ready(&api, &mut web, &mut worker).await?;
        let meter = meter.with_porter(web.pid, worker.pid);
        Ok(Self {
            setup,
            env,
            web,
            worker,
            sink,
            api,
            meter,
            memory: Vec::new(),
            accepted: Vec::new(),
            active: Vec::new(),
        })
    }

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        say!("warm-up");
        let warm_up = sign_ups(&self.api, 2, Duration::from_secs(10), 8).await;
        let warm_emails = accepted_emails(&warm_up);
        anyhow::ensure!(
            warm_emails.len() == 8,
            "warm-up sign-ups failed: {:?}",
            report::status_counts(warm_up.samples.iter().map(|s| &s.value.status))
        );
        anyhow::ensure!(
            self.sink.wait_for(&warm_emails, WAIT_DEADLINE).await == warm_emails.len(),
            "warm-up emails did not arrive; see {}",
            self.setup.log_dir.display()
        );
        self.accepted.extend(warm_emails);
        Ok(())
    }

    /// 3. Sign-up at 1, 8 and 32.
    async fn sign_up(&mut self, cpu: &mut Vec<PhaseCpu>) -> anyhow::Result<Vec<LoadSummary>> {
        let plan = self.setup.plan;
        let mut sign_up = Vec::new();
        for (concurrency, duration) in plan.sign_up {
            say!("sign-up @{concurrency} for {duration:?}");
            let phase = self.meter.start(format!("sign-up @{concurrency}"));
            let run = sign_ups(&self.api, concurrency, duration, plan.sign_up_max).await;
            cpu.push(phase.end(run.count(SignUp::accepted)));
            sign_up.push(LoadSummary::of(concurrency, &run, SignUp::accepted, |s| {
                &s.status
            }));
            self.drain(&run).await;
            self.check_running()?;
        }
        self.record_memory("sign-up")?;
        Ok(sign_up)
    }

    /// 4. Sign-up → email at half the peak sign-up rate, open loop.
    async fn sign_up_to_email(
        &mut self,
        sign_up: &[LoadSummary],
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<ArrivalSummary> {
        let duplicates_before = self.sink.duplicates();
        let phase = self.meter.start("sign-up → email");
        let (rate, run) = self.sign_ups_at_half_peak("sign-up → email", sign_up).await;
        let accepted = accepted_emails(&run);
        let sink = &self.sink;
        sink.wait_for(&accepted, WAIT_DEADLINE).await;
        cpu.push(phase.end(accepted.len()));
        let summary = ArrivalSummary::of(
            rate,
            &run,
            |email| sink.first_to(email).map(|mail| mail.at),
            sink.duplicates() - duplicates_before,
        );
        self.accepted.extend(accepted);
        self.record_memory("sign-up → email")?;
        Ok(summary)
    }

    /// Sign-ups, open loop, at half the peak rate the sign-up phase
    /// measured, for the plan's `email` duration: the load at which what
    /// follows a sign-up (its email, its webhook) is timed. Returns the
    /// rate and the run.
    async fn sign_ups_at_half_peak(
        &self,
        phase: &str,
        sign_up: &[LoadSummary],
    ) -> (f64, Run<SignUp>) {
        let peak = sign_up.iter().map(|s| s.ok_per_second).fold(0.0, f64::max);
        let rate = (peak / 2.0).max(1.0);
        let count = (rate * self.setup.plan.email.as_secs_f64())
            .round()
            .max(10.0) as u64;
        say!("{phase}: {count} sign-ups at {rate:.1}/s");
        let api = self.api.clone();
        let run = load::open_loop(rate, count, move |_| {
            let api = api.clone();
            async move { api.sign_up().await }
        })
        .await;
        (rate, run)
    }

    /// 5. Overload: many more clients than the hashing queue holds.
    async fn overload(&mut self, cpu: &mut Vec<PhaseCpu>) -> anyhow::Result<OverloadSummary> {
        let plan = self.setup.plan;
        say!("overload @256 for {:?}", plan.overload);
        let phase = self.meter.start("overload @256");
        let run = sign_ups(&self.api, 256, plan.overload, plan.overload_max).await;
        cpu.push(phase.end(run.samples.len()));
        let overload = OverloadSummary {
            concurrency: 256,
            seconds: run.elapsed.as_secs_f64(),
            requests: run.samples.len(),
            statuses: report::status_counts(run.samples.iter().map(|s| &s.value.status)),
            accepted_per_second: run.rate(SignUp::accepted),
            latency_all: Latency::of(&run.latencies(|_| true)),
            deadline_ms: millis(OVERLOAD_DEADLINE),
            over_deadline: run
                .samples
                .iter()
                .filter(|s| s.latency > OVERLOAD_DEADLINE)
                .count(),
        };
        self.drain(&run).await;
        self.check_running()?;
        self.record_memory("overload")?;
        Ok(overload)
    }

    /// 6. Activation with the keys the sink captured.
    async fn activation(
        &mut self,
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<(Vec<LoadSummary>, ActivationCheck)> {
        let mut keyed: Vec<(String, String)> = Vec::new();
        let mut emails_without_key = 0;
        for email in &self.accepted {
            match self
                .sink
                .first_to(email)
                .and_then(|mail| mail.find_activation_key())
            {
                Some(key) => keyed.push((email.clone(), key)),
                None => emails_without_key += 1,
            }
        }
        let split = keyed.len() * 2 / 5;
        let mut activation = Vec::new();
        let mut activated_emails = Vec::new();
        for (concurrency, slice) in [(8, &keyed[..split]), (32, &keyed[split..])] {
            say!("activation @{concurrency}: {} keys", slice.len());
            let keys: Arc<Vec<(String, String)>> = Arc::new(slice.to_vec());
            let phase = self.meter.start(format!("activation @{concurrency}"));
            let run = {
                let (api, keys) = (self.api.clone(), keys.clone());
                load::closed_loop(
                    concurrency,
                    self.setup.plan.activation_max,
                    keys.len() as u64,
                    move |i| {
                        let (api, keys) = (api.clone(), keys.clone());
                        async move { (i, api.activate(&keys[i as usize].1).await) }
                    },
                )
                .await
            };
            cpu.push(phase.end(run.count(|(_, a)| a.activated())));
            activation.push(LoadSummary::of(
                concurrency,
                &run,
                |(_, a)| a.activated(),
                |(_, a)| &a.status,
            ));
            activated_emails.extend(
                run.samples
                    .iter()
                    .filter(|s| s.value.1.activated())
                    .map(|s| keys[s.value.0 as usize].0.clone()),
            );
        }
        let check = check_activations(
            &self.setup.database_url,
            keyed.len(),
            emails_without_key,
            &activated_emails,
        )
        .await?;
        self.active = activated_emails;
        self.record_memory("activation")?;
        Ok((activation, check))
    }

    /// 7. Sign-in at 32 with the activated accounts.
    ///
    /// One Argon2 verification each, so the hashing threads bound it like
    /// sign-up. Returns the tokens for the next phase.
    async fn sign_in(
        &mut self,
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<(LoadSummary, Vec<String>)> {
        anyhow::ensure!(
            !self.active.is_empty(),
            "no activated account to sign in with"
        );
        let duration = self.setup.plan.sign_in;
        say!(
            "sign-in @32 for {duration:?} over {} accounts",
            self.active.len()
        );
        let logins: Arc<Vec<String>> = Arc::new(self.active.clone());
        let phase = self.meter.start("sign-in @32");
        let run = {
            let (api, logins) = (self.api.clone(), logins.clone());
            load::closed_loop(32, duration, u64::MAX, move |i| {
                let (api, logins) = (api.clone(), logins.clone());
                async move { api.sign_in(&logins[i as usize % logins.len()]).await }
            })
            .await
        };
        cpu.push(phase.end(run.count(SignIn::signed_in)));
        let summary = LoadSummary::of(32, &run, SignIn::signed_in, |s| &s.status);
        let tokens: Vec<String> = run
            .samples
            .into_iter()
            .filter_map(|sample| sample.value.token)
            .collect();
        self.check_running()?;
        self.record_memory("sign-in")?;
        Ok((summary, tokens))
    }

    /// 8. `GET /api/me` at 32 with the sign-in phase's tokens.
    ///
    /// One Redis round trip each.
    async fn me(
        &mut self,
        tokens: &[String],
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<LoadSummary> {
        anyhow::ensure!(!tokens.is_empty(), "no session token to read with");
        let duration = self.setup.plan.me;
        say!(
            "GET /api/me @32 for {duration:?} over {} sessions",
            tokens.len()
        );
        let tokens: Arc<Vec<String>> = Arc::new(tokens.to_vec());
        let phase = self.meter.start("GET /api/me @32");
        let run = {
            let api = self.api.clone();
            load::closed_loop(32, duration, u64::MAX, move |i| {
                let (api, tokens) = (api.clone(), tokens.clone());
                async move { api.me(&tokens[i as usize % tokens.len()]).await }
            })
            .await
        };
        cpu.push(phase.end(run.count(|status| status.is(200))));
        let summary = LoadSummary::of(32, &run, |status| status.is(200), |status| status);
        self.check_running()?;
        self.record_memory("GET /api/me")?;
        Ok(summary)
    }

    /// 9. Resends and password reset requests, each for unknown, pending
    ///    and active addresses.
    ///
    /// One at a time, cycling through five addresses of each class; the
    /// answers must not tell the classes apart by their time either.
    async fn address_timing(
        &mut self,
        kind: AddressKind,
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<AddressTiming> {
        let mut pending = Vec::new();
        for _ in 0..RESET_ADDRESSES {
            let sign_up = self.api.sign_up().await;
            anyhow::ensure!(
                sign_up.accepted(),
                "sign-up for the {} phase: {:?}",
                kind.name(),
                sign_up.status
            );
            pending.push(sign_up.email);
        }
        let active: Vec<String> = self.active.iter().take(RESET_ADDRESSES).cloned().collect();
        anyhow::ensure!(active.len() == RESET_ADDRESSES, "too few active accounts");
        say!("{}s: {RESET_SAMPLES} per class", kind.name());
        let phase = self.meter.start(kind.phase());
        let mut samples: [Vec<Duration>; 3] = Default::default();
        let mut refused = 0;
        for i in 0..RESET_SAMPLES {
            for step in 0..3 {
                // Rotate which class goes first, so none always follows another.
                let class = (i + step) % 3;
                let email = match class {
                    0 => self.api.new_user().1,
                    1 => pending[i % RESET_ADDRESSES].clone(),
                    _ => active[i % RESET_ADDRESSES].clone(),
                };
                let sent = Instant::now();
                let status = match kind {
                    AddressKind::Resend => self.api.resend(&email).await,
                    AddressKind::Reset => self.api.request_reset(&email).await,
                };
                samples[class].push(sent.elapsed());
                if !status.is(202) {
                    refused += 1;
                }
            }
        }
        cpu.push(phase.end(3 * RESET_SAMPLES));
        self.sink.wait_for(&pending, WAIT_DEADLINE).await;
        self.check_running()?;
        Ok(AddressTiming::of(
            kind.name(),
            [
                ("unknown", &samples[0]),
                ("pending", &samples[1]),
                ("active", &samples[2]),
            ],
            refused,
        ))
    }

    /// 10. Webhook deliveries: the public events the run has committed so
    ///     far, replayed from the start of the log to one subscription,
    ///     then to four at once, each with its own receiver; timed from
    ///     first delivery to last (see [`webhooks`]).
    async fn webhook_throughput(
        &mut self,
        pool: &PgPool,
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<Vec<Throughput>> {
        let history = webhooks::public_history(pool).await?;
        let mut throughput = Vec::new();
        for subscriptions in WEBHOOK_SUBSCRIPTIONS {
            say!(
                "webhooks @{subscriptions}: {} public events to each subscription",
                history.len()
            );
            let phase = self.meter.start(format!("webhooks @{subscriptions}"));
            let mut subscribed = Vec::new();
            for _ in 0..subscriptions {
                subscribed.push(Subscribed::new(pool, true).await?);
            }
            webhooks::wait_for_deliveries(&subscribed, history.len(), WAIT_DEADLINE).await;
            let measured = Throughput::of(&history, &subscribed);
            cpu.push(phase.end(measured.delivered()));
            if !measured.complete() {
                say!("warning: webhooks @{subscriptions}: {}", measured.row());
            }
            for subscription in subscribed {
                subscription.remove(pool).await?;
            }
            self.check_running()?;
            throughput.push(measured);
        }
        self.record_memory("webhooks")?;
        Ok(throughput)
    }

    /// 11. Sign-up → webhook at half the peak sign-up rate, with one
    ///     subscription live: from each sign-up's `202` (its events are
    ///     committed before it) to the delivery of its `account.registered`.
    async fn sign_up_to_webhook(
        &mut self,
        pool: &PgPool,
        sign_up: &[LoadSummary],
        cpu: &mut Vec<PhaseCpu>,
    ) -> anyhow::Result<ArrivalSummary> {
        let subscribed = Subscribed::new(pool, false).await?;
        anyhow::ensure!(
            subscribed.wait_until_held(pool, WAIT_DEADLINE).await?,
            "no worker took the webhook subscription; see {}",
            self.setup.log_dir.display()
        );
        let phase = self.meter.start("sign-up → webhook");
        let (rate, run) = self
            .sign_ups_at_half_peak("sign-up → webhook", sign_up)
            .await;
        let accepted = accepted_emails(&run);
        let registered =
            webhooks::wait_for_registrations(&subscribed.receiver, &accepted, WAIT_DEADLINE).await;
        cpu.push(phase.end(accepted.len()));
        let summary = ArrivalSummary::of(
            rate,
            &run,
            |email| registered.get(email).copied(),
            webhooks::duplicates(&subscribed.receiver.delivered()),
        );
        subscribed.remove(pool).await?;
        self.drain(&run).await;
        self.check_running()?;
        self.record_memory("sign-up → webhook")?;
        Ok(summary)
    }

    /// 12. Peak memory, then a graceful stop.
    async fn stop(self) -> anyhow::Result<MemorySummary> {
        let web_memory = self.web.memory()?;
        let worker_memory = self.worker.memory()?;
        let (web_pid, worker_pid) = (self.web.pid, self.worker.pid);
        say!("stopping porter web and worker");
        let web_drain = self.web.stop().await?;
        let worker_drain = self.worker.stop().await?;
        Ok(MemorySummary {
            web_pid,
            worker_pid,
            web: web_memory,
            worker: worker_memory,
            phases: self.memory,
            web_drain_ms: millis(web_drain),
            worker_drain_ms: millis(worker_drain),
        })
    }

    /// The processes' environment as the report shows it: without the
    /// URLs of services, which may carry passwords.
    fn reported_env(&self) -> BTreeMap<String, String> {
        self.env
            .vars
            .iter()
            .filter(|(k, _)| !k.ends_with("_URL") || k == "PUBLIC_BASE_URL")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Waits for a phase's emails, so the next phase starts with an idle
    /// worker, and keeps their addresses for activation.
    async fn drain(&mut self, run: &Run<SignUp>) {
        let accepted = accepted_emails(run);
        let arrived = self.sink.wait_for(&accepted, WAIT_DEADLINE).await;
        if arrived < accepted.len() {
            say!(
                "warning: {} of {} emails did not arrive within {WAIT_DEADLINE:?}",
                accepted.len() - arrived,
                accepted.len()
            );
        }
        self.accepted.extend(accepted);
    }

    fn check_running(&mut self) -> anyhow::Result<()> {
        self.web.check_running()?;
        self.worker.check_running()
    }

    fn record_memory(&mut self, after: &'static str) -> anyhow::Result<()> {
        self.memory.push(PhaseMemory {
            after,
            web: self.web.memory()?,
            worker: self.worker.memory()?,
        });
        Ok(())
    }
}

/// 8. Replay, in its own database, with nothing else running.
async fn measure_replay(
    setup: &Setup,
    meter: &CpuMeter,
    cpu: &mut Vec<PhaseCpu>,
) -> anyhow::Result<ReplayResult> {
    let events =
        setup
            .args
            .replay_events
            .unwrap_or(if setup.args.quick { 100_000 } else { 1_000_000 });
    say!(
        "replay: generating {events} events, then rebuilding accounts with {:?}",
        setup.args.replay_with
    );
    let replay_meter = meter.for_database(&setup.replay_database);
    let (replay, replay_cpu) = replay::run(
        &setup.replay_database_url,
        events,
        setup.args.replay_with,
        &setup.porter,
        &setup.log_dir,
        &replay_meter,
    )
    .await?;
    cpu.push(replay_cpu);
    Ok(replay)
}

/// Samples the machine's load each second until nothing else is using
/// more than [`QUIET_CORES`] or `max_wait_seconds` have passed; returns the
/// last second's sample.
async fn wait_for_quiet(meter: &CpuMeter, max_wait_seconds: u64) -> PhaseCpu {
    let started = Instant::now();
    loop {
        let before = meter.snapshot();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sample = meter.usage("idle, before the run", &before, &meter.snapshot(), 0);
        if sample.rest < QUIET_CORES {
            return sample;
        }
        if started.elapsed() >= Duration::from_secs(max_wait_seconds) {
            say!(
                "warning: the machine is busy ({:.2} cores used by other work); measuring anyway",
                sample.rest
            );
            return sample;
        }
        if started.elapsed() < Duration::from_millis(1500) {
            say!(
                "other work uses {:.2} cores; waiting up to {max_wait_seconds} s for it to calm down",
                sample.rest
            );
        }
    }
}

async fn sign_ups(api: &Api, concurrency: usize, duration: Duration, max: u64) -> Run<SignUp> {
    let api = api.clone();
    load::closed_loop(concurrency, duration, max, move |_| {
        let api = api.clone();
        async move { api.sign_up().await }
    })
    .await
}

fn accepted_emails(run: &Run<SignUp>) -> Vec<String> {
    run.samples
        .iter()
        .filter(|s| s.value.accepted())
        .map(|s| s.value.email.clone())
        .collect()
}

/// Every activated account must be active in the log at once, and in the
/// `accounts` read model once the worker's projector has caught up.
async fn check_activations(
    url: &str,
    keys: usize,
    emails_without_key: usize,
    activated: &[String],
) -> anyhow::Result<ActivationCheck> {
    let mut connection = PgConnection::connect(url).await?;
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'AccountActivated'")
            .fetch_one(&mut connection)
            .await?;
    let started = Instant::now();
    let mut caught_up = None;
    let mut read_model_active = 0;
    while started.elapsed() < WAIT_DEADLINE {
        read_model_active = sqlx::query_scalar(
            "SELECT count(*) FROM accounts WHERE status = 'active' AND email = ANY($1)",
        )
        .bind(activated)
        .fetch_one(&mut connection)
        .await?;
        if read_model_active == activated.len() as i64 {
            caught_up = Some(millis(started.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ActivationCheck {
        keys,
        emails_without_key,
        activated: activated.len(),
        events,
        read_model_active,
        read_model_catch_up_ms: caught_up,
    })
}

async fn wait_until_ready(
    api: &Api,
    web: &mut PorterProcess,
    worker: &mut PorterProcess,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        web.check_running()?;
        worker.check_running()?;
        if api.ready().await {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < WAIT_DEADLINE,
            "porter web did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago, for `PORT`.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn machine(database_url: &str, redis_url: &str) -> anyhow::Result<Machine> {
    let mut connection = PgConnection::connect(database_url).await?;
    let mut setting = async |name: &str| -> anyhow::Result<String> {
        Ok(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&mut connection)
                .await?,
        )
    };
    let postgres = format!("PostgreSQL {}", setting("server_version").await?);
    let postgres_fsync = setting("fsync").await?;
    let postgres_synchronous_commit = setting("synchronous_commit").await?;
    let client = redis::Client::open(redis_url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis)
        .await?;
    let redis = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        postgres,
        postgres_fsync,
        postgres_synchronous_commit,
        redis,
    })
}

/// Drops the run's databases and Redis keys; failures are reported, not fatal.
async fn cleanup(setup: &Setup, admin: &mut PgConnection) {
    if let Err(error) = delete_redis_namespace(&setup.args.redis_url, &setup.namespace).await {
        say!("warning: Redis keys of {} left: {error:#}", setup.namespace);
    }
    if setup.args.keep {
        say!(
            "kept databases {} and {}",
            setup.database,
            setup.replay_database
        );
        return;
    }
    for name in [&setup.database, &setup.replay_database] {
        let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut *admin)
        .await;
        if let Err(error) = dropped {
            say!("warning: database {name} not dropped: {error}");
        }
    }
}

async fn delete_redis_namespace(url: &str, namespace: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Drops `porter_bench_*` databases that killed runs left, once they are
/// old enough that no run can still be using them.
async fn drop_leftover_databases(admin: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'porter\\_bench\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let now = chrono::Utc::now().naive_utc();
    for name in names {
        let stamp = name.trim_start_matches("porter_bench_");
        let old = stamp
            .get(..15)
            .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dt%H%M%S").ok())
            .and_then(|at| (now - at).to_std().ok())
            .is_some_and(|age| age > LEFTOVER_AGE);
        if old {
            say!("dropping leftover database {name}");
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}
