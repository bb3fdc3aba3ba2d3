//! Wiring: builds every stage from the configuration and runs it until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::metrics::Registry as Metrics;
use common::{Clock, Shutdown, SystemClock};
use config::{Config, MqttMode};
use inference::ModelLibrary;
use inference::library::{BUILTIN, LoadOptions};
use inference::rules::{Engine, RuleSet};
use ingest::broker::EmbeddedBroker;
use ingest::external::{ExternalBroker, ExternalConfig};
use ingest::gateway::{Gateway, GatewayConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::api::{self, AppState};
use crate::cameras::{CameraManager, VisionSettings};
use crate::error::Error;
use crate::outputs::{EventPublisher, Outputs};
use crate::pipeline::{self, MonitorConfig};
use crate::registry::{Device, Registry};
use crate::store::{DeviceRow, Store};

/// Options that are not configuration: test seams.
#[derive(Clone)]
pub struct StartOptions {
    pub clock: Arc<dyn Clock>,
    pub shutdown: Shutdown,
    /// How often the offline monitor looks.
    pub monitor_tick: Duration,
    /// The configuration file the hub was started from; `POST /api/v1/config/reload` re-reads
    /// it.
    pub config_path: Option<PathBuf>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            shutdown: Shutdown::new(),
            monitor_tick: Duration::from_secs(1),
            config_path: None,
        }
    }
}

/// A running hub.
pub struct Hub {
    pub http_addr: SocketAddr,
    /// The HTTP app, for in-process requests (tests use `oneshot`).
    router: axum::Router,
    /// Where devices connect (embedded mode).
    pub mqtt_addr: Option<SocketAddr>,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
    pub cameras: CameraManager,
    events: tokio::sync::broadcast::Sender<bytes::Bytes>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

fn load_options(cfg: &Config) -> LoadOptions {
    LoadOptions { sessions: cfg.vision.sessions, threads: cfg.vision.threads }
}

/// The model search path: the configured directories (the project's own models are built in).
fn search_path(cfg: &Config) -> Vec<PathBuf> {
    cfg.models.search_path.clone()
}

impl Hub {
    /// Starts every stage. Returns once the HTTP and MQTT listeners are bound.
    pub async fn start(cfg: Config, opts: StartOptions) -> Result<Hub, Error> {
        let clock = opts.clock.clone();
        let shutdown = opts.shutdown.clone();
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| Error::Io {
            context: format!("creating data_dir {}", cfg.data_dir.display()),
            source,
        })?;
        let metrics = Metrics::new();
        let store =
            Store::connect(&cfg.database.url, &cfg.data_dir, cfg.database.max_connections).await?;
        for s in &cfg.sites {
            store.upsert_site(s).await?;
        }
        let now = clock.now_ms();
        for d in &cfg.devices {
            let row = DeviceRow {
                id: d.id.to_string(),
                site_id: d.site.to_string(),
                kind: d.kind.clone(),
                name: d.name.clone(),
                secret_hash: d.secret_hash.clone(),
                source: "config".into(),
                created_at: now,
                last_seen: None,
                online: false,
            };
            store.upsert_device(&row, true).await?;
        }
        let registry = Arc::new(Registry::new(&cfg.sites, cfg.device_kinds.clone()));
        for row in store.devices().await? {
            if !registry.sites.contains_key(&row.site_id) {
                warn!(device = %row.id, site = %row.site_id, "device of a site no longer configured; it can still connect");
            }
            let id = row.id.clone();
            match Device::from_row(row) {
                Ok(d) => {
                    // Devices online before a restart get one inactivity timeout to speak up.
                    if d.is_online() {
                        d.last_rx.store(now, std::sync::atomic::Ordering::Relaxed);
                    }
                    registry.insert(d);
                }
                Err(e) => {
                    warn!(device = %id, error = %e, "stored device has an invalid site id; skipped")
                }
            }
        }

        let library = tokio::task::spawn_blocking({
            let path = search_path(&cfg);
            let opts = load_options(&cfg);
            move || ModelLibrary::load(BUILTIN, &path, &opts)
        })
        .await
        .map_err(|e| Error::InvalidArgument(format!("model loading panicked: {e}")))?;
        let (rules, problems) = RuleSet::compile(&cfg.rules, &library);
        for p in problems {
            error!("{p}");
        }
        let engine = Engine::new(Arc::new(rules));
        for f in &library.report.failed {
            error!(model = %f.name, path = %f.path.display(), error = %f.error, "model not loaded; the other models work");
        }
        let library = Arc::new(library);

