//! `drover-server`: the durable priority queue, agent registry, REST API
//! and dashboard of Drover, as a library so that `main` and the tests start
//! the same application.
//!
//! Layers, each using only those below it (no cycles):
//! - `app`: builds the application from its configuration, serves it, and
//!   runs the shutdown sequence; `admin_commands`: the one-off commands.
//! - `http`: every route and extractor (REST API, agent protocol, sessions,
//!   the event stream, the dashboard's pages).
//! - `state`: what handlers share — the store, configuration and services.
//! - `services`: long-lived parts that each hold only what they use:
//!   dispatcher, advancer, duties, event bus, relay, and `effects` (what a
//!   committed change sets off).
//! - rules without I/O of their own: `accounts`, `audit`, `credentials`,
//!   `tokens`, `passwords`, `ratelimit`, `error`, `config`, `tls`,
//!   `telemetry`.

mod accounts;
mod admin_commands;
pub mod app;
mod audit;
mod auth_cache;
mod bootstrap;
pub mod config;
mod credentials;
mod error;
mod http;
mod passwords;
mod ratelimit;
mod services;
mod state;
pub mod telemetry;
mod tls;
mod tokens;

pub use app::{run, Application};
pub use config::Config;
