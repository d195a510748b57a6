//! The audit log on both backends: entries read back newest first and
//! filtered, and no connection, the server's included, can change or
//! remove one.

use drover_engine::store::{AuditFilter, AuditStore, NewAuditEntry};
use drover_engine::time::now_us;
use drover_engine::Store;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};

#[macro_use]
mod support;

both_backends_with_guard!(the_audit_log_reads_newest_first_and_cannot_be_rewritten);

async fn the_audit_log_reads_newest_first_and_cannot_be_rewritten(
    store: Store,
    guard: support::Guard,
) {
    for (actor, action) in [
        ("admin", "sign_in.succeeded"),
        ("mallory", "sign_in.failed"),
        ("agent:3", "results.refused"),
    ] {
        store
            .append_audit(
                &NewAuditEntry {
                    actor,
                    action,
                    target: Some("x:1"),
                    detail: &json!({ "n": 1 }),
                },
                now_us(),
            )
            .await
            .expect("appended");
    }
    let all = store
        .list_audit(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["results.refused", "sign_in.failed", "sign_in.succeeded"]
    );
    assert_eq!(all[0].detail, json!({ "n": 1 }));
    let sign_ins = store
        .list_audit(&AuditFilter {
            action_prefix: Some("sign_in".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    assert_eq!(sign_ins.len(), 2);
    // A `%` is a character like any other, not a wildcard.
    let none = store
        .list_audit(&AuditFilter {
            action_prefix: Some("%".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    assert!(none.is_empty());
    let page = store
        .list_audit(&AuditFilter {
            before_id: Some(all[0].id),
            limit: 1,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    assert_eq!(page[0].action, "sign_in.failed");

    // A connection of its own, with the same rights as the server's.
    let url = guard.database_url().expect("url");
    let mut refusals = Vec::new();
    let statements = [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ];
    if url.starts_with("postgres") {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        for statement in statements.iter().chain(&["TRUNCATE audit_log"]) {
            refusals.push(conn.execute(*statement).await.map(|_| ()));
        }
    } else {
        let mut conn = SqliteConnection::connect(&url).await.expect("connect");
        for statement in statements {
            refusals.push(conn.execute(statement).await.map(|_| ()));
        }
    }
    for refusal in refusals {
        let e = refusal.expect_err("the audit log is append-only");
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    let after = store
        .list_audit(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    assert_eq!(after, all, "nothing changed");
}
