//! The `porter` binary: parse the command line, start logging, dispatch.

use clap::Parser;
use porter::{
    platform::config,
    shell::{cli, telemetry},
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let logging = config::log_format_from_env()
        .and_then(|format| Ok((format, config::log_filter_from_env()?)));
    match logging {
        Ok((format, filter)) => telemetry::init(format, &filter),
        Err(error) => return fail(&error),
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// One clear line on stderr, whatever failed.
fn fail(error: &dyn std::fmt::Display) -> std::process::ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("porter: {error:#}");
    }
    std::process::ExitCode::FAILURE
}
