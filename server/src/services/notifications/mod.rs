//! Outgoing notifications: two leader-only loops, stopped with the duties.
//!
//! - [`scan`]: reads the events rules listen to from the rows that record
//!   them (failed runs and tasks, new approvals, agents found silent),
//!   after a durable cursor per kind, and writes one delivery per matching
//!   rule and event. Nothing on the claim or result path changes: the
//!   events are there already, and only the failures enter the indexes the
//!   scan reads.
//! - [`deliver`]: posts the due deliveries, at most a few at once, and
//!   records each attempt's outcome: delivered (2xx), retried later with
//!   exponential backoff, or failed after the last attempt.
//!
//! Delivery is at least once: a server that stops between a POST and its
//! record sends it again (with the same `Idempotency-Key`) once the
//! attempt's lease is over. See `engine/src/store/notifications.rs`.

pub mod deliver;
pub mod scan;

/// The event kind dashboards hear when a delivery or a rule changes.
pub const EVENT_KIND: &str = "notification";
