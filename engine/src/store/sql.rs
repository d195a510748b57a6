//! SQL text that is the same on both backends, written once. Every
//! statement uses `$n` placeholders: PostgreSQL binds them by number, and so
//! does SQLite (`?NNN` and `$NNN` both name a parameter by its number, so a
//! statement may use `$2` before `$1` or the same `$1` twice). Statements
//! that differ (locks, arrays, JSON unpacking) stay in the backend's folder.

/// Users, API tokens and dashboard sessions.
pub(super) mod users {
    pub const CREATE: &str = "INSERT INTO users (name, role, password_hash, created_at) \
        VALUES ($1, $2, $3, $4) RETURNING id, name, role, created_at";
    pub const ADD_API_TOKEN: &str =
        "INSERT INTO api_tokens (token_hash, user_id, label, kind, prefix, created_at, expires_at) \
         VALUES ($1, $2, $3, 'api', $4, $5, $6) ON CONFLICT (token_hash) DO NOTHING RETURNING id";
    pub const START_SESSION: &str =
        "INSERT INTO api_tokens (token_hash, user_id, label, kind, created_at, expires_at) \
         VALUES ($1, $2, 'session', 'session', $3, $4)";
    pub const DROP_EXPIRED_SESSIONS: &str =
        "DELETE FROM api_tokens WHERE kind = 'session' AND expires_at < $1";
    pub const END_SESSION: &str =
        "DELETE FROM api_tokens WHERE token_hash = $1 AND kind = 'session'";
    pub const REVOKE_API_TOKEN: &str = "UPDATE api_tokens SET revoked_at = $2 \
        WHERE id = $1 AND kind = 'api' AND revoked_at IS NULL";
    pub const API_TOKEN: &str = "SELECT t.id, t.user_id, u.name AS user_name, t.label, t.prefix, \
        t.created_at, t.expires_at, t.last_used_at, t.revoked_at \
        FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1 AND t.kind = 'api'";
    pub const LIST_API_TOKENS: &str = "SELECT t.id, t.user_id, u.name AS user_name, t.label, \
        t.prefix, t.created_at, t.expires_at, t.last_used_at, t.revoked_at \
        FROM api_tokens t JOIN users u ON u.id = t.user_id \
        WHERE t.kind = 'api' AND ($1 IS NULL OR t.user_id = $1) ORDER BY t.id DESC";
    pub const TOKEN_REVOKED_AT: &str = "SELECT revoked_at FROM api_tokens WHERE token_hash = $1";
    pub const USER_BY_TOKEN: &str = "SELECT u.id, u.name, u.role, u.created_at, t.id AS token_id, \
        t.last_used_at, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
        WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) \
        AND t.revoked_at IS NULL AND u.disabled_at IS NULL";
    pub const TOUCH_TOKEN: &str = "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1";
    pub const USER_BY_NAME: &str = "SELECT id, name, role, created_at, password_hash, disabled_at \
        FROM users WHERE name = $1";
    pub const LIST: &str =
        "SELECT id, name, role, created_at, disabled_at FROM users ORDER BY name";
    pub const ROLE_AND_DISABLED: &str = "SELECT role, disabled_at FROM users WHERE id = $1";
    pub const OTHER_ENABLED_ADMINS: &str =
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1";
    pub const SET_ROLE: &str = "UPDATE users SET role = $2 WHERE id = $1";
    pub const DISABLE: &str =
        "UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1";
    pub const ENABLE: &str = "UPDATE users SET disabled_at = NULL WHERE id = $1";
    pub const END_SESSIONS_OF: &str =
        "DELETE FROM api_tokens WHERE user_id = $1 AND kind = 'session'";
    pub const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2 WHERE id = $1";
}

