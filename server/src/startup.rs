//! Builds the application from its configuration and binds it, so `main`
//! and the tests start the server the same way.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use drover_engine::store::{EnrollmentStore, NewEnrollment, NewToken, QueueStore, UserStore};
use drover_engine::time::now_us;
use drover_engine::Store;
use drover_protocol::api::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{hash_token, new_token};
use crate::config::Config;
use crate::dispatcher::Dispatcher;
use crate::state::{AppState, Shared};

/// Runs a one-off administration command against the database.
pub async fn run_command(config: &Config, command: crate::config::Command) -> anyhow::Result<()> {
    create_private_dir(&config.data_dir)?;
    let store = Store::connect(&config.database_url(), 2).await?;
    restrict_sqlite_files(&config.database_url());
    crate::cli::run(&store, command).await
}

pub struct Application {
    listener: TcpListener,
    /// Set when the server terminates TLS itself.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    state: AppState,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        create_private_dir(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let url = config.database_url();
        let store = Store::connect(&url, config.db_max_connections)
            .await
            .with_context(|| format!("cannot open database {}", redact(&url)))?;
        restrict_sqlite_files(&url);
        crate::passwords::warm_up();
        tracing::info!(
            database = store.backend(),
            "database ready, migrations applied"
        );
        let api_token = token_or_generate(config.api_token.clone(), &config.data_dir, "api-token")?;
        let enrollment_token = token_or_generate(
            config.enrollment_token.clone(),
            &config.data_dir,
            "enrollment-token",
        )?;
        let metrics = crate::telemetry::init_metrics()?;
        // One interval longer than the timeout: heartbeats renew a lease
        // only once less than the timeout is left (`QueueStore::heartbeat`).
        let dispatcher = Arc::new(Dispatcher::new(
            config.heartbeat_timeout + config.heartbeat_interval,
        ));
        let instance_id = format!("{}-{}", hostname(), &new_token()[..8]);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        bootstrap_admin(&store, &api_token, config.admin_password.as_deref()).await?;
        bootstrap_enrollment(&store, &enrollment_token).await?;
        let shared = Shared::new(config, store, dispatcher, instance_id);
        let known = shared.store.known_task_types().await?;
        shared.learn_task_types(known);
        Ok(Self {
            listener,
            tls,
            state: AppState::new(shared),
            metrics,
        })
    }

    /// Serves until `shutdown` resolves, then stops taking requests, lets
    /// in-flight ones finish, stops the background loops and resigns
    /// leadership.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            tls,
            state,
            metrics,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let dispatcher = {
            let (d, store, stop) = (state.dispatcher.clone(), state.store.clone(), stopped());
            tokio::spawn(async move { d.run(store, stop).await })
        };
        let advancers: Vec<_> = (0..state.advancer.workers())
            .map(|_| tokio::spawn(crate::advance::run_worker(state.clone(), stopped())))
            .collect();
        let duties = tokio::spawn(crate::duties::run(state.clone(), stopped()));
        let relay = tokio::spawn(crate::relay::run(
            state.store.clone(),
            state.dispatcher.clone(),
            state.events.clone(),
            stopped(),
        ));

        let site_root = state.config.site_root.display().to_string();
        let addr = listener.local_addr()?;
        let api = crate::http::router(state.clone(), metrics);
        let app = api.clone().merge(crate::web::router(
            crate::web::leptos_options(&site_root, addr),
            state.clone(),
            api,
        ));
        tracing::info!(%addr, tls = tls.is_some(), instance = %state.instance_id, "drover-server listening");
        let closing = state.dispatcher.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: answering long-polls, finishing in-flight requests");
            closing.close();
        };
        // The peer address feeds the sign-in limiter (`session::ClientAddr`).
        match tls {
            None => {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<crate::tls::PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await?
            }
            Some(config) => {
                let app = app.layer(axum::middleware::map_request(crate::tls::mark_https));
                axum::serve(
                    crate::tls::TlsListener::new(listener, config)?,
                    app.into_make_service_with_connect_info::<crate::tls::PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await?
            }
        }
        let _ = stop_tx.send(true);
        let _ = dispatcher.await;
        let _ = duties.await;
        for a in advancers {
            let _ = a.await;
        }
        let _ = relay.await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Makes sure the `admin` user exists (creating it on first start, with the
/// configured password or a generated one printed once) and that the
/// configured API token is one of its tokens.
async fn bootstrap_admin(
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
            prefix: &crate::users::token_prefix(api_token),
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
async fn bootstrap_enrollment(store: &Store, token: &str) -> anyhow::Result<()> {
    let prefix = crate::auth::token_prefix(token);
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
fn token_or_generate(
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
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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
fn restrict_sqlite_files(url: &str) {
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

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "drover".into())
}

/// Hides the password of a database URL in messages.
fn redact(url: &str) -> String {
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
