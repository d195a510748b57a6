//! Everything observable, compared with the model.

use std::collections::HashMap;

use drover_engine::store::{QueueStore, TaskFilter};
use drover_protocol::api::{TaskStatus, TaskView};
use proptest::prelude::*;

use super::*;

impl Case<'_> {
    /// Compares everything observable with the model, and takes the
    /// store's draw for each backoff the model only bounds.
    pub(crate) async fn check(&mut self) -> Step {
        let store = self.store;
        // The case's tasks are the newest ones.
        let listed = db(
            "list_tasks",
            store
                .list_tasks(&TaskFilter {
                    limit: self.tasks.len() as i64,
                    ..TaskFilter::default()
                })
                .await,
        )?;
        let listed: HashMap<i64, TaskView> = listed.into_iter().map(|t| (t.id, t)).collect();
        prop_assert_eq!(listed.len(), self.tasks.len());
        for t in &mut self.tasks {
            let Some(s) = listed.get(&t.id) else {
                return Err(fail(format!("task {} is not listed", t.id)));
            };
            prop_assert_eq!(
                (s.status, s.attempts),
                (t.status, t.attempts),
                "task {}: (status, attempts)",
                t.id
            );
            match t.status {
                TaskStatus::Running => {
                    let l = t
                        .lease
                        .ok_or_else(|| fail("model: running without a lease"))?;
                    prop_assert_eq!(
                        (s.agent_id, s.lease_token),
                        (Some(self.agents[l.agent].id), Some(l.token)),
                        "task {}: holder and lease",
                        t.id
                    );
                }
                TaskStatus::Queued => {
                    prop_assert_eq!(s.agent_id, None, "queued task {} has a holder", t.id);
                    match t.run_after {
                        RunAfter::At(at) => {
                            prop_assert_eq!(s.run_after_us, at, "task {}: run_after", t.id)
                        }
                        RunAfter::Between(lo, hi) => {
                            prop_assert!(
                                (lo..=hi).contains(&s.run_after_us),
                                "task {}: retry at {} not in [{}, {}] (now {})",
                                t.id,
                                s.run_after_us,
                                lo,
                                hi,
                                self.now
                            );
                            covered("backoff drawn");
                            t.run_after = RunAfter::At(s.run_after_us);
                        }
                    }
                }
                _ => {}
            }
        }
        // The queue lists in claim order.
        let queued = db(
            "list queued",
            store
                .list_tasks(&TaskFilter {
                    statuses: vec![TaskStatus::Queued],
                    limit: 100_000,
                    ..TaskFilter::default()
                })
                .await,
        )?;
        let queued: Vec<i64> = queued.iter().map(|t| t.id).collect();
        let expected: Vec<i64> = self
            .queue_order()
            .iter()
            .map(|&i| self.tasks[i].id)
            .collect();
        prop_assert_eq!(queued, expected, "queued tasks in claim order");
        // Agents: status, and C equal to the leases held, never above M.
        for (a, m) in self.agents.iter().enumerate() {
            let s = db("agent_by_token", store.agent_by_token(&m.session).await)?
                .ok_or_else(|| fail(format!("agent {a} not found by its session")))?;
            let running = self.running_of(a);
            prop_assert_eq!(
                (s.status, s.running, s.capacity),
                (m.state.status(), running, m.capacity),
                "agent {}: (status, running, capacity)",
                a
            );
            prop_assert!(s.running <= s.capacity);
        }
        Ok(())
    }

    /// The stats, as the change since the case started. (Once per case:
    /// they count every task in the database.)
    pub(crate) async fn check_stats(&self) -> Step {
        let stats = db("stats", self.store.stats().await)?;
        let count = |s: TaskStatus| self.tasks.iter().filter(|t| t.status == s).count() as i64;
        let online = self
            .agents
            .iter()
            .filter(|a| matches!(a.state, AState::Online | AState::Draining))
            .count() as i64;
        let b = &self.base;
        prop_assert_eq!(
            [
                stats.queued - b.queued,
                stats.running - b.running,
                stats.succeeded - b.succeeded,
                stats.failed - b.failed,
                stats.cancelled - b.cancelled,
                stats.agents_online - b.agents_online,
            ],
            [
                count(TaskStatus::Queued),
                count(TaskStatus::Running),
                count(TaskStatus::Succeeded),
                count(TaskStatus::Failed),
                count(TaskStatus::Cancelled),
                online,
            ],
            "stats (queued, running, succeeded, failed, cancelled, agents online)"
        );
        Ok(())
    }

    /// At the end: each task's attempt history has one row per claim, and
    /// only a running task has an attempt still running, under its lease.
    pub(crate) async fn check_histories(&self) -> Step {
        for t in &self.tasks {
            let detail = db("get_task", self.store.get_task(t.id).await)?
                .ok_or_else(|| fail(format!("task {} not found", t.id)))?;
            let open: Vec<i64> = detail
                .attempt_history
                .iter()
                .filter(|h| h.outcome == "running")
                .map(|h| h.lease_token)
                .collect();
            let current: Vec<i64> = t
                .lease
                .filter(|_| t.status == TaskStatus::Running)
                .map(|l| l.token)
                .into_iter()
                .collect();
            prop_assert_eq!(
                (detail.attempt_history.len(), open),
                (t.claims, current),
                "task {}: (attempt rows, running attempts)",
                t.id
            );
        }
        Ok(())
    }
}
