//! Error types of the engine. The server maps them to HTTP in one place.

use thiserror::Error;

/// A request field that failed validation: `field` is its path in the
/// request body (for example `tasks[2].urgency`).
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error under a parent path (`tasks[3]` + `urgency`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// Failures of the durable store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The credential presented belongs to something an admin revoked.
    #[error("{0}")]
    Revoked(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite writer thread (`rusqlite`), kept as text.
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid database URL: {0}")]
    Config(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
