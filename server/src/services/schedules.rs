//! The leader's schedule loop: fires each due tick of each schedule once.
//!
//! Every instance runs the loop; only the leader (see `duties`) acts. A pass
//! reads the schedules whose next tick has passed, plans each with
//! `schedule::plan_due` (ticks within the grace fire, older ones were
//! missed while no server ran and follow the schedule's policy), and for
//! each tick to fire:
//! 1. looks the tick's key up: something it started already (a pass cut
//!    short by a crash, another instance) is recorded, not started again;
//! 2. applies the overlap policy to what the previous tick started;
//! 3. starts the run or task with the tick's idempotency key;
//! 4. moves the schedule on with a compare-and-set on its revision and
//!    next tick, so a pass that lost a race or met an edit stops there.
//!
//! Between passes it sleeps until the earliest next tick (at most one duty
//! interval, so a new leader starts within one), or until a schedule is
//! written (`wake`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_engine::domain::{Scheduling, TaskSpec};
use drover_engine::schedule::{plan_due, tick_key, When};
use drover_engine::store::{
    QueueStore, RunStore, ScheduleRow, ScheduleStore, Started, TickRecord, WorkflowDefStore,
};
use drover_engine::time::now_us;
use drover_engine::{workflow, Store};
use drover_protocol::api::NewTask;
use drover_protocol::schedule::{MissedPolicy, OverlapPolicy};
use tokio::sync::Notify;

use super::effects::{Change, Effects};
use super::gated::{gated_types, GatedTypes};

/// Schedules read per pass; more due ones wait for the next pass.
const DUE_PER_PASS: i64 = 100;
/// The shortest sleep between passes.
const MIN_SLEEP: Duration = Duration::from_millis(5);

pub struct Scheduler {
    pub store: Store,
    pub effects: Arc<Effects>,
    pub scheduling: Scheduling,
    pub leader: Arc<AtomicBool>,
    /// Notified when a schedule is created or changed.
    pub wake: Arc<Notify>,
    pub gated: Arc<GatedTypes>,
    /// Ticks older than this were missed.
    pub grace: Duration,
    /// The longest sleep: a new leader's first pass comes within it.
    pub interval: Duration,
}

/// What a tick did.
struct Outcome {
    outcome: &'static str,
    started: Option<Started>,
    detail: Option<String>,
}

impl Outcome {
    fn failed(detail: String) -> Self {
        Self {
            outcome: "failed",
            started: None,
            detail: Some(detail),
        }
    }
}

