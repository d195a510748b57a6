//! What a server does once at start before it serves: the data directory
//! and its private files, the bootstrap admin user and tokens.

use std::path::Path;

use anyhow::Context;
use drover_engine::store::{EnrollmentStore, NewEnrollment, NewToken, UserStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::api::Role;

use crate::tokens::{hash_token, new_token};

/// Makes sure the `admin` user exists (creating it on first start, with the
/// configured password or a generated one printed once) and that the
/// configured API token is one of its tokens.
pub(crate) async fn bootstrap_admin(
    store: &Store,
    api_token: &str,
    password: Option<&str>,
) -> anyhow::Result<()> {
    let admin = match store.user_by_name("admin").await? {
        Some(record) => record.user,
        None => {
            let generated = password.is_none();
            let password = password
                .map(str::to_string)
                .unwrap_or_else(|| new_token()[..20].to_string());
            let hash = crate::passwords::hash_password(&password).map_err(anyhow::Error::msg)?;
            match store
                .create_user("admin", Role::Admin, Some(&hash), now_us())
                .await
            {
                Ok(user) => {
                    if generated {
                        eprintln!("drover-server: created user \"admin\" with password {password} (shown once; set DROVER_ADMIN_PASSWORD to choose it)");
                    }
                    user
                }
                // Another instance created it first.
                Err(drover_engine::StoreError::Conflict(_)) => {
                    store
                        .user_by_name("admin")
                        .await?
                        .context("admin user vanished")?
                        .user
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    bootstrap_token(store, admin.id, api_token).await
}

/// `DROVER_API_TOKEN` (or the generated `api-token` file) is a bootstrap
/// credential: an admin API token offered at every start, so a fresh
/// installation can be driven before anyone signs in. It is stored like any
/// token; once revoked it stays revoked, whatever the environment says.
async fn bootstrap_token(store: &Store, admin_id: i64, api_token: &str) -> anyhow::Result<()> {
    let hash = hash_token(api_token);
    if store.token_revoked(&hash).await? {
        tracing::warn!("DROVER_API_TOKEN was revoked and stays revoked; unset it or set a new one");
        return Ok(());
    }
    store
        .add_api_token(NewToken {
            user_id: admin_id,
            token_hash: &hash,
            name: "DROVER_API_TOKEN",
            prefix: &crate::accounts::token_prefix(api_token),
            expires_at_us: None,
            now_us: now_us(),
        })
        .await?;
    Ok(())
}

/// Stores the configured (or generated) enrollment token as the one named
/// `bootstrap-…`, unrestricted, unless it is known already: revoking it
/// holds across restarts, and a new value of `DROVER_ENROLLMENT_TOKEN` adds
/// a new bootstrap token beside the old one (revoke that one when rotating).
pub(crate) async fn bootstrap_enrollment(store: &Store, token: &str) -> anyhow::Result<()> {
    let prefix = crate::tokens::token_prefix(token);
    store
        .ensure_enrollment_token(
            &NewEnrollment {
                name: &format!("bootstrap-{prefix}"),
                token_hash: &hash_token(token),
                prefix: &prefix,
                task_types: None,
                labels: None,
                created_by: "DROVER_ENROLLMENT_TOKEN",
                expires_at_us: None,
            },
            now_us(),
        )
        .await?;
    // Agents that registered before tokens were recorded came with this
    // one (it was the only one): revoking it must reach them.
    let adopted = store.adopt_unenrolled_agents(&hash_token(token)).await?;
    if adopted > 0 {
        tracing::info!(
            agents = adopted,
            "agents from before enrollment tokens now count as enrolled with the bootstrap token"
        );
    }
    Ok(())
}

/// Uses the configured token, or the one saved in the data directory, or
/// makes and saves a new one (readable by the owner only) and says where.
pub(crate) fn token_or_generate(
    configured: Option<String>,
    data_dir: &Path,
    name: &str,
) -> anyhow::Result<String> {
    if let Some(token) = configured.filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    let path = data_dir.join(name);
    if let Ok(saved) = std::fs::read_to_string(&path) {
        if !saved.trim().is_empty() {
            return Ok(saved.trim().to_string());
        }
    }
    let token = new_token();
    write_private(&path, &token).with_context(|| format!("cannot save {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the {name}");
    Ok(token)
}

/// The data directory holds the database and tokens: owner only (0700).
/// An existing directory is tightened too.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A SQLite database and its journal files: owner only (0600). SQLite
/// creates them with the umask's mode, typically world-readable.
pub(crate) fn restrict_sqlite_files(url: &str) {
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return;
    };
    let path = path.split('?').next().unwrap_or(path);
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm", "-journal"] {
        use std::os::unix::fs::PermissionsExt;
        let file = format!("{path}{suffix}");
        if Path::new(&file).is_file() {
            if let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(file, error = %e, "cannot make the database file private");
            }
        }
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")
}

pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "drover".into())
}

/// Hides the password of a database URL in messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
