//! What a committed change sets off, in one place: waking the dispatcher
//! (work became claimable or a slot was freed), telling dashboards
//! (events), and moving workflow runs on (the advancer). Handlers and
//! duties describe a [`Change`] and call [`Effects::after`] instead of
//! writing the three out each time.

use std::sync::Arc;

use drover_engine::store::Advanced;

use super::advance::Advancer;
use super::dispatcher::Dispatcher;
use super::events::EventBus;

/// The three effects, cheap to share.
pub struct Effects {
    dispatcher: Arc<Dispatcher>,
    events: Arc<EventBus>,
    advancer: Arc<Advancer>,
}

/// What a change makes necessary beyond its own transaction.
#[derive(Debug, Default)]
#[must_use = "a change does nothing until given to Effects::after"]
pub struct Change {
    wake: bool,
    events: Vec<(&'static str, Option<i64>, Option<String>)>,
    runs: Vec<i64>,
    runs_of_tasks: Vec<i64>,
}

impl Change {
    pub fn new() -> Self {
        Self::default()
    }

    /// Work may have become claimable, or a slot was freed: run a
    /// dispatcher round.
    pub fn wake(mut self) -> Self {
        self.wake = true;
        self
    }

    /// Tells dashboards that `kind` (`id`) changed, to `status` if known.
    pub fn event(mut self, kind: &'static str, id: Option<i64>, status: Option<&str>) -> Self {
        self.events.push((kind, id, status.map(str::to_string)));
        self
    }

    /// These runs may move on.
    pub fn advance(mut self, runs: impl IntoIterator<Item = i64>) -> Self {
        self.runs.extend(runs);
        self
    }

    /// The runs owning these tasks may move on.
    pub fn advance_runs_of(mut self, tasks: &[i64]) -> Self {
        self.runs_of_tasks.extend_from_slice(tasks);
        self
    }
}

impl Effects {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        events: Arc<EventBus>,
        advancer: Arc<Advancer>,
    ) -> Self {
        Self {
            dispatcher,
            events,
            advancer,
        }
    }

    /// Sets off what `change` asks for: publishes its events, advances its
    /// runs (returning once they are advanced), then wakes the dispatcher:
    /// after the advance, so that its round also sees the runs' next steps
    /// rather than running once before them and once after.
    pub async fn after(&self, change: Change) {
        for (kind, id, status) in &change.events {
            self.events.publish(kind, *id, status.as_deref());
        }
        if !change.runs.is_empty() {
            self.advancer.runs(change.runs).await;
        }
        if !change.runs_of_tasks.is_empty() {
            self.advancer.runs_of_tasks(&change.runs_of_tasks).await;
        }
        if change.wake {
            self.dispatcher.kick();
        }
    }

    /// Publishes what runs already advanced (by the store, with the change
    /// that moved them) became, and wakes the dispatcher for their tasks.
    pub fn announce(&self, advanced: &[(i64, Advanced)]) {
        self.advancer.announce(advanced);
    }

    /// Advances every active run: the leader's recovery pass.
    pub async fn advance_all_active(&self) {
        self.advancer.all_active().await;
    }
}
