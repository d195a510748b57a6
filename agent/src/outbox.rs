//! The durable list of results not yet acknowledged by the server.
//!
//! A finished task's result is the only record of work done; if the agent
//! restarts while the server is unreachable, the result must still be
//! delivered. The outbox is `state_dir/outbox.jsonl`, one [`TaskResult`] per
//! line. A result is appended and fsynced before it is sent; after the server
//! acknowledges a batch the file is truncated (or rewritten with what is left).
//!
//! Delivering a result twice is harmless (the server fences by lease token and
//! answers `stale`), so the file only errs on the side of "too much": a crash
//! between delivery and truncation re-sends, it never loses.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use drover_protocol::agent::TaskResult;

/// The outbox's file name inside the state directory.
pub const FILE_NAME: &str = "outbox.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open result outbox {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read result outbox {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write result outbox {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open outbox file. Single writer: one agent per state directory.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    file: File,
}

impl Outbox {
    /// Opens (creating `dir` and the file if needed) and returns the results
    /// left by a previous run. Lines that do not parse (a torn last line after
    /// a crash, say) are skipped with a warning rather than blocking start-up.
    pub fn open(dir: &Path) -> Result<(Self, Vec<TaskResult>), OutboxError> {
        create_private_dir(dir).map_err(|source| OutboxError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let file = open_append(&path)?;
        let mut left = Vec::new();
        let reader = BufReader::new(File::open(&path).map_err(|source| OutboxError::Read {
            path: path.clone(),
            source,
        })?);
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|source| OutboxError::Read {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<TaskResult>(&line) {
                Ok(r) => left.push(r),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    line = i + 1,
                    error = %e,
                    "skipping unreadable line in the result outbox"
                ),
            }
        }
        Ok((Self { path, file }, left))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends serialized results (one JSON document each, no newline) and
    /// fsyncs, so they survive a crash once this returns.
    pub fn append(&mut self, lines: &[String]) -> Result<(), OutboxError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buf.push_str(line);
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| self.write_error(source))
    }

    /// Replaces the contents with `results`: the ones still undelivered.
    /// Empty is the common case and just truncates; otherwise the new
    /// contents are written to a temporary file and renamed over the old one,
    /// so a crash leaves either the old or the new list, never half of one.
    pub fn replace(&mut self, results: &[TaskResult]) -> Result<(), OutboxError> {
        if results.is_empty() {
            // Not fsynced: if the truncation is lost, the results are sent
            // again and refused as stale, which is harmless.
            return self.file.set_len(0).map_err(|e| self.write_error(e));
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = private_file(&tmp)?;
            for r in results {
                serde_json::to_writer(&mut f, r)?;
                f.write_all(b"\n")?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| self.write_error(e))?;
        self.file = open_append(&self.path)?;
        Ok(())
    }

    fn write_error(&self, source: std::io::Error) -> OutboxError {
        OutboxError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

/// Creates the state directory (and its parents) readable by the agent's
/// user only: results and the agent's key are no one else's business. A
/// directory that exists already (from an older agent) is narrowed too.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates (or truncates) a file only the agent's user may read or write.
pub fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn open_append(path: &Path) -> Result<File, OutboxError> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let open_error = |source| OutboxError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = options.open(path).map_err(open_error)?;
    // An outbox written by an older agent may be world-readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(open_error)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use drover_protocol::agent::Outcome;
    use serde_json::json;

    fn result(task_id: i64) -> TaskResult {
        TaskResult {
            task_id,
            lease_token: task_id * 10,
            outcome: Outcome::Succeeded {
                output: json!({"n": task_id, "text": "line\nbreak"}),
            },
            started_at_us: Some(1),
            finished_at_us: Some(2),
        }
    }

    fn lines(results: &[TaskResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| serde_json::to_string(r).expect("serializable"))
            .collect()
    }

    #[test]
    fn round_trip_across_reopen() {
        let dir = TempDir::new("outbox");
        let (mut outbox, left) = Outbox::open(&dir.0.join("nested")).expect("opens");
        assert!(left.is_empty());
        let written = vec![result(1), result(2), result(3)];
        outbox.append(&lines(&written[..2])).expect("appends");
        outbox.append(&lines(&written[2..])).expect("appends");
        drop(outbox);

        let (mut outbox, left) = Outbox::open(&dir.0.join("nested")).expect("reopens");
        assert_eq!(left, written);

        outbox.replace(&written[1..2]).expect("rewrites");
        outbox
            .append(&lines(&[result(4)]))
            .expect("appends after rewrite");
        drop(outbox);
        let (mut outbox, left) = Outbox::open(&dir.0.join("nested")).expect("reopens");
        assert_eq!(left, vec![result(2), result(4)]);

        outbox.replace(&[]).expect("truncates");
        outbox
            .append(&lines(&[result(5)]))
            .expect("appends after truncate");
        drop(outbox);
        let (_, left) = Outbox::open(&dir.0.join("nested")).expect("reopens");
        assert_eq!(left, vec![result(5)]);
    }

    #[test]
    fn torn_lines_are_skipped() {
        let dir = TempDir::new("outbox-torn");
        std::fs::create_dir_all(&dir.0).expect("mkdir");
        let good = serde_json::to_string(&result(7)).expect("serializable");
        std::fs::write(
            dir.0.join(FILE_NAME),
            format!("{good}\n\n{{\"task_id\": 8, \"lease"),
        )
        .expect("write");
        let (_, left) = Outbox::open(&dir.0).expect("opens");
        assert_eq!(left, vec![result(7)]);
    }

    #[test]
    fn unusable_state_dir_is_a_clear_error() {
        let dir = TempDir::new("outbox-file");
        std::fs::create_dir_all(&dir.0).expect("mkdir");
        let not_a_dir = dir.0.join("file");
        std::fs::write(&not_a_dir, "x").expect("write");
        let e = Outbox::open(&not_a_dir).expect_err("a file is not a directory");
        assert!(
            e.to_string().contains("cannot create state directory"),
            "{e}"
        );
    }

    /// A state directory and outbox left by an older agent, open to all,
    /// are narrowed when the agent opens them.
    #[cfg(unix)]
    #[test]
    fn an_existing_state_directory_and_outbox_become_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::create("outbox-mode");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let outbox = dir.0.join(FILE_NAME);
        std::fs::write(&outbox, "").expect("write");
        std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _ = Outbox::open(&dir.0).expect("open");
        assert_eq!(mode(&dir.0), 0o700);
        assert_eq!(mode(&outbox), 0o600);
    }
}
