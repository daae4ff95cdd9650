//! What the runtime role may do to the schema: the grants `porter migrate`
//! gives the role `porter web` and `porter worker` connect as, when that is
//! not the owner that migrates.
//!
//! The append-only trigger on `events` stops a careless statement, but the
//! owner of a table can disable its triggers, so a process that owns the log
//! could still rewrite history. The runtime role therefore owns nothing: it
//! may read and append to `events` and nothing more (no UPDATE, DELETE or
//! TRUNCATE; ALTER TABLE needs ownership), read, claim and release
//! `unique_claims` (a claim moves by DELETE and INSERT, never UPDATE), read
//! and write every other table (read models, checkpoints, account
//! snapshots, which are a cache rewritten in place), and use the
//! sequences. `_sqlx_migrations` stays the owner's.
//!
//! The grants are re-applied after every migration, so a table a migration
//! adds is covered at once, and default privileges cover the tables the
//! owner creates later outside migrations (`porter replay`'s swapped-in read
//! model). A migration that adds a table needing narrower rights than
//! "read and write" narrows them in [`grant_runtime_privileges`].

use sqlx::PgPool;

/// Grants `role` the runtime's rights on the schema, as described in the
/// module docs, in one transaction. Run as the schema's owner.
pub async fn grant_runtime_privileges(pool: &PgPool, role: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let role: String = sqlx::query_scalar("SELECT quote_ident($1)")
        .bind(role)
        .fetch_one(&mut *tx)
        .await?;
    let statements = [
        // Start from nothing, so a right narrowed here is narrowed for good.
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!("REVOKE ALL ON _sqlx_migrations FROM {role}"),
        format!("REVOKE UPDATE, DELETE ON events FROM {role}"),
        format!("REVOKE UPDATE ON unique_claims FROM {role}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
