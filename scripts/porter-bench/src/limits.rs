//! What this machine can do at best, measured the same way Porter does the
//! work: Argon2id with Porter's parameters on every core, single-row
//! insert-and-commit into Postgres, and Redis round trips.
//!
//! Porter's figures are reported as fractions of these, so a result reads
//! the same on a laptop and on a server.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};

use crate::cpu::{CpuMeter, PhaseCpu};

/// Porter's Argon2id lanes (`src/platform/hashing.rs`); memory and passes are
/// Porter's `ARGON2_MEMORY_KIB` and `ARGON2_ITERATIONS`.
const ARGON2_LANES: u32 = 1;

/// The Argon2id cost the porter processes run with, so the limit is measured
/// with the same work per hash.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub passes: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Argon2Limit {
    pub threads: usize,
    pub hashes: u64,
    pub seconds: f64,
    pub hashes_per_second: f64,
    /// One hash on one thread with the others idle (best of three, warm).
    pub single_hash_ms: f64,
}

/// Hashes on `threads` OS threads for `duration`, the way Porter's web
/// process does (`hash_password`, which draws a salt each time).
pub fn argon2(threads: usize, duration: Duration, cost: Argon2Cost) -> anyhow::Result<Argon2Limit> {
    let hasher = argon2_hasher(cost)?;
    let mut single_hash_ms = f64::INFINITY;
    for _ in 0..4 {
        let started = Instant::now();
        hasher
            .hash_password(b"warm up the allocator and caches")
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        // The first hash also pays for faulting its memory in.
        single_hash_ms = single_hash_ms.min(started.elapsed().as_secs_f64() * 1000.0);
    }
    let hashes = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    if hasher
                        .hash_password(b"correct horse battery staple")
                        .is_ok()
                    {
                        hashes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let hashes = hashes.into_inner();
    Ok(Argon2Limit {
        threads,
        hashes,
        seconds,
        hashes_per_second: hashes as f64 / seconds,
        single_hash_ms,
    })
}

fn argon2_hasher(cost: Argon2Cost) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(cost.memory_kib, cost.passes, ARGON2_LANES, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitRate {
    pub clients: usize,
    pub commits: u64,
    pub seconds: f64,
    pub commits_per_second: f64,
}

/// Single-row `INSERT`s, each its own transaction (autocommit, so one commit
/// and one WAL flush each), from `clients` connections for `duration`, into
/// a scratch table of the database at `url`. The CPU it took is measured
/// while the connections are open, so their backends are counted.
pub async fn postgres_commits(
    url: &str,
    clients: usize,
    duration: Duration,
    meter: &CpuMeter,
) -> anyhow::Result<(CommitRate, PhaseCpu)> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(
            PgConnection::connect(url)
                .await
                .context("connect for the commit limit")?,
        );
    }
    let commits = Arc::new(AtomicU64::new(0));
    let phase = meter.start(format!("limit: Postgres commits @{clients}"));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for (client, mut connection) in connections.into_iter().enumerate() {
        let commits = commits.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                sqlx::query("INSERT INTO bench_scratch (client, payload) VALUES ($1, $2)")
                    .bind(client as i32)
                    .bind("a single row, committed on its own")
                    .execute(&mut connection)
                    .await?;
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(connection)
        }));
    }
    let mut connections = Vec::with_capacity(clients);
    for task in tasks {
        connections.push(task.await.context("commit task panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let commits = commits.load(Ordering::Relaxed);
    let cpu = phase.end(commits as usize);
    for connection in connections {
        connection.close().await?;
    }
    Ok((
        CommitRate {
            clients,
            commits,
            seconds,
            commits_per_second: commits as f64 / seconds,
        },
        cpu,
    ))
}

pub async fn create_scratch_table(url: &str) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE bench_scratch (\
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             client integer NOT NULL, \
             payload text NOT NULL, \
             at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut connection)
    .await
    .context("create the scratch table")?;
    Ok(())
}

pub async fn drop_scratch_table(url: &str) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    sqlx::query("DROP TABLE IF EXISTS bench_scratch")
        .execute(&mut connection)
        .await
        .context("drop the scratch table")?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisRate {
    pub clients: usize,
    pub round_trips: u64,
    pub seconds: f64,
    pub round_trips_per_second: f64,
}

/// What a Redis round trip sends.
#[derive(Debug, Clone, Copy)]
pub enum RedisProbe {
    Ping,
    /// `GET` of one small string key (what a session check compares to).
    Get,
}

impl RedisProbe {
    fn command(self, key: &str) -> redis::Cmd {
        match self {
            Self::Ping => redis::cmd("PING"),
            Self::Get => redis::Cmd::get(key),
        }
    }
}

/// `probe` round trips from `clients` connections, each waiting for its
/// answer before sending the next, for `duration`. `key` is the string key
/// `GET` reads (set first, deleted after).
pub async fn redis_round_trips(
    url: &str,
    key: &str,
    probe: RedisProbe,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<RedisRate> {
    let client = redis::Client::open(url).context("parse REDIS_URL")?;
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(
            client
                .get_multiplexed_async_connection()
                .await
                .context("connect to Redis")?,
        );
    }
    let mut setup = client
        .get_multiplexed_async_connection()
        .await
        .context("connect to Redis")?;
    redis::Cmd::set_ex(key, "x".repeat(200), 600)
        .query_async::<()>(&mut setup)
        .await
        .context("set the probe key")?;
    let round_trips = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for mut connection in connections {
        let (round_trips, failed) = (round_trips.clone(), failed.clone());
        let command = probe.command(key);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let answer: Result<String, _> = command.query_async(&mut connection).await;
                if answer.is_err() {
                    failed.store(true, Ordering::Relaxed);
                    return;
                }
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.context("ping task panicked")?;
    }
    redis::Cmd::del(key)
        .query_async::<()>(&mut setup)
        .await
        .context("delete the probe key")?;
    anyhow::ensure!(!failed.load(Ordering::Relaxed), "a Redis {probe:?} failed");
    let seconds = started.elapsed().as_secs_f64();
    let round_trips = round_trips.load(Ordering::Relaxed);
    Ok(RedisRate {
        clients,
        round_trips,
        seconds,
        round_trips_per_second: round_trips as f64 / seconds,
    })
}
