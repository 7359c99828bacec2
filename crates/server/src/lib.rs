//! callbridge's service: Mango webhooks into a durable event log, a processor that folds the log
//! through the pure core and stores plans with their outbox, the admin API, the live card stream,
//! health and metrics.

pub mod accept;
pub mod admin;
pub mod card_tokens;
pub mod config;
pub mod crm;
pub mod crm_clients;
pub mod directory;
pub mod error;
pub mod oauth;
pub mod problem;
pub mod processor;
pub mod reconcile;
pub mod recordings;
pub mod request_span;
pub mod secret_key;
pub mod state;
mod sync;
pub mod tenant_id;
pub mod token_refresh;
pub mod tokens;
pub mod ui;
pub mod vpbx_clients;
pub mod warnings;
pub mod webhooks;
pub mod worker;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use callbridge_store::{Appender, Store, TenantRow};
use config::{Config, LoadedTenant};
use error::StartError;
use secrecy::ExposeSecret;
use state::{now_ms, AppState};
use std::sync::Arc;
use tokio::sync::{broadcast, watch, Notify, RwLock};

/// Builds the router over a ready state.
pub fn router(state: Arc<AppState>, body: webhooks::BodyLimits) -> Router {
    // Last, so that it wraps every route: each request's log lines carry its span.
    routes(state, body).layer(request_span::layer())
}

/// The routes without the request span: [`router`] is this plus the span; apart only so that a
/// benchmark can measure what the span costs (`benches/request_span.rs`).
#[doc(hidden)]
pub fn routes(state: Arc<AppState>, body: webhooks::BodyLimits) -> Router {
    let mango = Router::new()
        .route("/mango/{tenant}", post(webhooks::ping))
        .route("/mango/{tenant}/", post(webhooks::ping))
        .route("/mango/{tenant}/{*path}", post(webhooks::webhook))
        // The body arrives already held to the limit (and an oversized one read to its end).
        .layer(axum::middleware::from_fn_with_state(
            body,
            webhooks::within_limit,
        ))
        .layer(DefaultBodyLimit::disable());
    admin::router(state.clone())
        .merge(ui::router(state.clone()))
        .merge(mango)
        .route("/amocrm/oauth/callback", get(oauth::callback))
        .route("/recordings/{tenant}/{recording_id}", get(recordings::play))
        .route(
            "/recordings/{tenant}/{recording_id}/{expires_at}/{file}",
            get(recordings::play_mp3),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Ready while the store both answers and can write: after a failed write (a full disk) it
/// answers 503 with the reason until a probe write commits again.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_string());
    }
    if let Err(reason) = state.store.check_writable().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event log: {reason}"),
        );
    }
    match state.store.max_event_id().await {
        // Ready; the tenants' faults follow, one `warning:` line each (see warnings.rs), and
        // broken CRM connections are named: they do not make the service unready.
        Ok(_) => {
            let mut body = "ready".to_string();
            for warning in warnings::tenant_warnings(&state).await {
                body.push_str("\nwarning: ");
                body.push_str(&warning);
            }
            for line in token_refresh::broken_connections(&state).await {
                body.push('\n');
                body.push_str(&line);
            }
            (StatusCode::OK, body)
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        ),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Upper bounds (seconds) of the event-log append histogram: a healthy disk commits in well under
/// a millisecond, and the buckets above 10 ms count its stalls.
const APPEND_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The process's Prometheus recorder, installed once. Histogram samples wait in the recorder
/// until drained, so a thread drains them every 5 seconds: without it a service nobody scrapes
/// would keep every sample.
fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Refused only for an empty list of buckets, which the constant is not.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("callbridge_event_log_append_seconds".into()),
                    APPEND_SECONDS_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

/// A running service, for the binary and for tests.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    processor: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
    /// `shutdown_timeout_seconds`: how long after the shutdown signal [`Running::wait`] waits.
    shutdown_timeout: std::time::Duration,
    /// The administrator's password when this start set the first one (none was set): shown
    /// once, by whoever started the service, and never stored in clear.
    pub first_admin_password: Option<secrecy::SecretString>,
    /// SQLite: the data folder's lock, released when the service is dropped.
    _data_dir_lock: Option<callbridge_store::DataDirLock>,
}

