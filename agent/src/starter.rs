//! Starts the tasks the server hands this agent, wherever they come from:
//! the claim long-poll, or the answer to a results request (eager dispatch,
//! which refills the slots those results freed in the same round trip).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_protocol::agent::{Assignment, Outcome};

use crate::drain::Drain;
use crate::handlers::Handler;
use crate::tasks::TaskSet;

/// How long a task the server sent waits for a slot here before it is
/// handed back. The server's count of running tasks is never below ours for
/// long, but a task that just finished may hold its slot a moment after its
/// result is queued, and an older attempt of a re-issued task takes a
/// moment to stop and free its slot.
const SLOT_WAIT: Duration = Duration::from_millis(250);

/// Runs assignments in free slots through their handlers.
pub struct Starter {
    tasks: Arc<TaskSet>,
    /// Task type → handler.
    handlers: HashMap<String, Arc<Handler>>,
    /// Cleared when the agent stops taking work: what still arrives (an
    /// answer already on its way) is handed back, not started.
    open: AtomicBool,
}

impl Starter {
    pub fn new(tasks: Arc<TaskSet>, handlers: HashMap<String, Arc<Handler>>) -> Arc<Self> {
        Arc::new(Self {
            tasks,
            handlers,
            open: AtomicBool::new(true),
        })
    }

    pub fn tasks(&self) -> &Arc<TaskSet> {
        &self.tasks
    }

    /// No more tasks are started (shutdown).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// How many tasks to ask for with a results request: the free slots,
    /// or none while the agent drains or shuts down.
    pub fn wanted(&self, drain: &Drain) -> u32 {
        if !self.open.load(Ordering::SeqCst) || drain.is_draining() {
            return 0;
        }
        self.tasks.free_slots()
    }

    /// Starts each assignment in a free slot; one that finds none in time
    /// (or arrives after shutdown began) is handed back to the server.
    pub async fn start_all(&self, assignments: Vec<Assignment>) {
        for assignment in assignments {
            // A task handed out again while an older attempt still runs
            // here (its lease ran out): that attempt is superseded, and
            // stopping it frees its slot.
            if self.tasks.cancel(assignment.task_id) {
                tracing::warn!(
                    task_id = assignment.task_id,
                    "the server handed out a task this agent was still running; stopped the older attempt"
                );
            }
            if !self.open.load(Ordering::SeqCst) {
                self.tasks.refuse(
                    &assignment,
                    Outcome::Released {
                        reason: "agent is shutting down".into(),
                    },
                );
                continue;
            }
            match self.tasks.free_slot(SLOT_WAIT).await {
                Some(slot) => self.start(assignment, slot),
                None => {
                    tracing::warn!(
                        task_id = assignment.task_id,
                        "the server sent a task with every slot taken; handing it back"
                    );
                    self.tasks.refuse(
                        &assignment,
                        Outcome::Released {
                            reason: "agent has no free slot".into(),
                        },
                    );
                }
            }
        }
    }

    fn start(&self, assignment: Assignment, slot: tokio::sync::OwnedSemaphorePermit) {
        match self.handlers.get(&assignment.task_type) {
            Some(handler) => self.tasks.start(assignment, Arc::clone(handler), slot),
            None => {
                // The server only sends advertised types; if it does not,
                // say so and let another agent try.
                tracing::warn!(task_id = assignment.task_id, task_type = %assignment.task_type, "no handler for this task type");
                let error = format!(
                    "agent has no handler for task type {:?}",
                    assignment.task_type
                );
                self.tasks
                    .refuse(&assignment, crate::handlers::failed(error));
            }
        }
    }
}
