//! The heartbeat loop: keeps the agent online and its leases alive, and
//! carries the server's orders back (stop these tasks, drain).

use std::sync::Arc;
use std::time::Duration;

use drover_protocol::agent::HeartbeatRequest;

use crate::backoff::Backoff;
use crate::client::CALL_TIMEOUT;
use crate::drain::Drain;
use crate::session::Session;
use crate::stop::StopSignal;
use crate::tasks::TaskSet;

/// Shortest interval honoured, whatever the server says.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Sends a heartbeat every `heartbeat_interval_ms` (as of the latest
/// registration) until `stop`. A failed heartbeat is retried with backoff,
/// but never later than the next regular one.
pub async fn run(
    session: Arc<Session>,
    tasks: Arc<TaskSet>,
    drain: Arc<Drain>,
    mut stop: StopSignal,
) {
    let mut backoff = Backoff::default();
    let mut refused_logged = false;
    let mut delay = interval(&session);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.stopped() => return,
        }
        let every = interval(&session);
        // Long enough for a slow server, short enough that a hung request
        // does not silence the agent past its timeout.
        let timeout = every.max(Duration::from_secs(5)).min(CALL_TIMEOUT);
        let request = HeartbeatRequest {
            running: tasks.leases(),
        };
        let answer = tokio::select! {
            answer = session.heartbeat(&request, timeout) => answer,
            _ = stop.stopped() => return,
        };
        match answer {
            Ok(reply) => {
                backoff.reset();
                refused_logged = false;
                delay = every;
                for task_id in reply.cancel {
                    if tasks.cancel(task_id) {
                        tracing::info!(task_id, "the server took the task back (cancelled, timed out or reassigned); stopped it");
                    }
                }
                drain.set(reply.drain);
            }
            Err(e) => {
                if !e.is_transient() && !refused_logged {
                    tracing::warn!(error = %e, "the server refused a heartbeat; retrying");
                    refused_logged = true;
                }
                delay = backoff.next_delay().min(every);
            }
        }
    }
}

fn interval(session: &Session) -> Duration {
    Duration::from_millis(session.info().heartbeat_interval_ms).max(MIN_INTERVAL)
}