impl Running {
    /// Stops accepting requests, lets in-flight ones finish, and stops the processor.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the service stops after a shutdown signal: the listener closes, requests in
    /// flight are answered, the processor stores what it holds, the CRM worker abandons what
    /// waits on the CRM (left pending, exactly once still holding: see `worker`). Whatever is
    /// still running `shutdown_timeout_seconds` after the signal is abandoned too, so an
    /// orchestrator never sees a hung process.
    pub async fn wait(mut self) {
        let mut signalled = self.shutdown.subscribe();
        let bound = self.shutdown_timeout;
        let deadline = async move {
            let _ = signalled.wait_for(|stop| *stop).await;
            tokio::time::sleep(bound).await;
        };
        let state = self.state.clone();
        let finished = async {
            let _ = (&mut self.server).await;
            // No webhook is taken any more: the last second's arrival counts are written now
            // rather than lost with the process.
            if let Err(e) = state.store.flush_arrivals().await {
                tracing::warn!(error = %e, "shutdown: writing the tenants' arrival counts failed");
            }
            let _ = (&mut self.processor).await;
            let _ = (&mut self.worker).await;
        };
        tokio::select! {
            _ = finished => {}
            _ = deadline => {
                tracing::warn!(
                    bound_seconds = bound.as_secs(),
                    "shutdown: still busy after shutdown_timeout_seconds; exiting anyway (unfinished CRM work stays pending)"
                );
                self.server.abort();
                self.processor.abort();
                self.worker.abort();
            }
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// The SHA-256 (hex) of a config file's entry for a tenant in a canonical form: its id, Mango
/// key and salt, the settings text and the CRM section (object keys sorted, so a reordered
/// section is the same entry). At start an entry whose hash is the one last applied leaves the
/// stored tenant as it is, so changes made in the UI or the admin API survive restarts; any
/// change to the entry applies it again.
fn file_entry_hash(t: &LoadedTenant) -> String {
    use sha2::{Digest, Sha256};
    fn canonical(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                // An array of pairs keeps the sorted order whatever the map type does.
                serde_json::Value::Array(
                    keys.into_iter()
                        .map(|k| serde_json::json!([k, canonical(&map[k])]))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(canonical).collect())
            }
            other => other.clone(),
        }
    }
    let entry = serde_json::json!([
        "callbridge config entry v1",
        t.id,
        t.mango_api_key.expose_secret(),
        t.mango_api_salt.expose_secret(),
        t.settings_toml,
        canonical(&t.amocrm),
    ]);
    hex::encode(Sha256::digest(entry.to_string().as_bytes()))
}

/// Opens the store, loads the tenants declared in the config, and starts the HTTP server and
/// the processor.
pub async fn start(config: Config, tenants: Vec<LoadedTenant>) -> Result<Running, StartError> {
    // One process per SQLite data folder; PostgreSQL takes several.
    let data_dir_lock = match config.database_url {
        None => Some(callbridge_store::DataDirLock::acquire(&config.data_dir)?),
        Some(_) => None,
    };
    let database_url = config.database_url.as_ref().map(|u| u.expose_secret());
    let store = Store::open(database_url, &config.data_dir).await?;
    let secret_key = secret_key::unlock(&store, &config).await?;
    let first_admin_password = ui::session::ensure_admin_password(&store)
        .await?
        .map(secrecy::SecretString::from);
    // A tenant the file managed and no longer names is removed: otherwise it would keep
    // accepting webhooks after the operator took it out. Tenants created through the admin API
    // were never the file's and stay.
    let in_file: Vec<String> = tenants.iter().map(|t| t.id.to_string()).collect();
    let managed = store
        .config_tenant_ids()
        .await
        .map_err(StartError::ConfigTenants)?;
    for gone in managed.iter().filter(|id| !in_file.contains(id)) {
        tracing::warn!(tenant = %gone, "tenant removed from the config file: deleting it");
        store
            .delete_tenant(gone)
            .await
            .map_err(|source| StartError::DeleteTenant {
                tenant: gone.clone(),
                source,
            })?;
    }
    // The file seeds its tenants; the database keeps what the UI or the admin API changed
    // until the file's entry for the tenant changes (see `file_entry_hash`).
    let file_shown = config
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "the environment".to_string());
    for t in tenants {
        let hash = file_entry_hash(&t);
        let tenant_id = t.id.to_string();
        let in_tenant = |source| StartError::Tenant {
            tenant: tenant_id.clone(),
            source,
        };
        let existing = store.tenant(&t.id).await.map_err(in_tenant)?;
        let applied = store.file_seed_hash(&t.id).await.map_err(in_tenant)?;
        if existing.is_some() && applied.as_deref() == Some(hash.as_str()) {
            // Debug: at every start, for every tenant of the file.
            tracing::debug!(
                tenant = %t.id,
                "config file entry unchanged since it was applied: the stored tenant is kept"
            );
            continue;
        }
        let row = TenantRow {
            id: t.id.into_string(),
            mango_api_key: t.mango_api_key.expose_secret().to_string(),
            mango_api_salt: t.mango_api_salt.expose_secret().to_string(),
            settings_toml: t.settings_toml,
            crm: t.amocrm,
            updated_at_ms: now_ms(),
        };
        // A config file that moved the tenant to another CRM address drops its tokens.
        let old_crm = existing.as_ref().map(|t| &t.crm);
        crm::forget_tokens_if_moved(&store, &row.id, old_crm, &row.crm)
            .await
            .map_err(in_tenant)?;
        store.upsert_tenant(&row).await.map_err(in_tenant)?;
        let summary = match (&existing, &applied) {
            (None, _) => format!("created from {file_shown}"),
            (Some(_), None) => format!("applied from {file_shown}"),
            (Some(_), Some(_)) => format!("its entry in {file_shown} changed"),
        };
        store
            .save_tenant_settings(
                &row.id,
                &row.settings_toml,
                "config file",
                &summary,
                now_ms(),
            )
            .await
            .map_err(in_tenant)?;
        // Last: a start interrupted before this applies the file again, which is harmless.
        store
            .set_file_seed_hash(&row.id, &hash)
            .await
            .map_err(in_tenant)?;
        tracing::info!(tenant = %row.id, "{summary}: the config file's entry applied");
    }
    store
        .mark_config_tenants(&in_file)
        .await
        .map_err(StartError::ConfigTenants)?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::LocalAddress)?;
    let (cards, _) = broadcast::channel(4096);
    // Up to 256 committed batches wait for the processor; beyond that it reads the log.
    let (live_tx, live_rx) = callbridge_store::sink(256);
    let state = Arc::new(AppState {
        appender: Appender::spawn_with_sink(store.clone(), 512, Some(live_tx)),
        store,
        tenants: RwLock::new(Default::default()),
        admin_token: config.admin_token.clone(),
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        processing: config.processing,
        new_events: Notify::new(),
        outbox_ready: Default::default(),
        cards,
        card_routes: Default::default(),
        metrics: metrics_handle(),
        directories: RwLock::new(Default::default()),
        mango_api_url: config.mango_api_url.clone(),
        recording_link_days: config.recording_link_days,
        preview_entries: config.preview_entries,
        card_token_key: secret_key.derive(secret_key::CARD_TOKEN_KEY_LABEL),
        purged_tenants: Default::default(),
        tenants_changed: Notify::new(),
        allow_insecure_crm_hosts: config.allow_insecure_crm_hosts,
        crm_users: Default::default(),
        connections: Default::default(),
        crm_clients: Default::default(),
        vpbx_clients: Default::default(),
        card_pages: Default::default(),
        reconciler: reconcile::Reconciler::new(config.reconcile),
        stopping: Default::default(),
        file_tenants: state::FileTenants {
            file: config.file.as_ref().map(|f| f.display().to_string()),
            ids: in_file.iter().cloned().collect(),
        },
    });
    state.reload_tenants().await?;
    let (shutdown, rx) = watch::channel(false);
    {
        // `/readyz` goes red the moment shutdown begins, before anything else stops.
        let state = state.clone();
        let mut signalled = rx.clone();
        tokio::spawn(async move {
            if signalled.wait_for(|stop| *stop).await.is_ok() {
                state
                    .stopping
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let processor =
        tokio::spawn(processor::Processor::with_live(state.clone(), Some(live_rx)).run(rx.clone()));
    let worker = tokio::spawn(worker::run(state.clone(), rx.clone()));
    tokio::spawn(token_refresh::run(state.clone(), rx.clone()));
    let tenant_hours: std::collections::HashMap<String, u8> = config
        .tenants
        .iter()
        .filter_map(|t| Some((t.id.clone(), t.reconcile_hour_utc?)))
        .collect();
    if config.reconcile.daily_hour_utc.is_some() || !tenant_hours.is_empty() {
        tokio::spawn(reconcile::run_daily(
            state.clone(),
            config.reconcile.daily_hour_utc,
            tenant_hours,
            rx.clone(),
        ));
    }
    if config.directory_refresh_seconds > 0 {
        let every = std::time::Duration::from_secs(config.directory_refresh_seconds);
        tokio::spawn(directory::run(state.clone(), every, rx.clone()));
    }
    let app = router(
        state.clone(),
        webhooks::BodyLimits {
            max_bytes: config.max_body_bytes,
            read_timeout: std::time::Duration::from_millis(config.body_timeout_ms),
        },
    );
    let (max_connections, lowered_by) = accept::connection_cap(config.max_connections);
    if let Some(limit) = lowered_by {
        tracing::warn!(
            configured = config.max_connections,
            max_connections,
            descriptor_limit = limit,
            reserved = accept::RESERVED_DESCRIPTORS,
            "max_connections lowered to fit the descriptor limit (RLIMIT_NOFILE)"
        );
    }
    let limits = accept::ConnectionLimits {
        max_connections,
        header_timeout: std::time::Duration::from_millis(config.header_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(config.idle_timeout_ms),
    };
    let mut server_rx = rx;
    let server = tokio::spawn(accept::serve(listener, app, limits, async move {
        while !*server_rx.borrow() {
            if server_rx.changed().await.is_err() {
                break;
            }
        }
    }));
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        processor,
        worker,
        shutdown_timeout: std::time::Duration::from_secs(config.shutdown_timeout_seconds),
        first_admin_password,
        _data_dir_lock: data_dir_lock,
    })
}