/// The audit log. The prefix is matched with substr, not LIKE: no wildcard
/// in a user's filter can widen it.
pub(super) mod audit {
    pub const APPEND: &str =
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)";
    pub const LIST: &str = "SELECT id, at, actor, action, target, detail FROM audit_log \
        WHERE ($1 IS NULL OR substr(action, 1, length($1)) = $1) \
        AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR id < $3) \
        ORDER BY id DESC LIMIT $4";
    /// The entries about one target (`agent:7`), newest first.
    pub const ABOUT: &str = "SELECT id, at, actor, action, target, detail FROM audit_log \
        WHERE target = $1 ORDER BY id DESC LIMIT $2";
}

/// Enrollment tokens.
pub(super) mod enrollment {
    pub const CREATE: &str = "INSERT INTO enrollment_tokens \
        (name, token_hash, prefix, task_types, labels, created_by, created_at, expires_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING \
        id, name, prefix, task_types, labels, created_by, created_at, expires_at, revoked_at";
    pub const ADOPT_UNENROLLED: &str = "UPDATE agents SET enrollment_id = \
        (SELECT id FROM enrollment_tokens WHERE token_hash = $1) \
        WHERE enrollment_id IS NULL AND status <> 'revoked'";
    pub const USABLE: &str = "SELECT id, name, prefix, task_types, labels, created_by, \
        created_at, expires_at, revoked_at FROM enrollment_tokens WHERE token_hash = $1 \
        AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
    pub const LIST: &str = "SELECT id, name, prefix, task_types, labels, created_by, created_at, \
        expires_at, revoked_at FROM enrollment_tokens ORDER BY revoked_at IS NOT NULL, name";
    pub const REVOKE: &str = "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2) \
        WHERE id = $1 RETURNING id";
    pub const AGENTS_OF: &str =
        "SELECT id FROM agents WHERE enrollment_id = $1 AND status <> 'revoked' ORDER BY id";
}

/// Versioned workflow definitions.
pub(super) mod workflows {
    pub const LATEST_OF: &str = "SELECT id, name, version, definition, created_by, created_at, \
        digest FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1";
    pub const INSERT: &str = "INSERT INTO workflows \
        (name, version, definition, digest, created_by, created_at, source) \
        VALUES ($1, $2, $3, $4, $5, $6, $7) \
        RETURNING id, name, version, definition, created_by, created_at";
    pub const LIST_LATEST: &str = "SELECT id, name, version, definition, created_by, created_at \
        FROM workflows w WHERE version = (SELECT MAX(version) FROM workflows x WHERE x.name = w.name) \
        ORDER BY name";
    pub const LATEST_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM workflows";
    pub const VERSIONS: &str = "SELECT id, name, version, definition, created_by, created_at \
        FROM workflows WHERE name = $1 ORDER BY version DESC";
    pub const ONE: &str = "SELECT id, name, version, definition, created_by, created_at \
        FROM workflows WHERE name = $1 AND ($2 IS NULL OR version = $2) \
        ORDER BY version DESC LIMIT 1";
    pub const ONE_WITH_SOURCE: &str = "SELECT id, name, version, definition, created_by, \
        created_at, source FROM workflows WHERE name = $1 AND version = $2";
    /// How the newest `$2` finished runs of workflow `$1` ended: the newest
    /// `$2` of each final status (three ranges of `runs_by_workflow`), of
    /// which the newest `$2` overall, counted by status.
    pub const FINISHED_RUNS: &str = "SELECT status, COUNT(*) AS n FROM ( \
        SELECT id, status FROM (SELECT id, status FROM runs \
            WHERE workflow_name = $1 AND status = 'succeeded' ORDER BY id DESC LIMIT $2) s \
        UNION ALL SELECT id, status FROM (SELECT id, status FROM runs \
            WHERE workflow_name = $1 AND status = 'failed' ORDER BY id DESC LIMIT $2) f \
        UNION ALL SELECT id, status FROM (SELECT id, status FROM runs \
            WHERE workflow_name = $1 AND status = 'cancelled' ORDER BY id DESC LIMIT $2) c \
        ORDER BY id DESC LIMIT $2) newest GROUP BY status";
    /// Runs of workflow `$1` not finished yet (two ranges of `runs_by_workflow`).
    pub const ACTIVE_RUNS: &str = "SELECT COUNT(*) FROM runs \
        WHERE workflow_name = $1 AND status IN ('running', 'waiting_approval')";
}

