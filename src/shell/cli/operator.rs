//! The operator's commands that act on the running system (`porter
//! deliveries`, `accounts`, `api-keys`, `webhooks`), apart from the
//! definitions of the command line and from starting processes: each goes
//! through the same service functions as the admin API, on services that
//! `startup` wires, so a shell and the API cannot disagree.

use anyhow::Context as _;

use super::{AccountsAction, ApiKeysAction, DeliveriesAction, WebhooksAction, print, print_json};
use crate::{
    features::{admin, admin::api_keys, webhooks::subscriptions},
    platform::{
        config::{Config, DatabaseConfig, RedisConfig, WebhookConfig},
        connections::{connect_postgres, connect_redis},
        services::{self, Services},
    },
};

/// `porter deliveries`: the email queue at a glance, and dead letters sent again.
pub(super) async fn deliveries(
    action: Option<DeliveriesAction>,
    limit: usize,
) -> anyhow::Result<()> {
    let pool = connect_postgres(&DatabaseConfig::from_env()?).await?;
    let redis_config = RedisConfig::from_env()?;
    let mut redis = connect_redis(&redis_config.url).await?;
    let namespace = &redis_config.namespace;
    let commands = services::operator_commands(&pool, &redis, namespace);
    match action {
        None => {
            let deliveries =
                crate::features::emails::deliveries::overview(&pool, &mut redis, namespace, limit)
                    .await?;
            print(&crate::features::emails::deliveries::render(&deliveries))
        }
        Some(DeliveriesAction::Retry {
            job_id: Some(job_id),
            ..
        }) => {
            let outcome = crate::features::emails::deliveries::retry(
                &commands, &mut redis, namespace, &job_id,
            )
            .await?;
            print(&format!("{job_id}: {outcome}\n"))
        }
        Some(DeliveriesAction::Retry { job_id: None, .. }) => {
            let outcomes =
                crate::features::emails::deliveries::retry_all(&commands, &mut redis, namespace)
                    .await?;
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

/// `porter api-keys`: the admin API's keys.
pub(super) async fn api_keys(action: ApiKeysAction, json: bool) -> anyhow::Result<()> {
    let pool = connect_postgres(&DatabaseConfig::from_env()?).await?;
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
                print(&crate::features::admin::cli::render_keys(&keys))
            }
        }
        ApiKeysAction::Revoke { id } => {
            anyhow::ensure!(api_keys::revoke(&pool, id).await?, "no live API key {id}");
            print(&format!("revoked {id}\n"))
        }
    }
}

/// `porter accounts …`, through the same `features::admin` functions as the API.
pub(super) async fn accounts(action: AccountsAction, json: bool) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let pool = connect_postgres(&config.database).await?;
    let Services {
        commands,
        sessions,
        activation_keys,
        reset_keys,
        ..
    } = Services::for_operator(config, pool.clone()).await?;
    let access = admin::Access {
        sessions: &sessions,
        activation_keys: &activation_keys,
        reset_keys: &reset_keys,
    };
    let metadata = crate::platform::store::EventMetadata {
        actor: Some(crate::features::admin::cli::OPERATOR_ACTOR.into()),
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
                print(&crate::features::admin::cli::render_history(&events))
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
        print(&crate::features::admin::cli::render_details(&details))
    }
}

/// `porter webhooks`: subscriptions to public events.
pub(super) async fn webhooks(action: WebhooksAction, json: bool) -> anyhow::Result<()> {
    use crate::features::webhooks::manage::{self as hooks, Change};
    let pool = connect_postgres(&DatabaseConfig::from_env()?).await?;
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
                print(&crate::features::webhooks::cli::render(&listed))
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
                crate::features::public_events::encode_cursor(cursor)
            ))
        }
    }
}
