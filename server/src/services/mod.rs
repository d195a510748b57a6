//! The long-lived parts of a server instance. Each holds only what it uses
//! (the store, another service's handle), never the whole application
//! state, so they depend on each other in one direction:
//! `effects` → `advance` → `dispatcher`, `events`; `duties` → `effects`;
//! `relay` → `dispatcher`, `events`.

pub mod advance;
pub mod cancel;
pub mod dispatcher;
pub mod duties;
pub mod effects;
pub mod events;
pub mod gated;
pub mod relay;
pub mod schedules;
pub mod start_rates;