/// The dashboard overview's counts.
pub(super) mod overview {
    /// Queued tasks through their three partial indexes (not held, held
    /// by a key, held by a rate): PostgreSQL has no index on the status
    /// alone, and scanned ten million finished tasks for this.
    pub const QUEUED_BY_BAND: &str =
        "SELECT COALESCE(SUM(CASE WHEN priority < $1 THEN 1 ELSE 0 END), 0) AS low, \
         COALESCE(SUM(CASE WHEN priority >= $1 AND priority < $2 THEN 1 ELSE 0 END), 0) AS medium, \
         COALESCE(SUM(CASE WHEN priority >= $2 THEN 1 ELSE 0 END), 0) AS high \
         FROM (SELECT priority FROM tasks WHERE status = 'queued' AND held = 0 \
           UNION ALL SELECT priority FROM tasks WHERE status = 'queued' AND held = 1 \
           UNION ALL SELECT priority FROM tasks WHERE status = 'queued' AND held = 2) q";
    pub const ACTIVE_RUNS: &str =
        "SELECT COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS running, \
         COALESCE(SUM(CASE WHEN status = 'waiting_approval' THEN 1 ELSE 0 END), 0) AS waiting \
         FROM runs WHERE status IN ('running', 'waiting_approval')";
}

/// The queued tasks in claim order (`rank DESC, id`), at most `limit`
/// (a placeholder), that meet `filters`: one branch per partial index of
/// queued tasks, each taking its best `limit`, then merged. Without the
/// branches PostgreSQL (no index on the status alone) read the whole
/// table, and SQLite sorted every queued task.
pub(super) fn queued_in_claim_order(columns: &str, filters: &str, limit: &str) -> String {
    let branch = |held: u8| {
        format!(
            "SELECT * FROM (SELECT {columns}, rank AS claim_rank FROM tasks \
             WHERE status = 'queued' AND held = {held} AND {filters} \
             ORDER BY rank DESC, id LIMIT {limit}) b{held}"
        )
    };
    format!(
        "SELECT * FROM ({} UNION ALL {} UNION ALL {}) q ORDER BY claim_rank DESC, id LIMIT {limit}",
        branch(0),
        branch(1),
        branch(2)
    )
}

/// The lists' filters as SQL (`GET /api/v1/tasks`, `/runs`). Only the
/// filters that are set become conditions (a `$1 IS NULL OR …` form hides
/// indexes from the planner); statuses are fixed words written in, so a
/// partial index of one status stays usable.
pub(super) mod list_filter {
    use super::super::COUNT_BOUND;

    /// `ORDER BY column, id`, one direction for both.
    pub fn order_by(column: &str, descending: bool) -> String {
        let dir = if descending { "DESC" } else { "ASC" };
        if column == "id" {
            format!("ORDER BY id {dir}")
        } else {
            format!("ORDER BY {column} {dir}, id {dir}")
        }
    }

    /// A value to bind, in placeholder order.
    pub enum Bind<'a> {
        Int(i64),
        Text(&'a str),
    }

    /// How a backend tests that text contains `$n`, ignoring ASCII case,
    /// and how it reads a JSON column as text.
    pub struct Dialect {
        pub contains: fn(expr: &str, param: &str) -> String,
        pub json_text: fn(column: &str) -> String,
    }

