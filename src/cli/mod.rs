//! The `porter` command line: one subcommand per process role or operator task.

use std::{
    io::{IsTerminal as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::{
    admin, api_keys,
    commands::Commands,
    config::{
        self, Config, DatabaseConfig, RedisConfig, SecretKey, TemplatesConfig, WebhookConfig,
    },
    domain::Locale,
    keys::{KeyPurpose, LinkKeys},
    ops,
    projection::replay::{self, DEFAULT_BATCH_SIZE, ReadModel},
    queue::EmailQueue,
    sessions::Sessions,
    startup,
    webhooks::subscriptions,
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
        #[arg(long, default_value_t = ops::deliveries::DEFAULT_LIST_LIMIT)]
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
            startup::migrate_as_owner(&DatabaseConfig::from_env()?).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Web => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database).await?;
            let listeners = startup::WebListeners {
                api: bind(config.web.bind_address, config.web.port, "PORT").await?,
                metrics: bind_metrics(&config).await?,
            };
            startup::run_web(config, pool, listeners, startup::shutdown_on_signal()?).await
        }
        Command::Worker => {
            let config = Config::from_env()?;
            let pool = startup::connect_postgres(&config.database).await?;
            let shutdown = startup::shutdown_on_signal()?;
            if let Some(listener) = bind_metrics(&config).await? {
                startup::serve_worker_metrics(&config, &pool, listener, &shutdown).await?;
            }
            startup::run_worker(config, pool, shutdown).await
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
            let pool = startup::connect_postgres(&config.database).await?;
            let listeners = startup::WebListeners {
                api: bind(config.web.bind_address, config.web.port, "PORT").await?,
                metrics: bind_metrics(&config).await?,
            };
            let shutdown = startup::shutdown_on_signal()?;
            startup::run_dev(config, pool, listeners, shutdown).await
        }
        Command::Replay {
            read_model,
            dry_run,
            batch,
        } => {
            // The swap replaces the read model's table: the owner's work.
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?.owner()).await?;
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
        Command::Accounts { action, json } => accounts(action, json).await,
        Command::Webhooks { action, json } => webhooks(action, json).await,
        Command::ApiKeys { action, json } => {
            let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
            match action {
                ApiKeysAction::Create { name } => {
                    let created = api_keys::create(&pool, &name).await?;
                    if json {
                        print_json(&serde_json::json!({ "id": created.id, "key": created.secret }))
                    } else {
                        print(&format!(
                            "id:  {}\nkey: {}\nThe key is shown only now; Porter keeps only its SHA-256.\n",
                            created.id, created.secret
                        ))
                    }
                }
                ApiKeysAction::List => {
                    let keys = api_keys::list(&pool).await?;
                    if json {
                        print_json(&keys)
                    } else {
                        print(&ops::accounts::render_keys(&keys))
                    }
                }
                ApiKeysAction::Revoke { id } => {
                    anyhow::ensure!(api_keys::revoke(&pool, id).await?, "no live API key {id}");
                    print(&format!("revoked {id}\n"))
                }
            }
        }
        Command::Templates { action } => templates(action),
        Command::Config { reference: true } => print(&config::reference()),
        Command::Config { reference: false } => {
            print(&config::render_effective(&Config::effective_from_env()?))
        }
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

/// `porter accounts …`, through the same `admin` functions as the API.
async fn accounts(action: AccountsAction, json: bool) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let pool = startup::connect_postgres(&config.database).await?;
    let redis = crate::connect_redis(&config.redis.url).await?;
    let namespace = &config.redis.namespace;
    // An operator's resend is pushed at once; the worker still keeps the
    // interval between emails when it sends.
    let commands = Commands::new(
        pool.clone(),
        EmailQueue::new(redis.clone(), namespace),
        std::time::Duration::ZERO,
    );
    let sessions = Sessions::new(redis.clone(), namespace, config.web.sessions);
    let activation_keys = LinkKeys::new(
        redis.clone(),
        namespace,
        KeyPurpose::Activation,
        config.mail.activation_ttl,
    );
    let reset_keys = LinkKeys::new(
        redis,
        namespace,
        KeyPurpose::PasswordReset,
        config.mail.reset_ttl,
    );
    let access = admin::Access {
        sessions: &sessions,
        activation_keys: &activation_keys,
        reset_keys: &reset_keys,
    };
    let metadata = crate::store::EventMetadata {
        actor: Some(ops::accounts::OPERATOR_ACTOR.into()),
        ..Default::default()
    };
    let details = match action {
        AccountsAction::Find { email, username } => {
            let found = match (email, username) {
                (Some(email), _) => {
                    let email = crate::domain::EmailAddress::parse(&email)
                        .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
                    admin::find_by_email(&commands, &email).await?
                }
                (None, username) => {
                    let username = username.context("give --email or --username")?;
                    let username = crate::domain::Username::parse(&username)
                        .map_err(|e| anyhow::anyhow!("--username: {e}"))?;
                    admin::find_by_username(&commands, &username).await?
                }
            };
            found.ok_or_else(|| anyhow::anyhow!("no such account"))?
        }
        AccountsAction::Show { id } => admin::details(&pool, id).await?,
        AccountsAction::History { id } => {
            let events = admin::history(&pool, id).await?;
            return if json {
                print_json(&events)
            } else {
                print(&ops::accounts::render_history(&events))
            };
        }
        AccountsAction::Resend { id } => {
            admin::resend_activation(&commands, id, &metadata).await?;
            admin::details(&pool, id).await?
        }
        AccountsAction::Activate { id } => admin::activate(&commands, id, &metadata).await?,
        AccountsAction::Block { id, reason } => {
            admin::block(&commands, access, id, reason, &metadata).await?
        }
        AccountsAction::Unblock { id } => admin::unblock(&commands, id, &metadata).await?,
    };
    if json {
        print_json(&details)
    } else {
        print(&ops::accounts::render_details(&details))
    }
}

