//! The agent's own key: a secret made on first start and kept in the state
//! directory (readable by the agent's user only). Registering with it again
//! resumes the same agent on the server, so a restarted agent may still
//! deliver the results in its outbox: only the agent a task was given to
//! may report on it, and the key is how a new process proves it is that
//! agent. Deleting the file makes the next start a new agent.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The key's file name inside the state directory.
pub const FILE_NAME: &str = "agent-key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the agent key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the agent key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the agent key {path} is not a key this agent wrote; delete it to start as a new agent"
    )]
    Malformed { path: PathBuf },
}

/// Reads the key from `dir`, making it (and the directory) on first use.
pub fn load_or_create(dir: &Path) -> Result<String, IdentityError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(key.to_string())
            } else {
                Err(IdentityError::Malformed { path })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(dir, &path),
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

fn create(dir: &Path, path: &Path) -> Result<String, IdentityError> {
    let write_error = |source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::outbox::create_private_dir(dir).map_err(write_error)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written beside and renamed into place: a crash leaves no half key.
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = crate::outbox::private_file(&tmp).map_err(write_error)?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    std::fs::rename(&tmp, path).map_err(write_error)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let dir = TempDir::new("identity");
        let first = load_or_create(&dir.0).expect("created");
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(&dir.0).expect("read back"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode(&dir.0.join(FILE_NAME)), 0o600);
            assert_eq!(mode(&dir.0), 0o700);
        }
        let other = TempDir::new("identity");
        assert_ne!(load_or_create(&other.0).expect("created"), first);
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_identity() {
        let dir = TempDir::create("identity");
        std::fs::write(dir.0.join(FILE_NAME), "short").expect("write");
        let e = load_or_create(&dir.0).expect_err("malformed").to_string();
        assert!(e.contains("delete it to start as a new agent"), "{e}");
    }
}
