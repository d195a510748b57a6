//! Hands queued work to waiting agents, least-loaded first.
//!
//! An agent's claim is a long-poll: the handler parks a [`Waiter`] here and
//! waits on a oneshot channel. One dispatcher task per server instance runs
//! a *round* whenever it is kicked (a submit, a result that frees a slot, a
//! requeue, a NOTIFY from another instance, a new waiter) or a delayed task
//! comes due. A round claims from the store for the waiters, least-loaded
//! first: kinds of agents in order of their least-loaded waiter (its load
//! L = C/M when it parked, then arrival), and within a kind by L as the
//! store counts it at that moment, so when work is scarce the least-loaded
//! agent gets it first. Agents are
//! woken the moment work exists; nobody sleeps and re-polls. An agent keeps
//! one claim parked for all its slots (the store caps it at M − C), so a
//! result that frees a slot is followed by a round that fills it.
//!
//! Agents with the same task types and labels compete for the same tasks, so
//! a round claims for each such group at once (`QueueStore::claim_group`):
//! the best tasks go to the least-loaded agent of the group, the next ones
//! to the next. On PostgreSQL that is one statement per group, so a fleet of
//! identical agents costs one round trip per round, not one per agent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use drover_engine::store::{Claim, QueueStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::agent::{Outcome, TaskResult};
use tokio::sync::{oneshot, Notify};

/// A parked claim request.
struct Waiter {
    agent_id: i64,
    max_tasks: i64,
    /// L = C/M when the request arrived.
    load: f64,
    arrived: Instant,
    /// Agents with the same signature compete for the same tasks.
    signature: String,
    reply: oneshot::Sender<Claim>,
}

/// Parked claims of agents with one signature, least-loaded first.
struct Group {
    signature: String,
    /// (waiter id, agent id, max tasks).
    members: Vec<(u64, i64, i64)>,
}

pub struct Dispatcher {
    waiters: Mutex<HashMap<u64, Waiter>>,
    next_id: Mutex<u64>,
    kick: Notify,
    /// Wakes the leader's key admission (`admitter.rs`): whatever may
    /// free or need a key's slot also kicks the dispatcher.
    admit: Notify,
    /// When the oldest kick not yet answered by a round came: how long work
    /// waits for the dispatcher is a metric.
    kicked_at: Mutex<Option<Instant>>,
    lease_ttl_us: i64,
    /// Set on shutdown: parked claims are answered empty at once, so the
    /// server does not wait out every long-poll before it can stop.
    closed: std::sync::atomic::AtomicBool,
    /// How fast each task type starts here (for estimated start times).
    pub starts: super::start_rates::StartRates,
}

/// A ticket for a parked claim; dropping it withdraws the waiter.
pub struct Ticket<'a> {
    dispatcher: &'a Dispatcher,
    id: u64,
    pub reply: oneshot::Receiver<Claim>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.dispatcher.waiters.lock() {
            w.remove(&self.id);
        }
        metrics::gauge!("drover_claim_waiters").set(self.dispatcher.waiting() as f64);
    }
}

impl Dispatcher {
    pub fn new(lease_ttl: Duration) -> Self {
        Self {
            waiters: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
            kick: Notify::new(),
            admit: Notify::new(),
            kicked_at: Mutex::new(None),
            lease_ttl_us: lease_ttl.as_micros() as i64,
            closed: std::sync::atomic::AtomicBool::new(false),
            starts: Default::default(),
        }
    }

    pub fn lease_ttl_us(&self) -> i64 {
        self.lease_ttl_us
    }

    /// Something changed that may let a waiter have work: run a round, and
    /// a key admission pass (held tasks may have room now).
    pub fn kick(&self) {
        self.admit.notify_one();
        self.kick_claims();
    }

    /// Runs a claim round only: what the admission pass calls once it has
    /// admitted tasks, so that it does not wake itself.
    pub fn kick_claims(&self) {
        if let Ok(mut at) = self.kicked_at.lock() {
            at.get_or_insert_with(Instant::now);
        }
        self.kick.notify_one();
    }

    /// Returns once an admission pass is wanted (see [`Dispatcher::kick`]).
    pub async fn admission_wanted(&self) {
        self.admit.notified().await;
    }

    /// Whether another agent of the same kind (`signature`) is parked with
    /// a load below `load`: eager dispatch to an agent that just reported
    /// yields to it, so the least-loaded agent still gets the work first.
    pub fn less_loaded_waiting(&self, agent_id: i64, signature: &str, load: f64) -> bool {
        self.waiters.lock().is_ok_and(|w| {
            w.values().any(|w| {
                w.agent_id != agent_id
                    && w.load < load
                    && w.signature == signature
                    && !w.reply.is_closed()
            })
        })
    }

