//! Drover's domain rules and durable storage.
//!
//! Data flows one way: the HTTP edge parses requests into [`domain`] types,
//! the rules in [`lifecycle`] decide what a result or a lost lease does to a
//! task, and a [`store::Store`] (SQLite or PostgreSQL) makes each decision one
//! database transaction. Nothing here knows about HTTP.

pub mod domain;
pub mod error;
pub mod explain;
pub mod lifecycle;
pub mod logs;
pub mod notification;
pub mod schedule;
pub mod store;
pub mod time;
pub mod workflow;

pub use error::{FieldError, StoreError};
pub use store::Store;
