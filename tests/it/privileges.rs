//! Least privilege in Postgres: `porter migrate`, as the schema's owner,
//! grants the role `web` and `worker` run as what they need, and no way to
//! rewrite the log: each refusal is Postgres's permission check (SQLSTATE
//! 42501), not the append-only trigger, which the owner could disable.

use porter::{
    features::accounts::replay::{self, ReplayOptions, Silent},
    platform::config::{DatabaseConfig, SecretUrl},
};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{TestOptions, eventually, new_user, server_url, spawn_app_with};

/// An owner role, a runtime role and a database the owner owns, made on the
/// test server by its superuser (role names start with `porter_test_`, so
/// `scripts/test` drops leftovers).
struct Roles {
    database: String,
    names: [String; 2],
    owner_url: String,
    runtime_url: String,
}

impl Roles {
    async fn create() -> Self {
        let id = &Uuid::new_v4().simple().to_string()[..12];
        let database = format!("porter_test_{id}");
        let (owner, runtime) = (
            format!("porter_test_owner_{id}"),
            format!("porter_test_app_{id}"),
        );
        let password = Uuid::new_v4().simple().to_string();
        let mut admin = PgConnection::connect(&server_url())
            .await
            .expect("connect to Postgres");
        for statement in [
            format!("CREATE ROLE {owner} LOGIN PASSWORD '{password}'"),
            format!("CREATE ROLE {runtime} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {database} OWNER {owner}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .expect("create roles and database");
        }
        let url_as = |role: &str| {
            let mut url = url::Url::parse(&server_url()).expect("a URL");
            url.set_username(role).expect("a user");
            url.set_password(Some(&password)).expect("a password");
            url.set_path(&database);
            url.to_string()
        };
        Self {
            owner_url: url_as(&owner),
            runtime_url: url_as(&runtime),
            database,
            names: [owner, runtime],
        }
    }

    fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: SecretUrl::new(self.runtime_url.as_str()),
            migration_url: Some(SecretUrl::new(self.owner_url.as_str())),
        }
    }

    async fn drop(self) {
        let mut admin = PgConnection::connect(&server_url())
            .await
            .expect("connect to Postgres");
        let database = &self.database;
        let mut statements = vec![format!("DROP DATABASE {database} WITH (FORCE)")];
        statements.extend(self.names.iter().map(|role| format!("DROP ROLE {role}")));
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .expect("drop the test's database and roles");
        }
    }
}

fn sqlstate(error: &sqlx::Error) -> String {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| code.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_runtime_role_appends_to_the_log_but_cannot_rewrite_it() {
    let roles = Roles::create().await;
    porter::shell::startup::migrate_as_owner(&roles.config())
        .await
        .expect("migrate as the owner");
    let app = spawn_app_with(TestOptions {
        database_url: Some(roles.runtime_url.clone()),
        ..TestOptions::default()
    })
    .await;

    // What web and worker do: append, read, project, checkpoint.
    let user = new_user();
    let email = user["email"].as_str().expect("email");
    assert_eq!(app.sign_up(&user).await.status(), 202);
    let key = app.wait_for_mail(1).await[0].activation_key();
    assert_eq!(app.activate(&key).await.status(), 200);
    eventually("the account projected as active", || async {
        (app.projected_status(email).await.as_deref() == Some("active")).then_some(())
    })
    .await;
    // Claims are released by DELETE (issue 10).
    let claim = sqlx::query(
        "INSERT INTO unique_claims (kind, value, account_id) VALUES ('test', 'x', gen_random_uuid())",
    );
    claim.execute(&app.pool).await.expect("claim");
    sqlx::query("DELETE FROM unique_claims WHERE kind = 'test'")
        .execute(&app.pool)
        .await
        .expect("release a claim");

    for statement in [
        "UPDATE events SET event_type = event_type",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TABLE events",
        "UPDATE unique_claims SET value = value",
        "DELETE FROM _sqlx_migrations",
    ] {
        let error = sqlx::query(statement)
            .execute(&app.pool)
            .await
            .expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }

    // A replay, as the owner, swaps in a new `accounts` table; default
    // privileges let the runtime role's projector go on writing it.
    let owner = PgPool::connect(&roles.owner_url).await.expect("owner");
    replay::replay(
        &owner,
        &ReplayOptions::default(),
        &mut Silent,
        &CancellationToken::new(),
    )
    .await
    .expect("replay as the owner");
    owner.close().await;
    let later = new_user();
    assert_eq!(app.sign_up(&later).await.status(), 202);
    let later_email = later["email"].as_str().expect("email");
    eventually("a later account projected after the replay", || async {
        app.projected_status(later_email).await
    })
    .await;

    drop(app);
    roles.drop().await;
}
