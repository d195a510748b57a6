//! The claim loop: while the agent is not draining, keep one long-poll
//! parked on the server asking for every slot, and start each task it
//! brings in a free slot.
//!
//! The claim asks for the agent's whole capacity M, not for the slots free
//! when it is sent: the server counts the tasks it handed out and has not
//! yet heard back of, and hands over at most M minus that count, which is
//! not more than the slots free here (a task's slot is freed as its result
//! is queued, before the server can record it). So when a result frees a slot, the
//! dispatcher round that result starts fills it through the claim already
//! parked, instead of waiting for this agent to ask again, and a workflow's
//! next step starts one server round after its predecessor's result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_protocol::agent::ClaimRequest;

use crate::backoff::Backoff;
use crate::drain::Drain;
use crate::session::Session;
use crate::starter::Starter;
use crate::stop::StopSignal;

/// The claim loop's inputs.
pub struct Claimer {
    pub session: Arc<Session>,
    pub starter: Arc<Starter>,
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
            let wait_ms = self.session.info().max_claim_wait_ms;
            let request = ClaimRequest {
                max_tasks: self.starter.tasks().capacity(),
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
                    self.starter.start_all(reply.tasks).await;
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
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.stopped() => return,
                }
            }
        }
    }
}