    /// Conditions and their values, placeholders numbered from `$1`.
    pub struct Where<'a> {
        conditions: Vec<String>,
        pub binds: Vec<Bind<'a>>,
    }

    impl<'a> Where<'a> {
        pub fn new() -> Self {
            Self {
                conditions: Vec::new(),
                binds: Vec::new(),
            }
        }

        pub fn param(&mut self, bind: Bind<'a>) -> String {
            self.binds.push(bind);
            format!("${}", self.binds.len())
        }

        pub fn push(&mut self, condition: String) {
            self.conditions.push(condition);
        }

        /// `status IN (…)` of fixed words; nothing when `words` is empty.
        pub fn status_in(&mut self, words: &[&str]) {
            if !words.is_empty() {
                let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
                self.push(format!("status IN ({})", quoted.join(", ")));
            }
        }

        pub fn equals_text(&mut self, column: &str, value: Option<&'a str>) {
            if let Some(v) = value {
                let p = self.param(Bind::Text(v));
                self.push(format!("{column} = {p}"));
            }
        }

        /// The row whose id the text is (`42` or `#42`), or whose `texts`
        /// contain it.
        pub fn search(&mut self, d: &Dialect, text: Option<&'a str>, texts: &[String]) {
            let Some(text) = text else { return };
            let p = self.param(Bind::Text(text));
            let mut any: Vec<String> = texts.iter().map(|t| (d.contains)(t, &p)).collect();
            if let Ok(id) = text.trim().trim_start_matches('#').parse::<i64>() {
                let p = self.param(Bind::Int(id));
                any.insert(0, format!("id = {p}"));
            }
            self.push(format!("({})", any.join(" OR ")));
        }

        /// `created_at` in `[after, before)`.
        pub fn created(&mut self, after: Option<i64>, before: Option<i64>) {
            if let Some(t) = after {
                let p = self.param(Bind::Int(t));
                self.push(format!("created_at >= {p}"));
            }
            if let Some(t) = before {
                let p = self.param(Bind::Int(t));
                self.push(format!("created_at < {p}"));
            }
        }

        /// Rows after the cursor's row in `ORDER BY column, id`, both
        /// descending or both ascending; the cursor row's value is read in
        /// the statement, so the cursor stays one id.
        pub fn after(&mut self, table: &str, column: &str, descending: bool, cursor: i64) {
            let p = self.param(Bind::Int(cursor));
            let (or_equal, beyond) = if descending { ("<=", "<") } else { (">=", ">") };
            if column == "id" {
                self.push(format!("id {beyond} {p}"));
            } else {
                let v = format!("(SELECT {column} FROM {table} WHERE id = {p})");
                self.push(format!(
                    "{column} {or_equal} {v} AND ({column} {beyond} {v} OR id {beyond} {p})"
                ));
            }
        }

        pub fn sql(&self) -> String {
            if self.conditions.is_empty() {
                "TRUE".into()
            } else {
                self.conditions.join(" AND ")
            }
        }

        /// `SELECT count(*)` of `table`'s matching rows, one past the bound.
        pub fn count(mut self, table: &str) -> (String, Vec<Bind<'a>>) {
            let bound = self.param(Bind::Int(COUNT_BOUND + 1));
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {} LIMIT {bound}) matching",
                self.sql()
            );
            (sql, self.binds)
        }
    }
}

/// `GET /api/v1/tasks`.
pub(super) mod task_list {
    use super::super::{QueueState, SortColumn, TaskFilter};
    use super::list_filter::{order_by, Bind, Dialect, Where};

