//! The `porter` command line: one subcommand per process role or operator
//! task. Split by what changes together: `args` defines what the command
//! line accepts, this module starts the processes and the read-only tools
//! (replay, events, status, templates, config), `operator` acts on the
//! running system for an operator. None of them wires a service: `startup`
//! does, once per process.

use std::{
    io::{IsTerminal as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use anyhow::Context as _;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::{
    features::accounts::replay,
    platform::{
        config::{self, Config, DatabaseConfig, RedisConfig, SecretKey, TemplatesConfig},
        connections::{connect_postgres, connect_redis},
        services::Services,
    },
    shell::{startup, web},
};

mod args;
mod operator;
mod replay_progress;

pub use args::{
    AccountsAction, ApiKeysAction, Cli, Command, DeliveriesAction, TemplatesAction, WebhooksAction,
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            startup::migrate_as_owner(&DatabaseConfig::from_env()?).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Web => {
            let config = Config::from_env()?;
            let pool = connect_postgres(&config.database).await?;
            let listeners = startup::WebListeners {
                api: bind(config.web.bind_address, config.web.port, "PORT").await?,
                metrics: bind_metrics(&config).await?,
            };
            let shutdown = startup::shutdown_on_signal()?;
            let services = Services::connect(config, pool).await?;
            startup::run_web(&services, listeners, shutdown).await
        }
        Command::Worker => {
            let config = Config::from_env()?;
            let pool = connect_postgres(&config.database).await?;
            let shutdown = startup::shutdown_on_signal()?;
            let metrics = bind_metrics(&config).await?;
            let services = Services::connect(config, pool).await?;
            if let Some(listener) = metrics {
                startup::serve_worker_metrics(&services, listener, &shutdown)?;
            }
            startup::run_worker(&services, shutdown).await
        }
        Command::Dev => {
            // For a developer's machine: nothing listens beyond loopback
            // unless BIND_ADDRESS says so, and webhooks may go to a
            // receiver on it.
            // A developer's machine needs no secret of its own: one made
            // for this run (sessions' devices and client hashes then change
            // with each start).
            let generated_key = SecretKey::generate()?;
            let config = Config::from_lookup(|name| {
                std::env::var(name).ok().or_else(|| match name {
                    "WEBHOOK_ALLOW_PRIVATE_NETWORKS" => Some("true".to_owned()),
                    "BIND_ADDRESS" => Some(Ipv4Addr::LOCALHOST.to_string()),
                    "SECRET_KEY" => Some(generated_key.clone()),
                    _ => None,
                })
            })?;
            startup::migrate_as_owner(&config.database).await?;
            let pool = connect_postgres(&config.database).await?;
            let listeners = startup::WebListeners {
                api: bind(config.web.bind_address, config.web.port, "PORT").await?,
                metrics: bind_metrics(&config).await?,
            };
            let shutdown = startup::shutdown_on_signal()?;
            let services = Services::connect(config, pool).await?;
            startup::run_dev(&services, listeners, shutdown).await
        }
        Command::Replay {
            read_model,
            dry_run,
            batch,
        } => {
            // The swap replaces the read model's table: the owner's work.
            let pool = connect_postgres(&DatabaseConfig::from_env()?.owner()).await?;
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
            let pool = connect_postgres(&DatabaseConfig::from_env()?).await?;
            let options = crate::features::public_events::cli::ListOptions {
                filter: crate::platform::store::EventFilter {
                    stream: stream.map(|s| match Uuid::parse_str(&s) {
                        Ok(id) => crate::platform::store::account_stream(id),
                        Err(_) => s,
                    }),
                    event_type,
                },
                after,
                limit,
                follow,
                format: if json {
                    crate::features::public_events::cli::Format::JsonLines
                } else {
                    crate::features::public_events::cli::Format::Table
                },
                reveal,
            };
            let cancel = startup::shutdown_on_signal()?;
            let mut out = std::io::stdout().lock();
            Ok(
                crate::features::public_events::cli::run(&pool, &options, &mut out, &cancel)
                    .await?,
            )
        }
        Command::Deliveries { action, limit } => operator::deliveries(action, limit).await,
        Command::Status => {
            let pool = connect_postgres(&DatabaseConfig::from_env()?).await?;
            let redis_config = RedisConfig::from_env()?;
            let mut redis = connect_redis(&redis_config.url).await?;
            let status = crate::features::operations::status::gather(
                &pool,
                &mut redis,
                &redis_config.namespace,
            )
            .await?;
            print(&crate::features::operations::status::render(&status))
        }
        Command::Accounts { action, json } => operator::accounts(action, json).await,
        Command::Webhooks { action, json } => operator::webhooks(action, json).await,
        Command::ApiKeys { action, json } => operator::api_keys(action, json).await,
        Command::Templates { action } => templates(action),
        Command::Config { reference: true } => print(&config::reference()),
        Command::Config { reference: false } => {
            print(&config::render_effective(&Config::effective_from_env()?))
        }
        Command::Openapi => print(&web::OPENAPI_TEXT),
    }
}

fn templates(action: TemplatesAction) -> anyhow::Result<()> {
    let config = TemplatesConfig::from_env()?;
    match action {
        TemplatesAction::Check => print(&crate::features::emails::preview::check(&config)?),
        TemplatesAction::Preview { kind, locale, out } => {
            let files =
                crate::features::emails::preview::preview(&config, kind, locale.as_ref(), &out)?;
            let list: String = files
                .iter()
                .map(|path| format!("{}\n", path.display()))
                .collect();
            print(&list)
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Operator output goes to stdout; logs go to stderr.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write to stdout")
}

async fn bind(host: IpAddr, port: u16, variable: &str) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::new(host, port);
    TcpListener::bind(address)
        .await
        .with_context(|| format!("bind {address} ({variable})"))
}

/// The metrics listener on `METRICS_BIND_ADDRESS`:`METRICS_PORT`, when a
/// port is set.
async fn bind_metrics(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    match config.metrics_port {
        Some(port) => bind(config.metrics_bind_address, port, "METRICS_PORT")
            .await
            .map(Some),
        None => Ok(None),
    }
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
