//! What the `porter` command line accepts: the clap definitions of every
//! subcommand, kept apart from what each one does (`mod.rs` starts the
//! processes, `operator.rs` acts for an operator) so `--help` reads in one
//! place.

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::{
    domain::Locale,
    features::accounts::replay::{DEFAULT_BATCH_SIZE, ReadModel},
};

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
    /// Apply database migrations (the Procfile's release step) as the owner
    /// (MIGRATION_DATABASE_URL, else DATABASE_URL), and grant DATABASE_URL's
    /// role its runtime privileges when it is another role.
    Migrate,
    /// Serve the HTTP API on PORT.
    Web,
    /// Send emails from the queue and keep read models up to date.
    Worker,
    /// Migrate, then run web and worker in one process (local use; webhooks
    /// may go to private addresses unless WEBHOOK_ALLOW_PRIVATE_NETWORKS
    /// says otherwise).
    Dev,
    /// Rebuild a read model from the first event into a shadow table and swap
    /// it in atomically. No jobs, no Redis writes, no email. Connects as the
    /// owner (MIGRATION_DATABASE_URL, else DATABASE_URL).
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
        #[arg(long, default_value_t = crate::features::emails::deliveries::DEFAULT_LIST_LIMIT)]
        limit: usize,
    },
    /// One screen: projector lag, queue depths, dead letters, live workers
    /// and Redis persistence settings.
    Status,
    /// Find, inspect and act on accounts: the admin API for operators with
    /// a shell.
    Accounts {
        #[command(subcommand)]
        action: AccountsAction,
        /// Print JSON (as the admin API answers) instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Create, list and revoke the admin API's keys.
    ApiKeys {
        #[command(subcommand)]
        action: ApiKeysAction,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Deliver public events to receivers as signed webhooks (Standard
    /// Webhooks): subscribe, list, pause, resume, rotate a secret, replay.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Check the email and page templates (TEMPLATES_DIR, DEFAULT_LOCALE,
    /// the brand) or preview one rendered with sample data.
    Templates {
        #[command(subcommand)]
        action: TemplatesAction,
    },
    /// Print every setting as `porter web` would run with it, and whether
    /// it came from the environment or the default; secrets redacted.
    Config {
        /// Print the configuration reference (docs/configuration.md)
        /// instead, from the table of settings; reads no variable.
        #[arg(long)]
        reference: bool,
    },
    /// Print the OpenAPI document the API serves at /api/openapi.json
    /// (docs/openapi.json); reads no variable.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum AccountsAction {
    /// The account holding an email address or a username.
    Find {
        #[arg(
            long,
            required_unless_present = "username",
            conflicts_with = "username"
        )]
        email: Option<String>,
        #[arg(long)]
        username: Option<String>,
    },
    /// An account's state.
    Show {
        id: Uuid,
    },
    /// An account's events, decoded (password hashes never print).
    History {
        id: Uuid,
    },
    /// A new activation email for a pending account.
    Resend {
        id: Uuid,
    },
    /// Verify a pending account by hand.
    Activate {
        id: Uuid,
    },
    /// Block an active account: it cannot sign in.
    Block {
        id: Uuid,
        #[arg(long)]
        reason: String,
    },
    Unblock {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysAction {
    /// Create a key; its secret is printed once and never stored.
    Create {
        name: String,
    },
    List,
    /// Revoke a key; it stops working at once.
    Revoke {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksAction {
    /// Subscribe URL to public events from now on; prints the subscription
    /// id and its `whsec_` secret, once. A URL whose host is a loopback,
    /// private, link-local or metadata address is refused unless
    /// WEBHOOK_ALLOW_PRIVATE_NETWORKS=true.
    Add {
        url: String,
        /// Only these public types (comma-separated), e.g.
        /// `account.registered,account.activated`; all when absent.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
    },
    /// Every subscription: state, deliveries, lag and last error.
    List,
    /// Stop delivering and forget the subscription.
    Remove { id: Uuid },
    /// Stop delivering after the delivery in flight; nothing is skipped.
    Pause { id: Uuid },
    /// Deliver again from the first undelivered event (also after a
    /// failure pause or a 410).
    Resume { id: Uuid },
    /// A new secret, printed once; the old one keeps signing beside it for
    /// WEBHOOK_SECRET_OVERLAP (24 h by default).
    RotateSecret { id: Uuid },
    /// Deliver again from a position, with the same event ids.
    Replay {
        id: Uuid,
        /// `start`, a feed cursor (`<tx>.<position>`) or an event id
        /// (`evt_…`, re-delivered itself).
        #[arg(long)]
        from: String,
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
        kind: crate::features::emails::preview::PreviewKind,
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
