//! The operator's commands that act on the running system (`porter
//! deliveries`, `accounts`, `api-keys`, `webhooks`), apart from the
//! definitions of the command line and from starting processes: each goes
//! through the same service functions as the admin API, on services that
//! `startup` wires, so a shell and the API cannot disagree.

use anyhow::Context as _;

use super::{AccountsAction, ApiKeysAction, DeliveriesAction, WebhooksAction, print, print_json};
use crate::{
    account_admin, api_keys,
    config::{Config, DatabaseConfig, RedisConfig, WebhookConfig},
    connections::{connect_postgres, connect_redis},
    ops,
    startup::{self, Services},
    webhooks::subscriptions,
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
    let commands = startup::operator_commands(&pool, &redis, namespace);
    match action {
        None => {
            let deliveries = ops::deliveries::overview(&pool, &mut redis, namespace, limit).await?;
            print(&ops::deliveries::render(&deliveries))
        }
        Some(DeliveriesAction::Retry {
            job_id: Some(job_id),
            ..
        }) => {
            let outcome = ops::deliveries::retry(&commands, &mut redis, namespace, &job_id).await?;
            print(&format!("{job_id}: {outcome}\n"))
        }
        Some(DeliveriesAction::Retry { job_id: None, .. }) => {
            let outcomes = ops::deliveries::retry_all(&commands, &mut redis, namespace).await?;
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
                print(&ops::admin_tables::render_keys(&keys))
            }
        }
        ApiKeysAction::Revoke { id } => {
            anyhow::ensure!(api_keys::revoke(&pool, id).await?, "no live API key {id}");
            print(&format!("revoked {id}\n"))
        }
    }
}

/// `porter accounts …`, through the same `account_admin` functions as the API.
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
    let access = account_admin::Access {
        sessions: &sessions,
        activation_keys: &activation_keys,
        reset_keys: &reset_keys,
    };
    let metadata = crate::store::EventMetadata {
        actor: Some(ops::admin_tables::OPERATOR_ACTOR.into()),
        ..Default::default()
    };
    let details = match action {
        AccountsAction::Find { email, username } => {
            let found = match (email, username) {
                (Some(email), _) => {
                    let email = crate::domain::EmailAddress::parse(&email)
                        .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
                    account_admin::find_by_email(&commands, &email).await?
                }
                (None, username) => {
                    let username = username.context("give --email or --username")?;
                    let username = crate::domain::Username::parse(&username)
                        .map_err(|e| anyhow::anyhow!("--username: {e}"))?;
                    account_admin::find_by_username(&commands, &username).await?
                }
            };
            found.ok_or_else(|| anyhow::anyhow!("no such account"))?
        }
        AccountsAction::Show { id } => account_admin::details(&pool, id).await?,
        AccountsAction::History { id } => {
            let events = account_admin::history(&pool, id).await?;
            return if json {
                print_json(&events)
            } else {
                print(&ops::admin_tables::render_history(&events))
            };
        }
        AccountsAction::Resend { id } => {
            account_admin::resend_activation(&commands, id, &metadata).await?;
            account_admin::details(&pool, id).await?
        }
        AccountsAction::Activate { id } => {
            account_admin::activate(&commands, id, &metadata).await?
        }
        AccountsAction::Block { id, reason } => {
            account_admin::block(&commands, access, id, reason, &metadata).await?
        }
        AccountsAction::Unblock { id } => account_admin::unblock(&commands, id, &metadata).await?,
    };
    if json {
        print_json(&details)
    } else {
        print(&ops::admin_tables::render_details(&details))
    }
}

/// `porter webhooks`: subscriptions to public events.
pub(super) async fn webhooks(action: WebhooksAction, json: bool) -> anyhow::Result<()> {
    use crate::webhooks::manage::{self as hooks, Change};
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
                print(&ops::webhook_table::render(&listed))
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
