//! The claim loop: whenever a slot is free (and the agent is not draining),
//! long-poll the server for as many tasks as there are free slots, and start
//! each one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_protocol::agent::{Assignment, ClaimRequest, Outcome};

use crate::backoff::Backoff;
use crate::drain::Drain;
use crate::handlers::Handler;
use crate::session::Session;
use crate::stop::StopSignal;
use crate::tasks::TaskSet;

/// The claim loop's inputs.
pub struct Claimer {
    pub session: Arc<Session>,
    pub tasks: Arc<TaskSet>,
    /// Task type → handler.
    pub handlers: HashMap<String, Arc<Handler>>,
    pub drain: Arc<Drain>,
}

impl Claimer {
    /// Claims until `stop`. A claim in flight is abandoned on stop: the server
    /// requeues anything it handed out in it when the agent deregisters.
    pub async fn run(self, mut stop: StopSignal) {
        let mut backoff = Backoff::default();
        // Paces claims the server answers at once with nothing (it may still
        // count tasks whose results are on their way as running), so such
        // answers do not turn into a busy loop.
        let mut idle = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut refused_logged = false;
        loop {
            tokio::select! {
                _ = self.drain.active() => {}
                _ = stop.stopped() => return,
            }
            let mut slots = tokio::select! {
                slots = self.tasks.free_slots() => slots,
                _ = stop.stopped() => return,
            };
            if slots.is_empty() {
                return; // the slot semaphore is never closed; defensive
            }
            let wait_ms = self.session.info().max_claim_wait_ms;
            let request = ClaimRequest {
                max_tasks: u32::try_from(slots.len()).unwrap_or(u32::MAX),
                wait_ms,
            };
            let asked = Instant::now();
            let answer = tokio::select! {
                answer = self.session.claim(&request) => answer,
                _ = stop.stopped() => return,
            };
            let pause = match answer {
                Ok(reply) => {
                    backoff.reset();
                    refused_logged = false;
                    self.drain.set(reply.drain);
                    let got = reply.tasks.len();
                    for assignment in reply.tasks {
                        match slots.pop() {
                            Some(slot) => self.start(assignment, slot),
                            None => {
                                tracing::warn!(
                                    task_id = assignment.task_id,
                                    "the server sent more tasks than asked for; handing it back"
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
                    let early =
                        wait_ms == 0 || asked.elapsed() < Duration::from_millis(wait_ms / 2);
                    if got == 0 && !reply.drain && early {
                        Some(idle.next_delay())
                    } else {
                        idle.reset();
                        None
                    }
                }
                Err(e) => {
                    if !e.is_transient() && !refused_logged {
                        tracing::warn!(error = %e, "the server refused a claim; retrying");
                        refused_logged = true;
                    }
                    Some(backoff.next_delay())
                }
            };
            drop(slots);
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.stopped() => return,
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