    /// Everything but the cursor; statuses only when `with_status`.
    fn conditions<'a>(f: &'a TaskFilter, d: &Dialect, with_status: bool) -> Where<'a> {
        let mut w = Where::new();
        if with_status {
            let words: Vec<&str> = match f.queue_state {
                Some(_) => vec!["queued"],
                None => f.statuses.iter().map(|s| s.as_str()).collect(),
            };
            w.status_in(&words);
        }
        if let Some(state) = f.queue_state {
            let now = w.param(Bind::Int(f.now_us));
            w.push(match state {
                QueueState::Ready => format!("held = 0 AND run_after <= {now}"),
                QueueState::Scheduled => format!("held = 0 AND run_after > {now}"),
                QueueState::Held => "held <> 0".to_string(),
            });
        }
        w.equals_text("task_type", f.task_type.as_deref());
        if let Some(a) = f.agent_id {
            let p = w.param(Bind::Int(a));
            w.push(format!("agent_id = {p}"));
        }
        w.search(
            d,
            f.text.as_deref(),
            &["task_type".into(), (d.json_text)("payload")],
        );
        w.created(f.created_after_us, f.created_before_us);
        if let Some(t) = f.finished_after_us {
            let p = w.param(Bind::Int(t));
            w.push(format!("finished_at IS NOT NULL AND finished_at >= {p}"));
        }
        w
    }

    /// One page of the list, `columns` selected.
    pub fn page<'a>(f: &'a TaskFilter, d: &Dialect, columns: &str) -> (String, Vec<Bind<'a>>) {
        let claim_order = f.in_claim_order();
        let mut w = conditions(f, d, !claim_order);
        let (column, descending) = f
            .sort
            .map_or(("id", true), |s| (s.column.column(), s.descending));
        if let Some(before) = f.before_id {
            if claim_order {
                // After the cursor's task in (rank DESC, id): the range on
                // rank keeps the claim index's seek.
                let p = w.param(Bind::Int(before));
                let rank = format!("(SELECT rank FROM tasks WHERE id = {p})");
                w.push(format!("rank <= {rank} AND (rank < {rank} OR id > {p})"));
            } else {
                w.after("tasks", column, descending, before);
            }
        }
        let limit = w.param(Bind::Int(f.limit));
        let sql = if claim_order {
            super::queued_in_claim_order(columns, &w.sql(), &limit)
        } else {
            format!(
                "SELECT {columns} FROM tasks WHERE {} {} LIMIT {limit}",
                w.sql(),
                order_by(column, descending)
            )
        };
        (sql, w.binds)
    }

    /// Counts the matching tasks, stopping one past the bound.
    pub fn count<'a>(f: &'a TaskFilter, d: &Dialect) -> (String, Vec<Bind<'a>>) {
        conditions(f, d, true).count("tasks")
    }
}

/// `GET /api/v1/runs`, newest first unless sorted.
pub(super) mod run_list {
    use super::super::runs::RunFilter;
    use super::super::SortColumn;
    use super::list_filter::{order_by, Bind, Dialect, Where};

    fn conditions<'a>(f: &'a RunFilter, d: &Dialect) -> Where<'a> {
        let mut w = Where::new();
        let words: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        w.status_in(&words);
        w.equals_text("workflow_name", f.workflow.as_deref());
        w.equals_text("started_by", f.started_by.as_deref());
        w.search(
            d,
            f.text.as_deref(),
            &[
                "workflow_name".into(),
                "started_by".into(),
                (d.json_text)("inputs"),
            ],
        );
        w.created(f.created_after_us, f.created_before_us);
        w
    }

    /// One page, newest first unless sorted, `columns` selected.
    pub fn page<'a>(f: &'a RunFilter, d: &Dialect, columns: &str) -> (String, Vec<Bind<'a>>) {
        let mut w = conditions(f, d);
        let (column, descending) = f
            .sort
            .map_or(("id", true), |s| (s.column.column(), s.descending));
        if let Some(before) = f.before_id {
            w.after("runs", column, descending, before);
        }
        let limit = w.param(Bind::Int(f.limit));
        let sql = format!(
            "SELECT {columns} FROM runs WHERE {} {} LIMIT {limit}",
            w.sql(),
            order_by(column, descending)
        );
        (sql, w.binds)
    }

    pub fn count<'a>(f: &'a RunFilter, d: &Dialect) -> (String, Vec<Bind<'a>>) {
        conditions(f, d).count("runs")
    }
}

