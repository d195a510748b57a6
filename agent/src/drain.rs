//! Whether the operator has asked this agent to stop taking work.
//!
//! Both claim and heartbeat answers carry the flag; the claim loop waits while
//! it is set, and resumes if the operator re-enables the agent.

use tokio::sync::watch;

#[derive(Debug)]
pub struct Drain(watch::Sender<bool>);

impl Default for Drain {
    fn default() -> Self {
        Self(watch::channel(false).0)
    }
}

impl Drain {
    /// Records the server's latest answer, logging changes.
    pub fn set(&self, draining: bool) {
        let changed = self.0.send_if_modified(|current| {
            let changed = *current != draining;
            *current = draining;
            changed
        });
        if changed && draining {
            tracing::info!("the server asked this agent to drain: no new tasks will be claimed");
        } else if changed {
            tracing::info!("the server re-enabled this agent: claiming tasks again");
        }
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the agent is not draining.
    pub async fn active(&self) {
        let mut rx = self.0.subscribe();
        // The sender is `self`, alive for the whole wait.
        let _ = rx.wait_for(|draining| !*draining).await;
    }
}