impl Scheduler {
    /// Runs passes until `shutdown` resolves. Stopped with the duties, so a
    /// resigning instance fires nothing more.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let sleep = if self.leader.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = &mut shutdown => break,
                    s = self.pass() => s,
                }
            } else {
                self.interval
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Fires what is due; returns how long to sleep.
    async fn pass(&self) -> Duration {
        let now = now_us();
        match self.store.due_schedules(now, DUE_PER_PASS).await {
            Ok(due) => {
                for s in due {
                    self.fire(s, now).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the due schedules"),
        }
        match self.store.next_schedule_due().await {
            Ok(Some(next)) => {
                let wait = Duration::from_micros((next - now_us()).max(0) as u64);
                wait.clamp(MIN_SLEEP, self.interval)
            }
            Ok(None) => self.interval,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next schedule tick");
                self.interval
            }
        }
    }

    async fn fire(&self, s: ScheduleRow, now: i64) {
        let Some(due) = s.next_fire_at else { return };
        let when = match When::of(s.cron.as_deref(), &s.time_zone, s.at) {
            Ok(w) => w,
            Err(e) => {
                // Stored valid, unreadable now (a time zone gone from the
                // database, say): paused with the reason, not retried forever.
                let record = TickRecord {
                    schedule_id: s.id,
                    revision: s.revision,
                    due,
                    next_fire_at: None,
                    state: "paused",
                    tick: due,
                    outcome: "failed",
                    run_id: None,
                    task_id: None,
                    detail: Some(format!("paused: {}: {}", e.field, e.message)),
                    fired: 0,
                    missed: 0,
                };
                self.record(&record).await;
                return;
            }
        };
        let policy = MissedPolicy::parse(&s.missed_policy).unwrap_or_default();
        let grace = self.grace.as_micros() as i64;
        let plan = plan_due(&when, due, now, grace, policy);
        let state = |next: Option<i64>| if next.is_some() { "active" } else { "done" };
        if plan.fire.is_empty() {
            if plan.missed > 0 {
                tracing::warn!(schedule = %s.name, missed = plan.missed, "schedule ticks missed while no server ran: skipped");
                metrics::counter!("drover_schedule_ticks_total", "outcome" => "missed")
                    .increment(plan.missed as u64);
            }
            let record = TickRecord {
                schedule_id: s.id,
                revision: s.revision,
                due,
                next_fire_at: plan.next,
                state: state(plan.next),
                tick: plan.last_missed.unwrap_or(due),
                outcome: "missed",
                run_id: None,
                task_id: None,
                detail: Some(format!(
                    "{} tick(s) missed while no server ran",
                    plan.missed
                )),
                fired: 0,
                missed: plan.missed,
            };
            self.record(&record).await;
            return;
        }
        let (mut revision, mut due) = (s.revision, due);
        for (i, &tick) in plan.fire.iter().enumerate() {
            let next = plan.fire.get(i + 1).copied().or(plan.next);
            let done = self.start_tick(&s, tick).await;
            metrics::counter!("drover_schedule_ticks_total", "outcome" => done.outcome)
                .increment(1);
            metrics::histogram!("drover_schedule_tick_lag_seconds")
                .record((now_us() - tick) as f64 / 1e6);
            let missed = if i == 0 { plan.missed } else { 0 };
            let mut detail = done.detail;
            if missed > 0 {
                let note = format!("{missed} earlier tick(s) missed while no server ran");
                detail = Some(detail.map_or(note.clone(), |d| format!("{d}; {note}")));
            }
            let record = TickRecord {
                schedule_id: s.id,
                revision,
                due,
                next_fire_at: next,
                state: state(next),
                tick,
                outcome: done.outcome,
                run_id: match done.started {
                    Some(Started::Run(id)) => Some(id),
                    _ => None,
                },
                task_id: match done.started {
                    Some(Started::Task(id)) => Some(id),
                    _ => None,
                },
                detail,
                fired: i64::from(done.started.is_some()),
                missed,
            };
            if !self.record(&record).await {
                return;
            }
            match next {
                Some(n) => (revision, due) = (revision + 1, n),
                None => return,
            }
        }
    }

    /// Writes a tick; `false` if the schedule changed meanwhile.
    async fn record(&self, record: &TickRecord) -> bool {
        match self.store.record_tick(record, now_us()).await {
            Ok(true) => {
                self.effects
                    .after(Change::new().event("schedule", Some(record.schedule_id), None))
                    .await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(schedule = record.schedule_id, error = %e, "could not record a schedule tick");
                false
            }
        }
    }

    /// Starts what tick `tick` of `s` starts, once.
    async fn start_tick(&self, s: &ScheduleRow, tick: i64) -> Outcome {
        let key = tick_key(s.id, tick);
        match self.store.started_by_key(&key).await {
            Ok(Some(started)) => {
                return Outcome {
                    outcome: "started",
                    started: Some(started),
                    detail: None,
                }
            }
            Ok(None) => {}
            Err(e) => return Outcome::failed(format!("could not look the tick up: {e}")),
        }
        let overlap = OverlapPolicy::parse(&s.overlap_policy).unwrap_or_default();
        let previous = if s.workflow.is_some() {
            s.last_run_id.map(Started::Run)
        } else {
            s.last_task_id.map(Started::Task)
        };
        if let (Some(prev), false) = (previous, overlap == OverlapPolicy::Allow) {
            match self.store.is_active(prev).await {
                Ok(false) => {}
                Ok(true) if overlap == OverlapPolicy::Skip => {
                    return Outcome {
                        outcome: "skipped",
                        started: None,
                        detail: Some(format!("{} is still active", describe(prev))),
                    }
                }
                Ok(true) => {
                    let cancelled = match prev {
                        Started::Run(id) => {
                            super::cancel::cancel_run(
                                &self.store,
                                &self.effects,
                                id,
                                "schedule (overlap: cancel the previous run)",
                            )
                            .await
                        }
                        Started::Task(id) => {
                            super::cancel::cancel_task(&self.store, &self.effects, id)
                                .await
                                .map(|_| ())
                        }
                    };
                    match cancelled {
                        Ok(()) | Err(drover_engine::StoreError::Conflict(_)) => {
                            tracing::info!(schedule = %s.name, previous = %describe(prev), "schedule overlap: previous cancelled");
                            crate::audit::record(
                                &self.store,
                                &format!("schedule:{}", s.id),
                                match prev {
                                    Started::Run(_) => "run.cancelled",
                                    Started::Task(_) => "task.cancelled",
                                },
                                Some(describe(prev).replace(' ', ":")),
                                serde_json::json!({ "reason": "overlap", "schedule": s.name }),
                            )
                            .await;
                        }
                        Err(e) => {
                            return Outcome::failed(format!(
                                "could not cancel {}: {e}",
                                describe(prev)
                            ))
                        }
                    }
                }
                Err(e) => {
                    return Outcome::failed(format!("could not read the previous tick's: {e}"))
                }
            }
        }
        let started = match (&s.workflow, &s.task) {
            (Some(name), _) => self.start_run(s, name, &key).await,
            (None, Some(task)) => self.submit_task(task, &key).await,
            (None, None) => Err("the schedule has no target".to_string()),
        };
        match started {
            Ok(started) => {
                tracing::info!(schedule = %s.name, tick, started = %describe(started), "schedule fired");
                Outcome {
                    outcome: "started",
                    started: Some(started),
                    detail: None,
                }
            }
            Err(why) => {
                tracing::warn!(schedule = %s.name, tick, error = %why, "schedule tick failed");
                Outcome::failed(why)
            }
        }
    }

    async fn start_run(&self, s: &ScheduleRow, name: &str, key: &str) -> Result<Started, String> {
        let wf = self
            .store
            .workflow(name, s.workflow_version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| match s.workflow_version {
                Some(v) => format!("no workflow {name:?} version {v}"),
                None => format!("no workflow {name:?}"),
            })?;
        let def: workflow::Definition =
            serde_json::from_value(wf.definition.clone()).map_err(|e| e.to_string())?;
        let inputs: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&s.inputs).map_err(|e| e.to_string())?;
        let inputs = workflow::validate_inputs(&def, inputs)
            .map_err(|e| format!("inputs: {}", workflow::input_errors_text(&e)))?;
        let by = format!("schedule:{}", s.id);
        let (id, created) = self
            .store
            .start_run(&wf, &inputs, &by, Some(key), now_us())
            .await
            .map_err(|e| e.to_string())?;
        if created {
            metrics::counter!("drover_runs_started_total").increment(1);
            self.effects
                .after(
                    Change::new()
                        .advance([id])
                        .event("run", Some(id), Some("running")),
                )
                .await;
        }
        Ok(Started::Run(id))
    }

    async fn submit_task(&self, task: &str, key: &str) -> Result<Started, String> {
        let new: NewTask = serde_json::from_str(task).map_err(|e| e.to_string())?;
        let gated = gated_types(&self.store, &self.gated)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(wf) = gated.get(&new.task_type) {
            return Err(format!(
                "task type {:?} runs after an approval in workflow {wf:?}: schedule that workflow instead",
                new.task_type
            ));
        }
        let mut spec = TaskSpec::parse(new, &self.scheduling.weights, |_| true)
            .map_err(|e| format!("task.{}: {}", e.field, e.message))?;
        spec.idempotency_key = Some(key.to_string());
        let submitted = self
            .store
            .submit(&[spec], &self.scheduling, now_us())
            .await
            .map_err(|e| e.to_string())?;
        let id = submitted
            .first()
            .map(|t| t.id)
            .ok_or_else(|| "the store answered no task".to_string())?;
        self.effects
            .after(Change::new().wake().event("task", Some(id), Some("queued")))
            .await;
        Ok(Started::Task(id))
    }
}

fn describe(started: Started) -> String {
    match started {
        Started::Run(id) => format!("run {id}"),
        Started::Task(id) => format!("task {id}"),
    }
}