/// Retrying a failed or cancelled task by hand. Reading the task is the
/// backend's (PostgreSQL locks the row).
pub(super) mod retry {
    /// A keyed task goes back to its key's admission, as if it arrived.
    pub const REQUEUE: &str = "UPDATE tasks SET status = 'queued', \
        held = CASE WHEN concurrency_key IS NULL THEN 0 ELSE 1 END, \
        max_attempts = attempts + max_attempts, error = NULL, result = NULL, agent_id = NULL, \
        finished_at = NULL, run_after = $1, updated_at = $1, rank = $2 WHERE id = $3";
    pub const EVENT: &str = "INSERT INTO task_events (task_id, at, kind, status) \
        VALUES ($1, $2, 'retried', 'queued')";
}

/// Workflow runs, their steps and approvals. The backends add what
/// differs: row locks (PostgreSQL), and how a JSON array of ids or rows is
/// unpacked (`json_each` on SQLite, arrays and record sets on PostgreSQL).
pub(super) mod runs {
    pub const BY_KEY: &str = "SELECT id FROM runs WHERE idempotency_key = $1";
    pub const INSERT: &str = "INSERT INTO runs (workflow_id, workflow_name, workflow_version, \
        inputs, status, started_by, idempotency_key, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $7) \
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";
    pub const ACTIVE: &str =
        "SELECT id FROM runs WHERE status IN ('running', 'waiting_approval') ORDER BY id";
    pub const SUMMARY: &str = "SELECT id, workflow_name, workflow_version, inputs, status, \
        error, started_by, created_at, updated_at, finished_at, parent_run_id, parent_step_id FROM runs WHERE id = $1";
    /// The columns of a run's summary, for the run list.
    pub const LIST_COLUMNS: &str = "id, workflow_name, workflow_version, inputs, status, error, \
        started_by, created_at, updated_at, finished_at, parent_run_id, parent_step_id";
    pub const TASKS_OF: &str =
        "SELECT id, step_id, item_index, step_generation, status FROM tasks \
        WHERE run_id = $1 ORDER BY item_index, id";
    pub const STEPS_OF: &str = "SELECT step_id, status, output, error, item_count, generation, \
        started_at, finished_at FROM run_steps WHERE run_id = $1";
    pub const DEFINITION_OF: &str = "SELECT w.definition FROM runs r \
        JOIN workflows w ON w.id = r.workflow_id WHERE r.id = $1";
    pub const APPROVALS_OF: &str = "SELECT a.id, a.run_id, a.step_id, a.message, a.approvers, \
        a.allow_self, a.on_reject, a.status, a.decided_by, a.comment, a.decided_at, a.expires_at, \
        a.created_at, r.workflow_name, r.started_by, r.inputs \
        FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.run_id = $1 ORDER BY a.id";
    pub const CANCEL: &str =
        "UPDATE runs SET status = 'cancelled', updated_at = $1, finished_at = $1 WHERE id = $2";
    pub const CANCEL_STEPS: &str = "UPDATE run_steps SET status = 'cancelled', updated_at = $1 \
        WHERE run_id = $2 AND status IN ('pending', 'running', 'waiting_approval', 'waiting')";
    /// Who cancelled the run is who cancelled its open approvals.
    pub const CANCEL_APPROVALS: &str = "UPDATE approvals SET status = 'cancelled', \
        decided_by = $2, decided_at = $3 WHERE run_id = $1 AND status = 'pending'";
    pub const RUNNING_TASKS: &str = "SELECT id FROM tasks WHERE run_id = $1 AND status = 'running'";
    pub const STATUS: &str = "SELECT status FROM runs WHERE id = $1";
    pub const RETRY_STEP: &str = "UPDATE run_steps SET status = 'pending', output = NULL, \
        error = NULL, item_count = NULL, generation = generation + 1, started_at = NULL, \
        finished_at = NULL, updated_at = $1 WHERE run_id = $2 AND step_id = $3 RETURNING generation";
    /// Steps that were cancelled when the run failed get another chance too.
    pub const UNCANCEL_STEPS: &str = "UPDATE run_steps SET status = 'pending', updated_at = $1 \
        WHERE run_id = $2 AND status = 'cancelled'";
    pub const RESUME: &str = "UPDATE runs SET status = 'running', error = NULL, \
        finished_at = NULL, updated_at = $1 WHERE id = $2";
    pub const LIST_APPROVALS: &str = "SELECT a.id, a.run_id, a.step_id, a.message, a.approvers, \
        a.allow_self, a.on_reject, a.status, a.decided_by, a.comment, a.decided_at, a.expires_at, \
        a.created_at, r.workflow_name, r.started_by, r.inputs \
        FROM approvals a JOIN runs r ON r.id = a.run_id WHERE ($1 IS NULL OR a.status = $1) \
        AND ($2 IS NULL OR a.id < $2) ORDER BY a.id DESC LIMIT $3";
    pub const APPROVAL: &str = "SELECT a.id, a.run_id, a.step_id, a.message, a.approvers, \
        a.allow_self, a.on_reject, a.status, a.decided_by, a.comment, a.decided_at, a.expires_at, \
        a.created_at, r.workflow_name, r.started_by, r.inputs \
        FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.id = $1";
    pub const DECIDE: &str = "UPDATE approvals SET status = $1, decided_by = $2, comment = $3, \
        decided_at = $4 WHERE id = $5 AND status = 'pending' RETURNING run_id, step_id, on_reject";
    pub const APPROVAL_STATUS: &str = "SELECT status FROM approvals WHERE id = $1";
    pub const SET_DECIDED_STEP: &str = "UPDATE run_steps SET status = $1, output = $2, \
        error = $3, finished_at = $4, updated_at = $4 WHERE run_id = $5 AND step_id = $6 \
        RETURNING generation";
    pub const DUE_APPROVALS: &str = "SELECT id, on_timeout FROM approvals \
        WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1";
    pub const OPEN_APPROVAL: &str = "INSERT INTO approvals (run_id, step_id, message, approvers, \
        allow_self, on_timeout, on_reject, status, expires_at, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT (run_id, step_id) DO NOTHING";
}

