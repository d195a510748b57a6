//! Builds the application from its configuration and binds it, so `main`
//! and the tests start the server the same way; serves it; and stops it in
//! order (see [`Application::run_until`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use drover_engine::store::{GroupCommit, QueueStore};
use drover_engine::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bootstrap::{
    bootstrap_admin, bootstrap_enrollment, create_private_dir, hostname, redact,
    restrict_sqlite_files, token_or_generate,
};
use crate::config::Config;
use crate::services::dispatcher::Dispatcher;
use crate::services::duties::Duties;
use crate::services::load_history::LoadHistory;
use crate::services::notifications::{deliver::Deliverer, scan::Scanner};
use crate::services::overview_history::OverviewHistory;
use crate::services::queue_gauges::QueueGauges;
use crate::services::retention::Retention;
use crate::services::schedules::Scheduler;
use crate::state::{AppState, Shared};
use crate::tokens::new_token;

/// How long in-flight requests get to finish once the server stops taking
/// new ones; then they are cut off.
const HTTP_GRACE: Duration = Duration::from_secs(3);

/// How long stopping the duties (and resigning leadership) may take.
const DUTIES_GRACE: Duration = Duration::from_secs(2);

/// Runs the server (or the one-off command the configuration names) until
/// Ctrl-C or SIGTERM.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    config.read_secret_files().map_err(anyhow::Error::msg)?;
    if let Some(command) = config.command.clone() {
        return run_command(&config, command).await;
    }
    Application::build(config).await?.run_until_stopped().await
}

/// Runs a one-off administration command against the database.
pub async fn run_command(config: &Config, command: crate::config::Command) -> anyhow::Result<()> {
    match command {
        // A backup only reads: it must not create or migrate what it copies.
        crate::config::Command::Backup { to } => {
            let report = drover_engine::store::backup(&config.database_url(), &to).await?;
            println!(
                "backed up to {} ({} bytes)",
                report.path.display(),
                report.bytes
            );
            Ok(())
        }
        crate::config::Command::User(command) => {
            create_private_dir(&config.data_dir)?;
            let store = Store::connect(&config.database_url(), 2).await?;
            restrict_sqlite_files(&config.database_url());
            crate::admin_commands::run(&store, command).await
        }
    }
}

