//! Structured logs on stderr, as text for people or JSON for collectors.
//!
//! Field values are escaped by the formatter (JSON string escaping, or
//! `Debug` quoting in text), so user input cannot forge a log line.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::platform::config::LogFormat;

/// Installs the global subscriber; `filter` (`RUST_LOG`) picks the lines,
/// and one that does not parse is `info`.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}
