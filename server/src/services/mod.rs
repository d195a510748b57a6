//! The long-lived parts of a server instance. Each holds only what it uses
//! (the store, another service's handle), never the whole application
//! state, so they depend on each other in one direction:
//! `effects` → `advance` → `dispatcher`, `events`; `duties` → `effects`;
//! `notifications` → `events`;
//! `relay` → `dispatcher`, `events`; `load_history`, `overview_history`, `queue_gauges` and
//! `retention` use the store alone,
//! on `leader_ticks`.

pub mod admitter;
pub mod advance;
pub mod cancel;
pub mod dispatcher;
pub mod duties;
pub mod effects;
pub mod events;
pub mod gated;
pub mod leader_ticks;
pub mod load_history;
pub mod notifications;
pub mod overview_history;
pub mod queue_gauges;
pub mod rate_limiter;
pub mod relay;
pub mod retention;
pub mod schedules;
pub mod start_rates;