/// A built application: database open and migrated, listener bound.
pub struct Application {
    listener: TcpListener,
    /// Set when the server terminates TLS itself.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    state: AppState,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        config.read_secret_files().map_err(anyhow::Error::msg)?;
        config.validate().map_err(anyhow::Error::msg)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        create_private_dir(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let url = config.database_url();
        let group_commit = GroupCommit {
            max_requests: config.group_commit_max as usize,
            window: config.group_commit_window,
        };
        let store = Store::connect_with(&url, config.db_max_connections, group_commit)
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

    /// The address the server listens on (the port chosen when the
    /// configuration asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then stops in this order:
    /// 1. the duties stop and leadership is resigned, so no sweep declares
    ///    agents dead while this instance no longer answers them;
    /// 2. event streams end and parked long-polls are answered empty, so
    ///    no open connection holds the server up;
    /// 3. the listener closes and in-flight requests get [`HTTP_GRACE`] to
    ///    finish (their results recorded, their runs advanced);
    /// 4. the dispatcher, advancers and relay stop.
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
        let stop_duties = Stop::new();
        let stop_services = Stop::new();
        let dispatcher = {
            let (d, store) = (state.dispatcher.clone(), state.store.clone());
            let stop = stop_services.signal();
            tokio::spawn(async move { d.run(store, stop).await })
        };
        let advancers: Vec<_> = (0..state.advancer.workers())
            .map(|_| tokio::spawn(state.advancer.clone().run_worker(stop_services.signal())))
            .collect();
        let relay = tokio::spawn(crate::services::relay::run(
            state.store.clone(),
            state.dispatcher.clone(),
            state.events.clone(),
            stop_services.signal(),
        ));
        let duties = tokio::spawn(
            Duties {
                store: state.store.clone(),
                effects: state.effects.clone(),
                instance_id: state.instance_id.clone(),
                leader: state.leader.clone(),
                interval: state.config.duty_interval,
                heartbeat_timeout: state.config.heartbeat_timeout,
                leader_ttl: state.config.leader_ttl,
            }
            .run(stop_duties.signal()),
        );
        let rate_limits = tokio::spawn(
            crate::services::rate_limiter::RateLimiter {
                store: state.store.clone(),
                effects: state.effects.clone(),
                leader: state.leader.clone(),
                idle: state.config.duty_interval,
            }
            .run(stop_duties.signal()),
        );
        let admission = tokio::spawn(
            crate::services::admitter::Admitter {
                store: state.store.clone(),
                dispatcher: state.dispatcher.clone(),
                leader: state.leader.clone(),
                idle: state.config.duty_interval,
            }
            .run(stop_duties.signal()),
        );
        let load_history = tokio::spawn(
            LoadHistory {
                store: state.store.clone(),
                leader: state.leader.clone(),
                interval: state.config.agent_load_interval,
                retention: state.config.agent_load_retention,
            }
            .run(stop_duties.signal()),
        );
        let overview_history = tokio::spawn(
            OverviewHistory {
                store: state.store.clone(),
                leader: state.leader.clone(),
                interval: state.config.queue_depth_interval,
            }
            .run(stop_duties.signal()),
        );
        let queue_gauges = tokio::spawn(
            QueueGauges {
                store: state.store.clone(),
                leader: state.leader.clone(),
                interval: crate::services::queue_gauges::INTERVAL,
            }
            .run(stop_duties.signal()),
        );
        let retention = tokio::spawn(
            Retention {
                store: state.store.clone(),
                leader: state.leader.clone(),
                policy: (&state.config).into(),
                interval: state.config.retention_interval,
                queue_requests: state.queue_requests.clone(),
            }
            .run(stop_duties.signal()),
        );
        let schedules = tokio::spawn(
            Scheduler {
                store: state.store.clone(),
                effects: state.effects.clone(),
                scheduling: state.scheduling,
                leader: state.leader.clone(),
                wake: state.schedule_wake.clone(),
                gated: state.gated_cache.clone(),
                grace: state.config.schedule_grace,
                interval: state.config.duty_interval,
            }
            .run(stop_duties.signal()),
        );
        let notification_scan = tokio::spawn(
            Scanner {
                store: state.store.clone(),
                events: state.events.clone(),
                leader: state.leader.clone(),
                deliver_wake: state.notify_wake.clone(),
                interval: state.config.duty_interval,
                public_url: state.config.public_url.clone(),
            }
            .run(stop_duties.signal()),
        );
        let notification_delivery = tokio::spawn(
            Deliverer {
                store: state.store.clone(),
                events: state.events.clone(),
                leader: state.leader.clone(),
                wake: state.notify_wake.clone(),
                interval: state.config.duty_interval,
                http: Deliverer::client(
                    state.config.notify_timeout,
                    state.config.notify_allow_private,
                )
                .context("cannot build the notifications' HTTP client")?,
                max_attempts: i64::from(state.config.notify_max_attempts),
                backoff: state.config.notify_retry_backoff,
                timeout: state.config.notify_timeout,
                retention: state.config.notify_retention,
                allow_private: state.config.notify_allow_private,
            }
            .run(stop_duties.signal()),
        );

        let site = crate::http::delivery::SiteFiles::choose(state.config.site_root.as_deref());
        tracing::info!(site = %site.root(), "dashboard files");
        let addr = listener.local_addr()?;
        let api = crate::http::router(state.clone(), metrics);
        // Compression wraps the whole app, but not the API router the pages
        // call in-process while rendering (that one stays uncompressed).
        let app = api
            .clone()
            .merge(crate::http::pages::router(
                &site,
                crate::http::pages::leptos_options(&site.root(), addr),
                state.clone(),
                api,
            ))
            .layer(crate::http::delivery::compression());
        tracing::info!(%addr, tls = tls.is_some(), instance = %state.instance_id, "drover-server listening");
        let stop_http = Stop::new();
        let mut server = tokio::spawn(serve(listener, tls, app, stop_http.signal()));

        let served = tokio::select! {
            _ = shutdown => None,
            r = &mut server => Some(r),
        };
        tracing::info!("shutting down: stopping duties, resigning leadership");
        stop_duties.fire();
        if tokio::time::timeout(DUTIES_GRACE, duties).await.is_err() {
            tracing::warn!("the duties did not stop in time");
        }
        if tokio::time::timeout(DUTIES_GRACE, schedules).await.is_err() {
            tracing::warn!("the schedule loop did not stop in time");
        }
        for (name, task) in [
            ("notification scan", notification_scan),
            ("notification delivery", notification_delivery),
            ("rate-limit", rate_limits),
            ("key admission", admission),
            ("load history", load_history),
            ("overview history", overview_history),
            ("retention", retention),
            ("queue gauges", queue_gauges),
        ] {
            if tokio::time::timeout(DUTIES_GRACE, task).await.is_err() {
                tracing::warn!("the {name} loop did not stop in time");
            }
        }
        tracing::info!("shutting down: closing event streams, answering long-polls");
        state.events.close();
        state.dispatcher.close();
        stop_http.fire();
        let result = match served {
            Some(r) => r.map_err(anyhow::Error::from).and_then(|r| r),
            None => match tokio::time::timeout(HTTP_GRACE, &mut server).await {
                Ok(r) => r.map_err(anyhow::Error::from).and_then(|r| r),
                Err(_) => {
                    tracing::warn!("requests still running after the grace period: cut off");
                    server.abort();
                    Ok(())
                }
            },
        };
        stop_services.fire();
        let _ = dispatcher.await;
        for a in advancers {
            let _ = a.await;
        }
        let _ = relay.await;
        tracing::info!("stopped");
        result
    }
}

/// Serves `app` on `listener` (through TLS when configured) until `stop`.
async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    app: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The peer address feeds the sign-in limiter (`http::session::ClientAddr`).
    match tls {
        None => {
            axum::serve(
                crate::tls::NoDelayListener(listener),
                app.into_make_service_with_connect_info::<crate::tls::PeerAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await?
        }
        Some(config) => {
            let app = app.layer(axum::middleware::map_request(crate::tls::mark_https));
            axum::serve(
                crate::tls::TlsListener::new(listener, config)?,
                app.into_make_service_with_connect_info::<crate::tls::PeerAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await?
        }
    }
    Ok(())
}

/// A one-shot stop signal that many tasks can wait on.
struct Stop(watch::Sender<bool>);

impl Stop {
    fn new() -> Self {
        Self(watch::channel(false).0)
    }

    /// Resolves once [`fire`](Self::fire) was called (or the `Stop` dropped).
    fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
