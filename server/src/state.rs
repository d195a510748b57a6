//! The state every handler shares.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use drover_engine::domain::Scheduling;
use drover_engine::store::QueueStore;
use drover_engine::Store;
use drover_protocol::api::AgentView;

use crate::config::Config;
use crate::services::advance::Advancer;
use crate::services::dispatcher::Dispatcher;
use crate::services::effects::Effects;
use crate::services::events::EventBus;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Shared>,
}

pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub scheduling: Scheduling,
    pub dispatcher: Arc<Dispatcher>,
    /// Identifies this instance in the leadership table and in `/status`.
    pub instance_id: String,
    /// Whether this instance currently holds leadership (runs the duties).
    pub leader: Arc<AtomicBool>,
    /// Change notices for live dashboards.
    pub events: Arc<EventBus>,
    /// Advances workflow runs in batches (see `crate::services::advance`).
    pub advancer: Arc<Advancer>,
    /// Wakes the dispatcher, publishes events and advances runs after a change.
    pub effects: Arc<Effects>,
    /// Sign-in attempts per client address and per user name.
    pub sign_in_limiter: crate::ratelimit::SignInLimiter,
    /// Task types some agent has declared, plus the configured ones: a submit
    /// of any other type is refused. Refreshed from the store on a miss, so a
    /// registration on another instance is seen.
    known_types: RwLock<HashSet<String>>,
    /// Task types gated by approvals (only runs and admins submit them), as
    /// of the newest workflow version id they were worked out from.
    pub gated_cache: Arc<GatedTypes>,
    /// Bearer tokens verified a moment ago (`crate::auth_cache`).
    pub auth_cache: crate::auth_cache::AuthCache,
    /// The registered agents as of a moment ago: a submit checks its tasks
    /// can be taken by someone without a query each.
    agents_seen: RwLock<Option<(std::time::Instant, Arc<Vec<AgentView>>)>>,
    /// Wakes the schedule loop when a schedule is written.
    pub schedule_wake: Arc<tokio::sync::Notify>,
    /// Wakes the notification deliverer when a delivery is written.
    pub notify_wake: Arc<tokio::sync::Notify>,
    /// Submits, claims and results this instance has served: how busy the
    /// queue is, for the work that yields to it (retention).
    pub queue_requests: Arc<std::sync::atomic::AtomicU64>,
}

pub use crate::services::gated::{gated_types, GatedTypes};

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self {
            inner: Arc::new(shared),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

impl Shared {
    pub fn new(
        config: Config,
        store: Store,
        dispatcher: Arc<Dispatcher>,
        instance_id: String,
    ) -> Self {
        let known: HashSet<String> = config.task_types.iter().cloned().collect();
        let config_auth_ttl = config.auth_cache_ttl;
        let events = Arc::new(EventBus::new(instance_id.clone(), store.clone()));
        let scheduling = config.scheduling();
        let advancer = Arc::new(Advancer::new(
            store.clone(),
            scheduling,
            dispatcher.clone(),
            events.clone(),
        ));
        let effects = Arc::new(Effects::new(
            dispatcher.clone(),
            events.clone(),
            advancer.clone(),
        ));
        Self {
            advancer,
            effects,
            scheduling,
            config,
            store,
            dispatcher,
            instance_id,
            leader: Arc::new(AtomicBool::new(false)),
            events,
            sign_in_limiter: crate::ratelimit::SignInLimiter::standard(),
            known_types: RwLock::new(known),
            gated_cache: Arc::new(RwLock::new(None)),
            auth_cache: crate::auth_cache::AuthCache::new(config_auth_ttl),
            schedule_wake: Arc::new(tokio::sync::Notify::new()),
            notify_wake: Arc::new(tokio::sync::Notify::new()),
            queue_requests: Arc::default(),
            agents_seen: RwLock::new(None),
        }
    }

    /// The gated task types, worked out again only when a workflow version was
    /// added since (on any instance): a submit costs one index lookup, not a
    /// load and parse of every definition.
    pub async fn gated_types(
        &self,
    ) -> Result<Arc<BTreeMap<String, String>>, crate::error::ApiError> {
        Ok(gated_types(&self.store, &self.gated_cache).await?)
    }

    /// The registered agents, read again when the copy is a second old.
    pub async fn registered_agents(
        &self,
    ) -> Result<Arc<Vec<AgentView>>, drover_engine::StoreError> {
        if let Some((at, agents)) = self.agents_seen.read().ok().and_then(|a| a.clone()) {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return Ok(agents);
            }
        }
        let agents = Arc::new(self.store.list_agents().await?);
        if let Ok(mut seen) = self.agents_seen.write() {
            *seen = Some((std::time::Instant::now(), Arc::clone(&agents)));
        }
        Ok(agents)
    }

    /// An agent registered here: the next submit reads the agents again.
    pub fn forget_registered_agents(&self) {
        if let Ok(mut seen) = self.agents_seen.write() {
            *seen = None;
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn learn_task_types(&self, types: impl IntoIterator<Item = String>) {
        if let Ok(mut known) = self.known_types.write() {
            known.extend(types);
        }
    }

    fn knows(&self, task_type: &str) -> bool {
        self.known_types
            .read()
            .map(|k| k.contains(task_type))
            .unwrap_or(false)
    }

    /// Whether a task type may be submitted; consults the store once when the
    /// cache does not know it.
    pub async fn ensure_types_known<'a>(
        &self,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), drover_engine::StoreError> {
        if types.into_iter().all(|t| self.knows(t)) {
            return Ok(());
        }
        let from_store = self.store.known_task_types().await?;
        self.learn_task_types(from_store);
        Ok(())
    }

    pub fn is_known_type(&self, task_type: &str) -> bool {
        self.knows(task_type)
    }
}