    pub fn waiting(&self) -> usize {
        self.waiters.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Answers every parked claim with no work and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut w) = self.waiters.lock() {
            // Dropping the senders wakes the handlers with an empty answer.
            w.clear();
        }
    }

    /// Parks a claim request and starts a round for it.
    pub fn park(&self, agent_id: i64, max_tasks: i64, load: f64, signature: String) -> Ticket<'_> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        if let Ok(mut w) = self.waiters.lock() {
            // Checked under the lock, so `close` cannot slip in between.
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Ticket {
                    dispatcher: self,
                    id,
                    reply: rx,
                };
            }
            w.insert(
                id,
                Waiter {
                    agent_id,
                    max_tasks,
                    load,
                    arrived: Instant::now(),
                    signature,
                    reply: tx,
                },
            );
        }
        metrics::gauge!("drover_claim_waiters").set(self.waiting() as f64);
        self.kick();
        Ticket {
            dispatcher: self,
            id,
            reply: rx,
        }
    }

    /// Runs rounds until `shutdown` resolves.
    pub async fn run(&self, store: Store, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // Kicked during the last round: go again at once. Under load
            // that is nearly every round, and the round's claims see any
            // delayed task that came due, so the lookup below is skipped.
            let kicked = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = self.kick.notified() => true,
                _ = std::future::ready(()) => false,
            };
            if !kicked {
                // Nothing new: sleep until a kick, or (with claims parked)
                // until the next delayed task is due. A kick also cuts the
                // lookup of that time short.
                let idle = self.waiting() == 0;
                let due = async {
                    let next_due = self.next_due(&store).await;
                    tokio::time::sleep(next_due.unwrap_or(Duration::from_secs(1))).await;
                };
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = self.kick.notified() => {}
                    _ = due, if !idle => {}
                }
            }
            self.round(&store).await;
        }
        tracing::debug!("dispatcher stopped");
    }

    /// Time until the next delayed task becomes due, if one is within a second.
    async fn next_due(&self, store: &Store) -> Option<Duration> {
        let now = now_us();
        match store.next_run_after(now).await {
            Ok(Some(at)) => Some(Duration::from_micros(
                (at - now).clamp(1_000, 1_000_000) as u64
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next delayed task");
                None
            }
        }
    }

    /// One pass over the waiters, least-loaded first.
    async fn round(&self, store: &Store) {
        if let Some(at) = self.kicked_at.lock().ok().and_then(|mut at| at.take()) {
            metrics::histogram!("drover_dispatch_delay_seconds").record(at.elapsed().as_secs_f64());
        }
        let mut order: Vec<(u64, f64, Instant, i64, i64, String)> = match self.waiters.lock() {
            Ok(w) => w
                .iter()
                .filter(|(_, w)| !w.reply.is_closed())
                .map(|(id, w)| {
                    (
                        *id,
                        w.load,
                        w.arrived,
                        w.agent_id,
                        w.max_tasks,
                        w.signature.clone(),
                    )
                })
                .collect(),
            Err(_) => return,
        };
        order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
        // Agents of one signature compete for the same tasks: one claim for
        // the group, least-loaded first (an agent parked twice counts once).
        let mut groups: Vec<Group> = Vec::new();
        for (id, _, _, agent_id, max_tasks, signature) in order {
            let at = match groups.iter().position(|g| g.signature == signature) {
                Some(at) => at,
                None => {
                    groups.push(Group {
                        signature,
                        members: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let members = &mut groups[at].members;
            if !members.iter().any(|&(_, agent, _)| agent == agent_id) {
                members.push((id, agent_id, max_tasks));
            }
        }
        for Group { members, .. } in groups {
            let agents: Vec<(i64, i64)> = members.iter().map(|&(_, a, m)| (a, m)).collect();
            let started = Instant::now();
            let claimed = store
                .claim_group(&agents, now_us(), self.lease_ttl_us)
                .await;
            metrics::histogram!("drover_claim_seconds").record(started.elapsed().as_secs_f64());
            let claims = match claimed {
                Ok(claims) => claims,
                Err(e) => {
                    tracing::warn!(error = %e, agents = agents.len(), "claim failed");
                    continue;
                }
            };
            for ((id, agent_id, _), claim) in members.into_iter().zip(claims) {
                self.deliver(store, id, agent_id, claim).await;
            }
        }
        metrics::gauge!("drover_claim_waiters").set(self.waiting() as f64);
    }

    /// Answers a parked claim that got work (or must drain); a claim that
    /// got nothing stays parked for the next round.
    async fn deliver(&self, store: &Store, id: u64, agent_id: i64, claim: Claim) {
        let got = claim.tasks.len();
        if got == 0 && !claim.drain {
            return;
        }
        let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(&id));
        metrics::counter!("drover_tasks_claimed_total").increment(got as u64);
        self.starts.record(&claim.tasks, now_us());
        let undelivered = match waiter {
            Some(w) => w.reply.send(claim).err(),
            None => Some(claim),
        };
        if let Some(claim) = undelivered {
            release(store, agent_id, claim).await;
            self.kick();
        }
    }
}

/// The waiter left (timed out or disconnected) while its claim was made:
/// give the tasks back at once rather than letting their leases run out.
async fn release(store: &Store, agent_id: i64, claim: Claim) {
    if claim.tasks.is_empty() {
        return;
    }
    let results: Vec<TaskResult> = claim
        .tasks
        .iter()
        .map(|a| TaskResult {
            task_id: a.task_id,
            lease_token: a.lease_token,
            outcome: Outcome::Released {
                reason: "claim abandoned before delivery".into(),
            },
            started_at_us: None,
            finished_at_us: None,
        })
        .collect();
    if let Err(e) = store.complete(agent_id, &results, now_us()).await {
        tracing::warn!(error = %e, agent_id, "could not release undelivered tasks; their leases will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eager_dispatch_yields_only_to_a_less_loaded_agent_of_its_kind() {
        let d = Dispatcher::new(Duration::from_secs(30));
        let _b = d.park(2, 4, 0.25, "echo".into());
        let _c = d.park(3, 4, 0.0, "other".into());
        assert!(
            d.less_loaded_waiting(1, "echo", 0.5),
            "agent 2 is less loaded"
        );
        assert!(
            !d.less_loaded_waiting(1, "echo", 0.25),
            "a tie does not yield"
        );
        assert!(
            !d.less_loaded_waiting(2, "echo", 0.5),
            "an agent does not yield to itself"
        );
        assert!(!d.less_loaded_waiting(1, "sql", 0.5), "nor to another kind");
    }
}
