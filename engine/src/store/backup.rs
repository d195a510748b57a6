//! Online backups of an SQLite database: a consistent copy taken while the
//! server runs, by SQLite's `VACUUM INTO` on a read-only connection (one
//! read transaction: it sees one committed state, holds up no writer in WAL
//! mode, and writes a compact file with no `-wal` beside it to restore).
//! PostgreSQL has its own tools (`pg_dump`, base backups); see the README.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::StoreError;

use super::Result;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Copies the database at `url` (`sqlite://PATH`) to `to`, which must not
/// exist: written beside it under a temporary name, made private (it holds
/// token hashes and payloads), then renamed into place, so `to` is never a
/// half-written file.
pub async fn backup(url: &str, to: &Path) -> Result<BackupReport> {
    if !url.starts_with("sqlite:") {
        return Err(StoreError::Config(
            "online backup is for the embedded SQLite database; back PostgreSQL up with \
             pg_dump or a base backup (see the README)"
                .into(),
        ));
    }
    if to.exists() {
        return Err(StoreError::Config(format!(
            "{}: already exists; a backup never overwrites a file",
            to.display()
        )));
    }
    let options = SqliteConnectOptions::from_str(url)?;
    if !options.get_filename().exists() {
        return Err(StoreError::Config(format!(
            "{}: no database there",
            options.get_filename().display()
        )));
    }
    // Beside `to`, named for this process: never a file someone else has,
    // so removing it on failure removes only what this backup wrote.
    let mut partial = to.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = PathBuf::from(partial);
    let mut conn = options.read_only(true).connect().await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(partial.to_string_lossy().as_ref())
        .execute(&mut conn)
        .await;
    conn.close().await?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let done = private(&partial).and_then(|()| std::fs::rename(&partial, to));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Config(format!("{}: {e}", to.display())));
    }
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: to.to_path_buf(),
        bytes,
    })
}

#[cfg(unix)]
fn private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
