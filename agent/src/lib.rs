//! `drover-agent`: a thin worker for Drover.
//!
//! The agent registers with the server, then runs three loops until it is
//! told to stop: a claim loop that keeps one long-poll parked asking for the
//! agent's whole capacity (the server hands over at most capacity minus the
//! tasks it counts as running here), a heartbeat loop that keeps its leases
//! alive and applies the server's cancellations, and a reporter that
//! delivers results in batches through a durable outbox. Tasks run through
//! handlers configured per task type (`builtin`, `command`, `http`).
//!
//! It is a library as well as a binary so its pieces can be tested (and
//! embedded) without spawning a process.

pub mod agent;
pub mod backoff;
pub mod claimer;
pub mod cli;
pub mod client;
pub mod config;
pub mod drain;
pub mod handlers;
pub mod heartbeat;
pub mod identity;
pub mod logs;
pub mod outbox;
pub mod reporter;
pub mod session;
pub mod starter;
pub mod stop;
pub mod tasks;
pub mod time;

#[cfg(test)]
mod test_util;
