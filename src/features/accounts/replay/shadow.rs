//! The shadow table's life: created unlogged, made durable before the swap,
//! renamed over the live table, or dropped when the replay does not swap.
//! Every statement here is DDL on `accounts_shadow` (and, for the swap, the
//! live table).

use sqlx::{PgPool, Postgres, Transaction};

use crate::features::accounts::read_model::Table;

/// The shadow starts unlogged: rows rewritten batch after batch while it is
/// built would otherwise each go to the WAL. A crash empties an unlogged
/// table, which costs nothing here since an interrupted replay starts over.
/// It becomes a logged table before it is swapped in ([`make_durable`]).
pub(super) async fn create_shadow(pool: &PgPool) -> Result<(), sqlx::Error> {
    let shadow = Table::Shadow.name();
    let live = Table::Live.name();
    // Checked first rather than `DROP ... IF EXISTS`, whose notice would
    // show in the operator's terminal on every run.
    let leftover: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(shadow)
        .fetch_one(pool)
        .await?;
    if leftover {
        tracing::info!("dropping the shadow table an interrupted replay left");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {shadow}")))
            .execute(pool)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE UNLOGGED TABLE {shadow} (LIKE {live} INCLUDING ALL)"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// Writes the built shadow to the WAL once, as a whole, so the table that is
/// swapped in is as durable (and replicated) as any other. It locks only the
/// shadow, so the live projector keeps running meanwhile.
pub(super) async fn make_durable(pool: &PgPool) -> Result<(), sqlx::Error> {
    let statement = format!("ALTER TABLE {} SET LOGGED", Table::Shadow.name());
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await?;
    Ok(())
}

/// Best effort: a shadow left behind is dropped by the next replay anyway.
pub(super) async fn drop_shadow(pool: &PgPool) {
    let statement = format!("DROP TABLE IF EXISTS {}", Table::Shadow.name());
    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "could not drop the shadow table");
    }
}

/// Renames the shadow over the live table and drops the old one. Index and
/// constraint names follow the table (`accounts_shadow_pkey` becomes
/// `accounts_pkey`), so the next replay's shadow gets the same names again.
pub(super) async fn swap_tables(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    let live = Table::Live.name();
    let shadow = Table::Shadow.name();
    let replaced = format!("{live}_replaced");
    for statement in [
        format!("ALTER TABLE {live} RENAME TO {replaced}"),
        format!("ALTER TABLE {shadow} RENAME TO {live}"),
        format!("DROP TABLE {replaced}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut **tx)
            .await?;
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = $1 AND starts_with(indexname, $2)",
    )
    .bind(live)
    .bind(shadow)
    .fetch_all(&mut **tx)
    .await?;
    for index in indexes {
        let renamed = format!("{live}{}", &index[shadow.len()..]);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER INDEX \"{index}\" RENAME TO \"{renamed}\""
        )))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
