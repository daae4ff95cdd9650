//! What a dry run reports: the rows in which the rebuilt table and the live
//! one (brought to the same cursor) differ, counted and sampled in SQL.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::features::accounts::read_model::Table;

/// How many differing rows a dry run lists.
const DIFF_EXAMPLES: i64 = 10;

/// Rows that differ between the rebuilt and the live table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the rebuilt table only.
    pub added: i64,
    /// In the live table only.
    pub removed: i64,
    /// In both, with different contents.
    pub changed: i64,
    /// A few of them, by id.
    pub examples: Vec<(Uuid, Change)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.changed == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
        }
    }
}

/// Counts and samples the rows that differ, comparing whole rows (the shadow
/// has the live table's columns in the same order).
pub(super) async fn compare(tx: &mut Transaction<'_, Postgres>) -> Result<Diff, sqlx::Error> {
    let live = Table::Live.name();
    let shadow = Table::Shadow.name();
    let joined = format!(
        "FROM {live} l FULL JOIN {shadow} s ON s.id = l.id \
         WHERE l.id IS NULL OR s.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(s.*)"
    );
    let (added, removed, changed): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE l.id IS NULL), count(*) FILTER (WHERE s.id IS NULL), \
                count(*) FILTER (WHERE l.id IS NOT NULL AND s.id IS NOT NULL) {joined}"
    )))
    .fetch_one(&mut **tx)
    .await?;
    let examples: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(s.id, l.id), \
                CASE WHEN l.id IS NULL THEN 'added' WHEN s.id IS NULL THEN 'removed' ELSE 'changed' END \
         {joined} ORDER BY 1 LIMIT {DIFF_EXAMPLES}"
    )))
    .fetch_all(&mut **tx)
    .await?;
    Ok(Diff {
        added,
        removed,
        changed,
        examples: examples
            .into_iter()
            .map(|(id, change)| {
                let change = match change.as_str() {
                    "added" => Change::Added,
                    "removed" => Change::Removed,
                    _ => Change::Changed,
                };
                (id, change)
            })
            .collect(),
    })
}
