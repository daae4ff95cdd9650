//! The `porter` command line: one subcommand per process role or operator task.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::{
    commands::Commands,
    config::{Config, DatabaseConfig, RedisConfig, TemplatesConfig},
    domain::Locale,
    ops,
    projection::replay::{self, DEFAULT_BATCH_SIZE, ReadModel},
    queue::EmailQueue,
    startup,
};

mod replay_progress;

#[derive(Debug, Parser)]
#[command(
    name = "porter",
    version,
    about = "Account sign-up and email activation, event-sourced"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations (the Procfile's release step).
    Migrate,
    /// Serve the HTTP API on PORT.
    Web,
    /// Send emails from the queue and keep read models up to date.
    Worker,
    /// Migrate, then run web and worker in one process (local use).
    Dev,
    /// Rebuild a read model from the first event into a shadow table and swap
    /// it in atomically. No jobs, no Redis writes, no email.
    Replay {
        /// The read model to rebuild.
        #[arg(long, value_enum, default_value = "accounts")]
        read_model: ReadModel,
        /// Build the shadow and report how it differs from the live table,
        /// then drop it without swapping.
        #[arg(long)]
        dry_run: bool,
        /// Events read and applied per batch.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(i64).range(1..))]
        batch: i64,
    },
    /// Print the event log in global order; emails and usernames masked.
    Events {
        /// Only this stream (`account-<uuid>` or the account's uuid).
        #[arg(long)]
        stream: Option<String>,
        /// Only events of this type, e.g. `ActivationEmailFailed`.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Start after the event at this position.
        #[arg(long, value_name = "POSITION", default_value_t = 0)]
        after: i64,
        /// At most this many events (per poll with --follow).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Keep printing new events as they commit, until Ctrl-C.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Show emails and usernames in clear (password hashes never print).
        #[arg(long)]
        reveal: bool,
    },
    /// Show the email queue, its workers and dead letters; retry dead emails.
    Deliveries {
        #[command(subcommand)]
        action: Option<DeliveriesAction>,
        /// List at most this many dead letters.
        #[arg(long, default_value_t = ops::deliveries::DEFAULT_LIST_LIMIT)]
        limit: usize,
    },
    /// One screen: projector lag, queue depths, dead letters, live workers
    /// and Redis persistence settings.
    Status,
    /// Check the email and page templates (TEMPLATES_DIR, DEFAULT_LOCALE,
    /// the brand) or preview one rendered with sample data.
    Templates {
        #[command(subcommand)]
        action: TemplatesAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesAction {
    /// Load and render every template of every locale, as the processes do
    /// at start; a problem is one line naming the file.
    Check,
    /// Write an email (.eml, .html, .txt) or a page (.html) rendered with
    /// sample data, per locale.
    Preview {
        /// What to render.
        #[arg(value_enum)]
        kind: ops::templates::PreviewKind,
        /// Only this locale (a BCP 47 tag; `de-CH` finds `de`); all when
        /// absent.
        #[arg(long, value_parser = parse_locale)]
        locale: Option<Locale>,
        /// The folder to write into (created when missing).
        #[arg(long, default_value = "var/preview")]
        out: std::path::PathBuf,
    },
}

fn parse_locale(raw: &str) -> Result<Locale, String> {
    Locale::parse(raw).map_err(|e| format!("{raw:?} {e}"))
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// Send a dead email again, as a new request of the same kind.
    Retry {
        /// The dead job's id, as `porter deliveries` lists it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        job_id: Option<String>,
        /// Retry every dead job.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            startup::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Web => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database).await?;
            let listener = bind(config.web.port).await?;
            startup::run_web(config, pool, listener, startup::shutdown_on_signal()?).await
        }
        Command::Worker => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database).await?;
            let shutdown = startup::shutdown_on_signal()?;
            startup::serve_worker_metrics(&config, &pool, &shutdown).await?;
            startup::run_worker(config, pool, shutdown).await
        }
        Command::Dev => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database).await?;
            startup::migrate(&pool).await?;
            let listener = bind(config.web.port).await?;
            let shutdown = startup::shutdown_on_signal()?;
            startup::serve_worker_metrics(&config, &pool, &shutdown).await?;
            startup::run_dev(config, pool, listener, shutdown).await
        }
        Command::Replay {
            read_model,
            dry_run,
            batch,
        } => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            let options = replay::ReplayOptions {
                read_model,
                batch_size: batch,
                dry_run,
            };
            let mut progress: Box<dyn replay::Progress> = if std::io::stderr().is_terminal() {
                Box::new(replay_progress::ProgressBar::new())
            } else {
                Box::new(replay_progress::ProgressLines::new(
                    std::io::stderr(),
                    std::time::Duration::from_secs(5),
                ))
            };
            let cancel = startup::shutdown_on_signal()?;
            let report = replay::replay(&pool, &options, progress.as_mut(), &cancel).await?;
            print(&replay_progress::render_report(&report))
        }
        Command::Events {
            stream,
            event_type,
            after,
            limit,
            follow,
            json,
            reveal,
        } => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            let options = ops::events::ListOptions {
                filter: crate::store::EventFilter {
                    stream: stream.map(|s| match Uuid::parse_str(&s) {
                        Ok(id) => crate::store::account_stream(id),
                        Err(_) => s,
                    }),
                    event_type,
                },
                after,
                limit,
                follow,
                format: if json {
                    ops::events::Format::JsonLines
                } else {
                    ops::events::Format::Table
                },
                reveal,
            };
            let cancel = startup::shutdown_on_signal()?;
            let mut out = std::io::stdout().lock();
            Ok(ops::events::run(&pool, &options, &mut out, &cancel).await?)
        }
        Command::Deliveries { action, limit } => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            let redis_config = RedisConfig::from_env()?;
            let mut redis = crate::connect_redis(&redis_config.url).await?;
            let namespace = &redis_config.namespace;
            // A retry is recorded and pushed at once, whatever the interval
            // between emails: the worker still keeps to it when it sends.
            let commands = Commands::new(
                pool.clone(),
                EmailQueue::new(redis.clone(), namespace),
                std::time::Duration::ZERO,
            );
            match action {
                None => {
                    let deliveries =
                        ops::deliveries::overview(&pool, &mut redis, namespace, limit).await?;
                    print(&ops::deliveries::render(&deliveries))
                }
                Some(DeliveriesAction::Retry {
                    job_id: Some(job_id),
                    ..
                }) => {
                    let outcome =
                        ops::deliveries::retry(&commands, &mut redis, namespace, &job_id).await?;
                    print(&format!("{job_id}: {outcome}\n"))
                }
                Some(DeliveriesAction::Retry { job_id: None, .. }) => {
                    let outcomes =
                        ops::deliveries::retry_all(&commands, &mut redis, namespace).await?;
                    let mut text = String::new();
                    let mut failed = 0;
                    for (job_id, outcome) in &outcomes {
                        match outcome {
                            Ok(outcome) => text.push_str(&format!("{job_id}: {outcome}\n")),
                            Err(error) => {
                                failed += 1;
                                text.push_str(&format!("{job_id}: failed: {error}\n"));
                            }
                        }
                    }
                    text.push_str(&format!(
                        "{} dead job(s) retried, {failed} failed\n",
                        outcomes.len() - failed
                    ));
                    print(&text)?;
                    anyhow::ensure!(failed == 0, "{failed} retries failed");
                    Ok(())
                }
            }
        }
        Command::Status => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            let redis_config = RedisConfig::from_env()?;
            let mut redis = crate::connect_redis(&redis_config.url).await?;
            let status = ops::status::gather(&pool, &mut redis, &redis_config.namespace).await?;
            print(&ops::status::render(&status))
        }
        Command::Templates { action } => templates(action),
    }
}

fn templates(action: TemplatesAction) -> anyhow::Result<()> {
    let config = TemplatesConfig::from_env()?;
    match action {
        TemplatesAction::Check => print(&ops::templates::check(&config)?),
        TemplatesAction::Preview { kind, locale, out } => {
            let files = ops::templates::preview(&config, kind, locale.as_ref(), &out)?;
            let list: String = files
                .iter()
                .map(|path| format!("{}\n", path.display()))
                .collect();
            print(&list)
        }
    }
}

/// Operator output goes to stdout; logs go to stderr.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write to stdout")
}

async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("bind port {port} (PORT)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
