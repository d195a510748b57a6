//! What the list pages (`GET /api/v1/tasks`, `/runs`) need from this
//! backend: how text is searched, and binding the filters' values.

use sqlx::Row;

use crate::store::sql::list_filter::{Bind, Dialect};
use crate::store::{ListCount, Result};

/// `instr` finds a substring without `LIKE`'s wildcards; JSON columns
/// are stored as text.
pub(super) const SEARCH: Dialect = Dialect {
    contains: |expr, param| format!("instr(lower({expr}), lower({param})) > 0"),
    json_text: |column| column.to_string(),
};

/// Binds a list's values in placeholder order.
pub(super) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    binds: &[Bind<'q>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for b in binds {
        query = match b {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(*v),
        };
    }
    query
}

/// Runs a list's bounded count (`list_filter::Where::count`).
pub(super) async fn count(
    pool: &sqlx::SqlitePool,
    (statement, binds): (String, Vec<Bind<'_>>),
) -> Result<ListCount> {
    let n: i64 = bind_all(sqlx::query(&statement), &binds)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok(ListCount::bounded(n))
}
