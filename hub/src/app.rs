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
use crate::supervise::{Faults, Restart, Supervisor, once};

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
    /// Test seam: make supervised tasks fail on demand.
    pub faults: Faults,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            shutdown: Shutdown::new(),
            monitor_tick: Duration::from_secs(1),
            config_path: None,
            faults: Faults::default(),
        }
    }
}

/// Each HTTP connection's kernel send buffer (bytes; Linux doubles it for bookkeeping).
pub const HTTP_SEND_BUFFER: usize = 128 << 10;

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
        // Batches a previous run could not store before it stopped come first.
        let spool_dir = cfg.data_dir.join("spool");
        let evidence_dir = cfg.data_dir.join("evidence");
        let replayed = pipeline::replay_spool(&store, &spool_dir, clock.now_ms()).await;
        if replayed > 0 {
            info!(batches = replayed, "stored the batches spooled by the previous run");
        }
        let sup = Supervisor::new(&metrics, opts.faults.clone(), shutdown.clone());
        for s in &cfg.sites {
            store.upsert_site(s).await?;
        }
        // The first start with no users: an admin, its password said once.
        let admin_password = std::env::var(config::env::ADMIN_PASSWORD).ok();
        if let Some((user, password)) =
            crate::accounts::bootstrap_admin(&store, admin_password.clone(), clock.now_ms()).await?
        {
            if admin_password.is_some() {
                info!(user, "created the first admin with the password of HUB_ADMIN_PASSWORD");
            } else {
                // Printed once, on stderr, not logged: it is a secret.
                eprintln!(
                    "hub: created the first admin: username {user}, password {password} \
                     (shown once; change it with `hub user passwd {user}`)"
                );
            }
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
        registry.attach_store(store.clone());
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
        let rules = Arc::new(rules);
        for f in &library.report.failed {
            error!(model = %f.name, path = %f.path.display(), error = %f.error, "model not loaded; the other models work");
        }
        let library = Arc::new(library);

        let (in_tx, in_rx) = mpsc::channel(cfg.pipeline.queue);
        let (w_tx, w_rx) = mpsc::channel(pipeline::WRITER_QUEUE);
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let auth = Arc::new(
            crate::auth::Auth::new(&cfg.http, &api::route_table())
                .accepting_files(api::file_routes()),
        );
        let waker = crate::delivery::Waker::default();
        // Departments' MQTT subscribers of record events log in to the embedded gateway.
        let feeds = (cfg.mqtt.mode == MqttMode::Embedded).then(|| {
            Arc::new(crate::delivery::mqtt::Feeds::new(
                store.clone(),
                auth.clone(),
                clock.clone(),
                waker.clone(),
            ))
        });
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
                        max_connections: cfg.mqtt.max_connections,
                        connections_per_ip_per_second: cfg.mqtt.connections_per_ip_per_second,
                        connection_burst: cfg.mqtt.connection_burst,
                        login_failure_delay: cfg.mqtt.login_failure_delay,
                        login_failure_max_delay: cfg.mqtt.login_failure_max_delay,
                    },
                    registry.clone(),
                    feeds.clone().map(|f| f as Arc<dyn ingest::feed::FeedDirectory>),
                    Some(in_tx.clone()),
                    &metrics,
                )
                .await?;
                mqtt_addr = Some(gw.local_addr());
                // The gateway owns its listener: not restartable; /healthz names it if it ends.
                let run = gw.run(shutdown.clone());
                tasks.push(("mqtt-gateway", sup.spawn("mqtt-gateway", Restart::Never, once(run))));
                let (b, m, s) = (broker.clone(), metrics.clone(), shutdown.clone());
                let consume = async move {
                    if let Err(e) = b.consume(in_tx, &m, s).await {
                        error!(error = %e, "MQTT consumer stopped");
                    }
                };
                tasks.push((
                    "mqtt-consumer",
                    sup.spawn("mqtt-consumer", Restart::Never, once(consume)),
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
                let consume = async move {
                    if let Err(e) = ext.consume(in_tx, &m, s).await {
                        error!(error = %e, "MQTT consumer stopped");
                    }
                };
                tasks.push((
                    "mqtt-consumer",
                    sup.spawn("mqtt-consumer", Restart::Never, once(consume)),
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
            ingest::telemetry::TsWindow::new(
                cfg.pipeline.max_clock_skew_ahead,
                cfg.pipeline.max_reading_age,
            ),
            &metrics,
        ));
        // Queues outlive a restart of the stage that reads them: the receivers sit in shared
        // slots the restarted stage takes again.
        let in_rx = Arc::new(tokio::sync::Mutex::new(in_rx));
        let w_rx = Arc::new(tokio::sync::Mutex::new(w_rx));
        let (c, w, batch_max) = (ctx.clone(), w_tx.clone(), cfg.pipeline.batch_max);
        tasks.push((
            "processor",
            sup.spawn("processor", Restart::Always, move || {
                // Rule state starts afresh after a restart; the rules themselves are shared.
                let engine = Engine::new(rules.clone());
                pipeline::run_processor(in_rx.clone(), engine, c.clone(), w.clone(), batch_max)
            }),
        ));
        let (c, w, s) = (ctx.clone(), w_tx.clone(), shutdown.clone());
        let monitor_cfg = MonitorConfig {
            tick: opts.monitor_tick,
            retention: cfg.database.readings_retention,
            session_idle: cfg.http.session_idle,
            session_lifetime: cfg.http.session_lifetime,
        };
        tasks.push((
            "monitor",
            sup.spawn("monitor", Restart::Always, move || {
                pipeline::run_monitor(c.clone(), w.clone(), monitor_cfg, s.clone())
            }),
        ));
        let writer_status = Arc::new(pipeline::WriterStatus::default());
        let (c, st) = (ctx.clone(), writer_status.clone());
        let writer_opts = pipeline::WriterOptions {
            spool_dir,
            evidence_dir: evidence_dir.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.push((
            "writer",
            sup.spawn("writer", Restart::Always, move || {
                pipeline::run_writer(w_rx.clone(), c.clone(), st.clone(), writer_opts.clone())
            }),
        ));

        let (cameras, workers) = CameraManager::new(
            VisionSettings::from_config(&cfg),
            library.clone(),
            registry.clone(),
            store.clone(),
            w_tx,
            &metrics,
        );
        cameras.load(&cfg.cameras).await?;
        let (c, s) = (cameras.clone(), shutdown.clone());
        tasks.push((
            "camera-monitor",
            sup.spawn("camera-monitor", Restart::Always, move || c.clone().run_monitor(s.clone())),
        ));
        let (c, s) = (cameras.clone(), shutdown.clone());
        let (path, lopts, every) =
            (search_path(&cfg), load_options(&cfg), cfg.models.reload_interval);
        tasks.push((
            "model-watcher",
            sup.spawn("model-watcher", Restart::Always, move || {
                c.clone().watch_models(path.clone(), lopts.clone(), every, s.clone())
            }),
        ));
        // The analysis threads: a panicking worker leaves the others running, and the task is
        // reported down (restarting the threads needs the process restarted).
        // Joined on a plain thread, not the blocking pool: a runtime dropped without a clean
        // stop (a failing test) must not wait for the workers forever.
        let (joined_tx, joined) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("vision-join".into())
            .spawn(move || {
                let mut panicked = 0;
                for w in workers {
                    if w.join().is_err() {
                        error!("an analysis worker panicked");
                        panicked += 1;
                    }
                }
                let _ = joined_tx.send(panicked);
            })
            .map_err(|source| Error::Io {
                context: "starting the analysis join thread".into(),
                source,
            })?;
        let join = async move {
            if !matches!(joined.await, Ok(0)) {
                panic!("an analysis worker panicked");
            }
        };
        tasks.push(("vision-workers", sup.spawn("vision-workers", Restart::Never, once(join))));

        let provisioner = crate::broker_accounts::provisioner(&cfg, shutdown.clone())?;
        if let Some(p) = &provisioner {
            crate::broker_accounts::check_accounts(p.clone(), registry.clone());
        }
        // Supervision records: the delivery worker and the deadline monitor.
        let delivery_networks: Arc<Vec<ipnet::IpNet>> =
            Arc::new(cfg.delivery.networks.iter().filter_map(|n| n.parse().ok()).collect());
        let worker = crate::delivery::Worker {
            store: store.clone(),
            cfg: cfg.delivery.clone(),
            networks: delivery_networks.clone(),
            waker: waker.clone(),
            clock: clock.clone(),
            owner: format!("{}:{}", std::process::id(), crate::auth::secrets::random(8)),
            metrics: metrics.clone(),
            feeds: feeds.clone(),
        };
        let worker = Arc::new(worker);
        let (w, s) = (worker.clone(), shutdown.clone());
        tasks.push((
            "delivery",
            sup.spawn("delivery", Restart::Always, move || {
                let (w, s) = (w.clone(), s.clone());
                async move {
                    if let Err(e) = w.run(s).await {
                        error!(error = %e, "the delivery worker stopped");
                    }
                }
            }),
        ));
        let (st, s, c, wk) = (store.clone(), shutdown.clone(), clock.clone(), waker.clone());
        let every = cfg.records.deadline_check;
        tasks.push((
            "deadline-monitor",
            sup.spawn("deadline-monitor", Restart::Always, move || {
                let (st, s, c, wk) = (st.clone(), s.clone(), c.clone(), wk.clone());
                async move { crate::records::deadline_monitor(st, c, wk, every, s).await }
            }),
        ));
        let records = Arc::new(api::records::RecordsCtx {
            policy: crate::store::records::Policy::of(&cfg.records),
            waker,
            networks: delivery_networks,
            attachments_dir: cfg.data_dir.join("attachments"),
            attachment_max_bytes: cfg.records.attachment_max_bytes,
            rotation_overlap_ms: cfg.delivery.rotation_overlap.as_millis() as i64,
            mqtt_feeds: feeds.is_some(),
        });
        let state = AppState {
            records: records.clone(),
            store: store.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            mqtt_ready,
            cameras: cameras.clone(),
            evidence_dir,
            config_path: opts.config_path.clone(),
            supervisor: sup.clone(),
            writer: writer_status,
            provisioner: provisioner.clone(),
            openapi: Arc::default(),
            auth: auth.clone(),
            camera_networks: Arc::new(
                cfg.http.camera_networks.iter().filter_map(|n| n.parse().ok()).collect(),
            ),
            events: events.clone(),
            shutdown: shutdown.clone(),
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
        // A connection's kernel send buffer is bounded: a live viewer whose link or browser is
        // slower than its camera fills it within a fraction of a second, so the hub notices and
        // skips it to the next key frame instead of queueing seconds of delay (autotuned
        // buffers reach megabytes). Plenty for API answers on a LAN.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(HTTP_SEND_BUFFER);
        });
        let serve = async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
            if let Err(e) = r {
                error!(error = %e, "HTTP server failed");
            }
        };
        tasks.push(("http", sup.spawn("http", Restart::Never, once(serve))));
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