        let (in_tx, in_rx) = mpsc::channel(cfg.pipeline.queue);
        let (w_tx, w_rx) = mpsc::channel(pipeline::WRITER_QUEUE);
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let mut mqtt_addr = None;
        // The embedded broker is ready once bound; the external one after its SUBACKs.
        let mut mqtt_ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let publisher: Arc<dyn EventPublisher> = match cfg.mqtt.mode {
            MqttMode::Embedded => {
                let broker = Arc::new(EmbeddedBroker::start(cfg.mqtt.max_payload, &metrics)?);
                let gw = Gateway::bind(
                    GatewayConfig {
                        listen: cfg.mqtt.listen.clone(),
                        broker: broker.internal_addr,
                        internal_username: broker.internal_username.clone(),
                        internal_password: broker.internal_password.clone(),
                        max_payload: cfg.mqtt.max_payload,
                    },
                    registry.clone(),
                    Some(in_tx.clone()),
                    &metrics,
                )
                .await?;
                mqtt_addr = Some(gw.local_addr());
                tasks.push(("mqtt-gateway", tokio::spawn(gw.run(shutdown.clone()))));
                let (b, m, s) = (broker.clone(), metrics.clone(), shutdown.clone());
                tasks.push((
                    "mqtt-consumer",
                    tokio::spawn(async move {
                        if let Err(e) = b.consume(in_tx, &m, s).await {
                            error!(error = %e, "MQTT consumer stopped");
                        }
                    }),
                ));
                broker
            }
            MqttMode::External => {
                let ext = ExternalBroker::new(ExternalConfig {
                    url: cfg.mqtt.url.clone().unwrap_or_default(),
                    client_id: cfg.mqtt.client_id.clone(),
                    shared_group: cfg.mqtt.shared_group.clone(),
                    username: cfg.mqtt.username.clone(),
                    password: cfg.mqtt.password.clone(),
                    max_payload: cfg.mqtt.max_payload,
                })?;
                let client = ext.publisher();
                mqtt_ready = ext.ready_flag();
                let (m, s) = (metrics.clone(), shutdown.clone());
                tasks.push((
                    "mqtt-consumer",
                    tokio::spawn(async move {
                        if let Err(e) = ext.consume(in_tx, &m, s).await {
                            error!(error = %e, "MQTT consumer stopped");
                        }
                    }),
                ));
                Arc::new(client)
            }
        };

        let outputs = Outputs::new(&cfg.outputs, &cfg.data_dir, Some(publisher))?;
        let events = outputs.sender();
        let ctx = Arc::new(pipeline::Ctx::new(
            registry.clone(),
            store.clone(),
            clock.clone(),
            outputs,
            &metrics,
        ));
        tasks.push((
            "processor",
            tokio::spawn(pipeline::run_processor(
                in_rx,
                engine,
                ctx.clone(),
                w_tx.clone(),
                cfg.pipeline.batch_max,
            )),
        ));
        tasks.push((
            "monitor",
            tokio::spawn(pipeline::run_monitor(
                ctx.clone(),
                w_tx.clone(),
                MonitorConfig {
                    tick: opts.monitor_tick,
                    retention: cfg.database.readings_retention,
                },
                shutdown.clone(),
            )),
        ));
        tasks.push(("writer", tokio::spawn(pipeline::run_writer(w_rx, ctx))));

        let (cameras, workers) = CameraManager::new(
            VisionSettings::from_config(&cfg),
            library.clone(),
            registry.clone(),
            store.clone(),
            w_tx,
            &metrics,
        );
        cameras.load(&cfg.cameras).await?;
        tasks.push(("camera-monitor", tokio::spawn(cameras.clone().run_monitor(shutdown.clone()))));
        tasks.push((
            "model-watcher",
            tokio::spawn(cameras.clone().watch_models(
                search_path(&cfg),
                load_options(&cfg),
                cfg.models.reload_interval,
                shutdown.clone(),
            )),
        ));
        tasks.push((
            "vision-workers",
            tokio::task::spawn_blocking(move || {
                for w in workers {
                    if w.join().is_err() {
                        error!("an analysis worker panicked");
                    }
                }
            }),
        ));

        let state = AppState {
            store: store.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            clock,
            mqtt_ready,
            cameras: cameras.clone(),
            evidence_dir: cfg.data_dir.join("evidence"),
            config_path: opts.config_path.clone(),
        };
        let listener =
            tokio::net::TcpListener::bind(&cfg.http.listen).await.map_err(|source| Error::Io {
                context: format!("binding the HTTP API to {} (http.listen)", cfg.http.listen),
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| Error::Io { context: "reading the HTTP address".into(), source })?;
        let s = shutdown.clone();
        let router = api::router(state);
        let app = router.clone();
        tasks.push((
            "http",
            tokio::spawn(async move {
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { s.cancelled().await })
                    .await;
                if let Err(e) = r {
                    error!(error = %e, "HTTP server failed");
                }
            }),
        ));
        info!(http = %http_addr, mqtt = ?mqtt_addr, "hub started");
        Ok(Hub {
            http_addr,
            router,
            mqtt_addr,
            store,
            registry,
            metrics,
            shutdown,
            cameras,
            events,
            tasks,
        })
    }

    /// Finding events as they are stored (JSON of `outputs::FindingEvent`).
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<bytes::Bytes> {
        self.events.subscribe()
    }

    /// The HTTP app itself.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Waits for the shutdown token, then for every stage to drain and stop.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        for (name, task) in self.tasks {
            match task.await {
                Ok(()) => {}
                Err(e) if e.is_panic() => error!(task = name, "task panicked"),
                Err(_) => {}
            }
        }
        info!("hub stopped");
    }

    /// Triggers shutdown and waits for the stages to drain.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.wait().await;
    }
}
