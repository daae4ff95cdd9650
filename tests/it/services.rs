//! Private Redis and Postgres instances that fault tests may stop, flush and
//! restart without touching the machine's shared services.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use tokio::process::Child;

use crate::helpers::eventually;

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A `redis-server` of this test's own, without persistence.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (is Redis installed?)");
        self.child = Some(child);
        let url = self.url();
        eventually("the private Redis to answer", || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        })
        .await;
    }

    /// Stops the server's process without closing its sockets (`SIGSTOP`):
    /// connections stay open and nothing answers, like a Redis stuck in a
    /// long command or behind a stalled network.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the private Redis is running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server at once, as a crash would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}

/// A Postgres cluster of this test's own, run as the `postgres` user (Postgres
/// refuses to run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("porter-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        if running_as_root() {
            run(
                "chown",
                &["postgres:postgres", dir.to_str().expect("UTF-8 path")],
                false,
            );
        }
        let data = dir.join("data");
        run(
            &pg_binary("initdb"),
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            true,
        );
        let postgres = Self {
            port: free_port(),
            dir,
        };
        postgres.resume().await;
        postgres
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        run(
            &pg_binary("pg_ctl"),
            &[
                "-D",
                self.data().to_str().expect("UTF-8 path"),
                "-l",
                log.to_str().expect("UTF-8 path"),
                "-o",
                &options,
                "-w",
                "start",
            ],
            true,
        );
        let url = self.url();
        eventually("the private Postgres to accept connections", || async {
            use sqlx::Connection;
            sqlx::PgConnection::connect(&url).await.ok().map(|_| ())
        })
        .await;
    }

    /// Stops the server, ending every connection (`-m fast`).
    pub fn halt(&self) {
        run(
            &pg_binary("pg_ctl"),
            &[
                "-D",
                self.data().to_str().expect("UTF-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            true,
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(runner_for(&pg_binary("pg_ctl")).0)
            .args(runner_for(&pg_binary("pg_ctl")).1)
            .args([
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The newest installed Postgres's `name` binary.
fn pg_binary(name: &str) -> String {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    candidates.retain(|path| Path::new(path).exists());
    candidates.sort();
    candidates
        .pop()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| name.to_owned())
}

/// Root runs Postgres tools as the `postgres` user.
fn runner_for(program: &str) -> (String, Vec<String>) {
    if running_as_root() {
        (
            "runuser".into(),
            vec!["-u".into(), "postgres".into(), "--".into(), program.into()],
        )
    } else {
        (program.into(), vec![])
    }
}

fn run(program: &str, args: &[&str], as_postgres: bool) {
    let (program, prefix) = if as_postgres {
        runner_for(program)
    } else {
        (program.to_owned(), vec![])
    };
    let output = Command::new(&program)
        .args(prefix)
        .args(args)
        .output()
        .expect("run a service command");
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
