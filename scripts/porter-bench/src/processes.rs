//! The real `porter` release binary, run as child processes configured as
//! production would run them, so their memory can be read from `/proc`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Everything a Porter process is configured with: the environment a
/// deployment would set, with `SMTP_URL` pointing at the bench's sink.
#[derive(Debug, Clone)]
pub struct PorterEnv {
    pub vars: Vec<(String, String)>,
}

/// A running `porter <role>` process.
#[derive(Debug)]
pub struct PorterProcess {
    pub role: &'static str,
    pub pid: u32,
    child: Child,
}

impl PorterProcess {
    /// Starts `porter <role>` with exactly `env` (nothing inherited but
    /// `PATH`), logging to `log`.
    pub fn spawn(
        binary: &Path,
        role: &'static str,
        env: &PorterEnv,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("create log file {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg(role)
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log_file.try_clone().context("duplicate the log file")?,
            ))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {} {role}", binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("porter {role} exited at once"))?;
        Ok(Self { role, pid, child })
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("porter {} exited early: {status}", self.role),
        }
    }

    /// Peak and current resident memory, from `/proc/<pid>/status`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        Ok(Memory {
            peak_kib: status_kib(&status, "VmHWM:").context("VmHWM missing")?,
            current_kib: status_kib(&status, "VmRSS:").context("VmRSS missing")?,
        })
    }

    /// SIGTERM, then a wait for the graceful drain; SIGKILL past the deadline.
    /// Returns how long the drain took.
    pub async fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if self.child.try_wait()?.is_none() {
            // No signal API without `unsafe`; kill(1) sends it by pid.
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .status()
                .await
                .context("run kill -TERM")?;
            anyhow::ensure!(status.success(), "kill -TERM {} failed", self.pid);
        }
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("porter {} did not stop within {STOP_DEADLINE:?}", self.role);
            }
        }
        Ok(started.elapsed())
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub peak_kib: u64,
    pub current_kib: u64,
}

impl Memory {
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Runs `porter migrate` against `database_url`.
pub async fn migrate(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<()> {
    run_to_completion(binary, &["migrate"], &[("DATABASE_URL", database_url)], log).await
}

/// Runs `porter <args>` with `env` to completion, logging to `log`.
pub async fn run_to_completion(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<()> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create log file {}", log.display()))?;
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let status = command
        .status()
        .await
        .with_context(|| format!("run porter {}", args.join(" ")))?;
    anyhow::ensure!(
        status.success(),
        "porter {} failed ({status}); see {}",
        args.join(" "),
        log.display()
    );
    Ok(())
}

/// The `porter` binary next to this one (both are built by `scripts/bench`).
pub fn default_porter_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("porter"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_from_proc_status() {
        let status = "Name:\tporter\nVmHWM:\t   41234 kB\nVmRSS:\t   30000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(41_234));
        assert_eq!(status_kib(status, "VmRSS:"), Some(30_000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_peak() {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(status_kib(&status, "VmHWM:").is_some_and(|kib| kib > 0));
    }
}