async fn webhooks(action: WebhooksAction, json: bool) -> anyhow::Result<()> {
    use crate::webhooks::manage::{self as hooks, Change};
    let pool = startup::connect_postgres(&DatabaseConfig::from_env()?).await?;
    let config = WebhookConfig::from_env()?;
    let change = |id, change| {
        let pool = pool.clone();
        async move {
            hooks::change(&pool, id, change).await?;
            print(&format!("{id}: {}\n", change.done()))
        }
    };
    match action {
        WebhooksAction::Add { url, events } => {
            let added = hooks::add(&pool, &config, &url, events).await?;
            if json {
                print_json(&serde_json::json!({ "id": added.id, "secret": added.secret.expose() }))
            } else {
                print(&format!(
                    "id:     {}\nsecret: {}\nThe secret is shown only now: verify each delivery's webhook-signature with it.\n",
                    added.id,
                    added.secret.expose()
                ))
            }
        }
        WebhooksAction::List => {
            let listed = subscriptions::list(&pool).await?;
            if json {
                print_json(&listed)
            } else {
                print(&ops::webhooks::render(&listed))
            }
        }
        WebhooksAction::Remove { id } => change(id, Change::Remove).await,
        WebhooksAction::Pause { id } => change(id, Change::Pause).await,
        WebhooksAction::Resume { id } => change(id, Change::Resume).await,
        WebhooksAction::RotateSecret { id } => {
            let secret = subscriptions::rotate_secret(&pool, id, config.secret_overlap)
                .await?
                .ok_or(hooks::WebhookError::NotFound(id))?;
            if json {
                print_json(&serde_json::json!({ "id": id, "secret": secret.expose() }))
            } else {
                print(&format!(
                    "secret: {}\nThe old secret also signs for {} s more.\n",
                    secret.expose(),
                    config.secret_overlap.as_secs()
                ))
            }
        }
        WebhooksAction::Replay { id, from } => {
            let cursor = hooks::replay(&pool, id, &from).await?;
            print(&format!(
                "{id}: delivering again after cursor {}\n",
                crate::public_events::encode_cursor(cursor)
            ))
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
