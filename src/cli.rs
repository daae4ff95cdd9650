//! The `porter` command line: one subcommand per process role or operator task.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::{config::Config, startup};

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
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let pool = startup::connect_postgres(&crate::config::database_url_from_env()?).await?;
            startup::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Web => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database_url).await?;
            let listener = bind(config.port).await?;
            startup::run_web(config, pool, listener, startup::shutdown_on_signal()?).await
        }
        Command::Worker => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database_url).await?;
            startup::run_worker(config, pool, startup::shutdown_on_signal()?).await
        }
        Command::Dev => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database_url).await?;
            startup::migrate(&pool).await?;
            let listener = bind(config.port).await?;
            let shutdown = startup::shutdown_on_signal()?;
            let web = startup::run_web(config.clone(), pool.clone(), listener, shutdown.clone());
            let worker = startup::run_worker(config, pool, shutdown);
            let (web, worker) = tokio::join!(web, worker);
            web.and(worker)
        }
    }
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