/// The queue: task history, lease expiry, leadership.
pub(super) mod queue {
    pub const ATTEMPTS_OF: &str =
        "SELECT * FROM task_attempts WHERE task_id = $1 ORDER BY claimed_at, attempt";
    pub const EVENTS_OF: &str = "SELECT * FROM task_events WHERE task_id = $1 ORDER BY id";
    pub const EXPIRED_LEASES: &str =
        "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = \
        'running' AND lease_expires_at <= $1";
    pub const TRY_LEAD: &str =
        "INSERT INTO leadership (name, holder, expires_at) VALUES ($1, $2, $3) ON \
        CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = \
        excluded.expires_at WHERE leadership.holder = excluded.holder OR \
        leadership.expires_at < $4 RETURNING holder";
    pub const RESIGN: &str = "DELETE FROM leadership WHERE name = $1 AND holder = $2";
}

/// Agents: sessions, status changes, the tasks a sweep ends.
pub(super) mod agents {
    pub const REVOKED_WITH_KEY: &str =
        "SELECT id FROM agents WHERE key_hash = $1 AND status = 'revoked'";
    pub const SESSION: &str =
        "SELECT id, name, status, capacity, running, task_types, labels FROM agents WHERE \
        token_hash = $1 AND NOT EXISTS (SELECT 1 FROM enrollment_tokens e WHERE e.id = \
        agents.enrollment_id AND e.revoked_at IS NOT NULL)";
    pub const DEREGISTER: &str =
        "UPDATE agents SET status = 'deregistered' WHERE id = $1 RETURNING id";
    pub const REVOKE: &str = "UPDATE agents SET status = 'revoked' WHERE id = $1 RETURNING id";
    pub const SET_STATUS_FROM: &str =
        "UPDATE agents SET status = $1, drained = ($1 = 'draining') WHERE id = $2 AND status IN ($1, $3)";
    pub const STATUS: &str = "SELECT status FROM agents WHERE id = $1";
    pub const RUNNING_OF: &str =
        "SELECT id, lease_token, started_at, timeout_ms FROM tasks WHERE status = \
        'running' AND agent_id = $1";
}
