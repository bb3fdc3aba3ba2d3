//! Cameras at run time: one ingest source per camera, a bounded frame queue shared by all of
//! them, analysis workers that run each camera's models and rules, evidence, and the camera
//! offline monitor.
//!
//! ```text
//! camera threads ──try_send──▶ frame queue (vision.queue; full → frame dropped, counted)
//!                                   │
//!                      analysis workers (vision.workers threads)
//!      latest frame (snapshot) · motion gate · detectors (pooled sessions) · scene rules
//!                                   │ firing
//!                 evidence JPEGs ──▶ writer queue ──▶ finding + evidence rows, one transaction
//! ```
//!
//! Adding, changing or removing a camera starts or stops only that camera's source; the other
//! cameras' threads are never touched. Cameras from the configuration file are read-only
//! through the API (the file is their source of truth; `reload` applies its changes); cameras
//! added through the API are stored and come back after a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::metrics::{Counter, Registry as Metrics};
use common::{FindingState, Severity, UnixMs};
use inference::ModelLibrary;
use inference::manifest::Task;
use inference::vision::scene::{Firing, MotionGate, SceneRules};
use inference::vision::{Detection, Detector};
use ingest::camera::{Analysis, Camera as Source, CameraSpec, CameraState, Frame, Health};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::error::Error;
use crate::registry::Registry;
use crate::store::{Batch, CameraRow, FindingFilter, FindingHit, Store};

/// Settings the manager takes from `[vision]` and `data_dir`.
#[derive(Debug, Clone)]
pub struct VisionSettings {
    pub queue: usize,
    pub workers: usize,
    pub batch: usize,
    pub utc_offset_s: i32,
    pub jpeg_quality: u8,
    /// `data_dir/evidence`.
    pub evidence_dir: PathBuf,
    pub evidence_retention: Duration,
    /// An on-demand pull stops this long after its last viewer leaves.
    pub live_linger: Duration,
}

impl VisionSettings {
    pub fn from_config(cfg: &config::Config) -> Self {
        let v = &cfg.vision;
        Self {
            queue: v.queue,
            workers: v.workers,
            batch: v.batch,
            utc_offset_s: config::parse_utc_offset(&v.utc_offset).unwrap_or(0),
            jpeg_quality: v.jpeg_quality,
            evidence_dir: cfg.data_dir.join("evidence"),
            evidence_retention: v.evidence_retention,
            live_linger: v.live_linger,
        }
    }
}

/// Analysis state of one camera, shared by the workers and the API. Each part has its own
/// lock, held only to copy or swap a value: no lock is held while models run, JPEGs are
/// encoded or a finding waits for the writer.
struct Scene {
    /// Rules and motion gate. The worker analysing a frame of this camera takes them out and
    /// puts them back afterwards; meanwhile another worker skips this camera's frames (a
    /// camera's frames are analysed one at a time, in order).
    state: Mutex<Option<SceneState>>,
    /// The latest decoded frame (snapshots).
    latest: Mutex<Option<Frame>>,
    stats: Mutex<AnalysisStats>,
}

struct SceneState {
    rules: SceneRules,
    gate: Option<MotionGate>,
}

/// What analysis did with a camera's frames.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnalysisStats {
    /// Frames the models looked at.
    pub frames_analysed: u64,
    /// Frames the motion gate skipped (still scene).
    pub frames_still: u64,
    /// Rule firings (each a finding occurrence with evidence).
    pub firings: u64,
    /// The last analysis problem (a missing model, a bad frame), if any.
    pub analysis_error: Option<String>,
}

struct Entry {
    /// Shared with the workers, which take it per frame.
    spec: Arc<config::Camera>,
    source: String,
    created_at: UnixMs,
    updated_at: UnixMs,
    running: Option<Source>,
    /// Sources started for this camera id since the hub started (each change restarts it).
    starts: u64,
    scene: Arc<Scene>,
    /// The offline monitor's view of the camera.
    watch: Watch,
    /// When the pull last started or stopped.
    pull_changed: UnixMs,
    /// An on-demand pull without viewers: since when, and when it stops (Unix ms).
    idle_since: Option<(std::time::Instant, UnixMs)>,
}

/// A relay-only camera with `pull = "auto"` is connected only while someone watches it.
fn on_demand(c: &config::Camera) -> bool {
    c.analysis == config::AnalysisMode::Off && c.pull == config::PullMode::Auto
}

/// How a camera is pulled now (the camera JSON's `pull`).
#[derive(Debug, Clone, Serialize)]
pub struct PullView {
    /// `always` (analysed, or `pull = "always"`) or `on_demand` (relay-only: only while
    /// someone watches).
    pub mode: &'static str,
    /// Connected (or connecting) now.
    pub active: bool,
    /// When the pull last started or stopped (Unix ms).
    pub since: UnixMs,
    /// An on-demand pull that nobody watches stops at this time (Unix ms).
    pub stops_at: Option<UnixMs>,
}

/// What the offline monitor knows of a camera: when it last delivered, and whether its
/// outage has raised a `camera-offline` finding.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// `frames_in` of the camera's source at the last tick.
    frames_in: u64,
    /// When the camera last delivered (or started, or its outage finding opened at start).
    last_data: std::time::Instant,
    last_data_ms: UnixMs,
    /// The outage has its finding.
    raised: bool,
}

impl Watch {
    fn new() -> Self {
        Self {
            frames_in: 0,
            last_data: std::time::Instant::now(),
            last_data_ms: now_ms(),
            raised: false,
        }
    }
}

/// A `camera-offline` finding to clear once the store has it (its opening may still be in the
/// writer's queue).
struct PendingClear {
    key: String,
    camera: String,
    details: String,
    since: std::time::Instant,
}

/// A camera as the API shows it (credentials redacted).
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    pub spec: config::Camera,
    pub source: String,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
    pub health: Health,
    /// Sources started for this camera since the hub started: a change restarts only the
    /// camera it names, so the others' count stays.
    pub starts: u64,
    /// What analysis did (`analysis` is the camera's decode mode).
    pub stats: AnalysisStats,
    /// Live viewers watching now (all share the one pull).
    pub viewers: usize,
    pub pull: PullView,
}

struct Shared {
    settings: VisionSettings,
    /// Replaced as a whole when model files change; `generation` counts the replacements so
    /// workers drop their detectors of the old library.
    library: std::sync::RwLock<Arc<ModelLibrary>>,
    generation: std::sync::atomic::AtomicU64,
    registry: Arc<Registry>,
    store: Store,
    cams: Mutex<BTreeMap<String, Entry>>,
    /// None once stopping: no new camera starts.
    frames: Mutex<Option<mpsc::Sender<Frame>>>,
    dropped: Arc<Counter>,
    analysed: Arc<Counter>,
    /// Taken at stop, so that the writer ends once workers and monitor have finished.
    writer: Mutex<Option<mpsc::Sender<Batch>>>,
    /// Each camera's live fragments, kept across restarts of its source (viewers then get the
    /// new stream's init segment), removed with the camera. Locked after `cams` when both are.
    rings: Mutex<BTreeMap<String, Arc<crate::live::ring::Ring>>>,
    /// Cameras connected now (`hub_camera_pulls`).
    pulls: Arc<common::metrics::Gauge>,
}

/// The running cameras.
#[derive(Clone)]
pub struct CameraManager {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> UnixMs {
    chrono::Utc::now().timestamp_millis()
}

impl CameraManager {
    /// Starts the analysis workers; cameras are added with [`CameraManager::put`]. Returns the
    /// workers' join handles (they end after [`CameraManager::stop`]).
    pub fn new(
        settings: VisionSettings,
        library: Arc<ModelLibrary>,
        registry: Arc<Registry>,
        store: Store,
        writer: mpsc::Sender<Batch>,
        metrics: &Metrics,
    ) -> (Self, Vec<std::thread::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(settings.queue);
        let shared = Arc::new(Shared {
            library: std::sync::RwLock::new(library),
            generation: std::sync::atomic::AtomicU64::new(0),
            registry,
            store,
            cams: Mutex::new(BTreeMap::new()),
            frames: Mutex::new(Some(tx)),
            dropped: metrics.counter(
                "hub_camera_frames_dropped_total",
                "Decoded frames dropped because the analysis queue was full",
                &[],
            ),
            analysed: metrics.counter(
                "hub_camera_frames_analysed_total",
                "Frames the camera rules' models looked at",
                &[],
            ),
            writer: Mutex::new(Some(writer.clone())),
            rings: Mutex::default(),
            pulls: metrics.gauge(
                common::metrics::names::CAMERA_PULLS,
                "Cameras connected now (relay-only cameras only while someone watches them)",
                &[],
            ),
            settings,
        });
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..shared.settings.workers.max(1))
            .map(|i| {
                let (rx, shared, writer) = (rx.clone(), shared.clone(), writer.clone());
                std::thread::Builder::new()
                    .name(format!("vision-{i}"))
                    .spawn(move || worker(rx, shared, writer))
                    .expect("spawning an analysis worker")
            })
            .collect();
        (Self { shared }, workers)
    }

    /// Checks a camera against what the hub has: its own problems, its site, and its rules'
    /// models and labels. Each problem says where and what.
    pub fn check(&self, c: &config::Camera, at: &str) -> Vec<String> {
        let mut out: Vec<String> =
            c.validate(at).iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
        if !self.shared.registry.sites.contains_key(c.site.as_str()) {
            let known: Vec<&String> = self.shared.registry.sites.keys().collect();
            out.push(format!("{at}.site: {:?} is not a configured site; known: {known:?}", c.site));
        }
        let lib = self.library();
        for (j, r) in c.rules.iter().enumerate() {
            let at = format!("{at}.rules[{j}]");
            match lib.get(&r.model) {
                Ok(m) if m.manifest.task != Task::Detection => out.push(format!(
                    "{at}.model: {:?} is a {:?} model, not a detection model",
                    r.model, m.manifest.task
                )),
                Ok(m) => {
                    for l in &r.labels {
                        if !m.manifest.labels.contains(l) {
                            out.push(format!(
                                "{at}.labels: model {:?} has no label {l:?} (it has e.g. {:?})",
                                r.model,
                                m.manifest.labels.iter().take(5).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
                // A model that failed to load is reported by name; the camera still runs and
                // shows the problem in its health.
                Err(_) if lib.report.failed.iter().any(|f| f.name == r.model) => {}
                Err(_) => out.push(format!(
                    "{at}.model: no model {:?} in the library; loaded: {:?}",
                    r.model,
                    lib.names().collect::<Vec<_>>()
                )),
            }
        }
        out
    }

    /// The model library in use.
    pub fn library(&self) -> Arc<ModelLibrary> {
        self.shared.library.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Watches the model search path and reloads the library when its files change (new,
    /// replaced or removed models). Detection models are used by the cameras from their next
    /// frame; a model that fails to load is reported by name and the others keep working.
    pub async fn watch_models(
        self,
        search_path: Vec<PathBuf>,
        opts: inference::library::LoadOptions,
        interval: Duration,
        shutdown: common::Shutdown,
    ) {
        if interval.is_zero() {
            return;
        }
        let fp = |p: Vec<PathBuf>| async move {
            tokio::task::spawn_blocking(move || inference::library::fingerprint(&p)).await.ok()
        };
        let mut last = fp(search_path.clone()).await;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = fp(search_path.clone()).await;
            if now == last {
                continue;
            }
            last = now;
            let (path, o) = (search_path.clone(), opts.clone());
            let Ok(lib) = tokio::task::spawn_blocking(move || {
                ModelLibrary::load(inference::library::BUILTIN, &path, &o)
            })
            .await
            else {
                continue;
            };
            let loaded: Vec<&str> = lib.names().collect();
            let failed: Vec<&str> = lib.report.failed.iter().map(|f| f.name.as_str()).collect();
            info!(?loaded, ?failed, "model files changed; library reloaded");
            *self.shared.library.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lib);
            self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The camera's live ring (made on first use).
    fn ring(&self, id: &str) -> Arc<crate::live::ring::Ring> {
        lock(&self.shared.rings)
            .entry(id.to_owned())
            .or_insert_with(|| crate::live::ring::Ring::new(Default::default()))
            .clone()
    }

    /// A new live viewer of a camera: its cursor into the camera's shared fragments. `None`
    /// for an unknown camera.
    /// An on-demand camera nobody watched is connected now.
    pub fn viewer(&self, id: &str) -> Option<crate::live::ring::Viewer> {
        let mut cams = lock(&self.shared.cams);
        let e = cams.get_mut(id)?;
        let viewer = self.ring(id).viewer();
        e.idle_since = None;
        if e.running.is_none() && on_demand(&e.spec) {
            e.running = self.start_source(&e.spec);
            if e.running.is_some() {
                e.starts += 1;
                e.pull_changed = now_ms();
                // A new pull, not an outage: the monitor counts from now.
                e.watch = Watch { raised: e.watch.raised, ..Watch::new() };
                info!(camera = %id, "camera pulled for a live viewer");
            }
        }
        drop(cams);
        self.count_pulls();
        Some(viewer)
    }

    /// Starts a camera's source (None when disabled or while the hub stops).
    fn start_source(&self, spec: &config::Camera) -> Option<Source> {
        let frames = lock(&self.shared.frames).clone()?;
        if !spec.enabled {
            return None;
        }
        Some(Source::start(
            CameraSpec {
                id: spec.id.clone(),
                url: spec.url.clone(),
                latency_ms: spec.latency_ms,
                client: spec.rtsp_client,
                stall_timeout: spec.stall_timeout,
                live: Some(ingest::source::LiveTap(Arc::new(crate::live::Tap::new(
                    self.ring(spec.id.as_str()),
                    spec.id.as_str(),
                )))),
                analysis: match spec.analysis {
                    config::AnalysisMode::Keyframes => Analysis::Keyframes,
                    config::AnalysisMode::Fps => Analysis::Fps(spec.fps.unwrap_or(1)),
                    config::AnalysisMode::Off => Analysis::Off,
                },
            },
            frames,
            self.shared.dropped.clone(),
        ))
    }

    fn count_pulls(&self) {
        let n = lock(&self.shared.cams).values().filter(|e| e.running.is_some()).count();
        self.shared.pulls.set(n as i64);
    }

    /// Stops the on-demand pulls nobody has watched for `live_linger` (once a second, from
    /// the monitor).
    fn stop_unwatched(&self) {
        let linger = self.shared.settings.live_linger;
        let mut stopped = Vec::new();
        {
            let mut cams = lock(&self.shared.cams);
            let rings = lock(&self.shared.rings);
            for (id, e) in cams.iter_mut() {
                if e.running.is_none() || !on_demand(&e.spec) {
                    e.idle_since = None;
                    continue;
                }
                if rings.get(id).is_some_and(|r| r.viewers() > 0) {
                    e.idle_since = None;
                    continue;
                }
                let stops_at = now_ms() + linger.as_millis() as i64;
                let (since, _) = *e.idle_since.get_or_insert((std::time::Instant::now(), stops_at));
                if since.elapsed() >= linger {
                    info!(camera = %id, linger = ?linger, "camera pull stopped: no live viewer");
                    stopped.extend(e.running.take());
                    // A viewer coming later waits for the next pull's picture, not this one's.
                    if let Some(r) = rings.get(id) {
                        r.reset();
                    }
                    e.idle_since = None;
                    e.pull_changed = now_ms();
                }
            }
        }
        if !stopped.is_empty() {
            self.count_pulls();
            // Joining a source's thread takes a moment: not on the monitor's task.
            std::thread::spawn(move || stopped.into_iter().for_each(Source::stop));
        }
    }

    /// Adds a camera or replaces the one with its id (restarting only that camera's source).
    pub fn put(&self, spec: config::Camera, source: &str, created_at: UnixMs) {
        let scene = Scene {
            state: Mutex::new(Some(SceneState {
                rules: SceneRules::new(&spec, self.shared.settings.utc_offset_s),
                gate: spec.motion_threshold.map(MotionGate::new),
            })),
            latest: Mutex::new(None),
            stats: Mutex::new(AnalysisStats::default()),
        };
        let id = spec.id.to_string();
        let url = ingest::camera::redact(&spec.url);
        // Decided and replaced under the camera map's lock, so that a viewer arriving meanwhile
        // either finds the old entry (and this one starts for it) or the new one.
        let (old, pulled) = {
            let mut cams = lock(&self.shared.cams);
            // An on-demand camera is pulled now only when someone watches it already (a
            // change while watched restarts it).
            let watched =
                lock(&self.shared.rings).get(spec.id.as_str()).is_some_and(|r| r.viewers() > 0);
            let running =
                if on_demand(&spec) && !watched { None } else { self.start_source(&spec) };
            let pulled = running.is_some();
            let mut entry = Entry {
                spec: Arc::new(spec),
                source: source.into(),
                created_at,
                updated_at: now_ms(),
                starts: u64::from(pulled),
                running,
                scene: Arc::new(scene),
                watch: Watch::new(),
                pull_changed: now_ms(),
                idle_since: None,
            };
            if let Some(old) = cams.get(&id) {
                // A replaced camera keeps its outage (its finding is still open), and its new
                // source counts from zero.
                entry.watch = Watch { frames_in: 0, ..old.watch };
                entry.starts += old.starts;
            }
            let enabled = entry.spec.enabled;
            (cams.insert(id.clone(), entry), (pulled, enabled))
        };
        match pulled {
            (true, _) => info!(camera = %id, url = %url, "camera started"),
            (false, false) => {
                info!(camera = %id, url = %url, "camera added, not pulled (disabled)")
            }
            (false, true) => {
                info!(camera = %id, url = %url, "camera added, pulled while watched live")
            }
        }
        if let Some(old) = old.and_then(|o| o.running) {
            // Joining the old pipeline's thread takes a moment: not on the caller's thread.
            std::thread::spawn(move || old.stop());
        }
        self.count_pulls();
    }

    /// Removes a camera; false when there is none with this id.
    pub fn remove(&self, id: &str) -> bool {
        let old = lock(&self.shared.cams).remove(id);
        if let Some(r) = lock(&self.shared.rings).remove(id) {
            r.close();
        }
        match old {
            Some(e) => {
                if let Some(r) = e.running {
                    std::thread::spawn(move || r.stop());
                }
                info!(camera = %id, "camera removed");
                self.count_pulls();
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: &str) -> Option<CameraView> {
        lock(&self.shared.cams).get(id).map(|e| self.with_viewers(view(e)))
    }

    pub fn list(&self) -> Vec<CameraView> {
        lock(&self.shared.cams).values().map(|e| self.with_viewers(view(e))).collect()
    }

    fn with_viewers(&self, mut v: CameraView) -> CameraView {
        v.viewers = lock(&self.shared.rings).get(v.spec.id.as_str()).map_or(0, |r| r.viewers());
        v
    }

    /// Live viewers of all cameras now (the `hub_live_viewers` gauge).
    pub fn viewers(&self) -> usize {
        lock(&self.shared.rings).values().map(|r| r.viewers()).sum()
    }

    /// The spec and source of a camera (URL credentials included, for PATCH).
    pub fn spec(&self, id: &str) -> Option<(config::Camera, String, UnixMs)> {
        lock(&self.shared.cams)
            .get(id)
            .map(|e| (config::Camera::clone(&e.spec), e.source.clone(), e.created_at))
    }

    /// The camera's latest decoded frame as JPEG.
    pub fn snapshot(&self, id: &str) -> Result<Vec<u8>, Error> {
        let (scene, analysis) = {
            let cams = lock(&self.shared.cams);
            let e = cams.get(id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
            (e.scene.clone(), e.spec.analysis)
        };
        if analysis == config::AnalysisMode::Off {
            return Err(Error::Conflict(format!(
                "camera {id:?} is relay-only (analysis = \"off\"): it decodes no frame to snapshot"
            )));
        }
        let frame = lock(&scene.latest).clone().ok_or_else(|| {
            Error::NotFound(format!("a frame of camera {id:?} (none decoded yet; see its health)"))
        })?;
        crate::evidence::jpeg(
            &frame.rgb,
            frame.width,
            frame.height,
            self.shared.settings.jpeg_quality,
        )
        .map_err(Error::InvalidArgument)
    }

    /// Stored cameras (API ones) and the configuration's cameras, started. Config cameras are
    /// written to the store too, so a camera's id is unique across both.
    pub async fn load(&self, cfg_cameras: &[config::Camera]) -> Result<(), Error> {
        let now = now_ms();
        let stored = self.shared.store.cameras().await?;
        for c in cfg_cameras {
            let row = CameraRow::of(c, "config", now, now);
            self.shared.store.upsert_camera(&row, true).await?;
            for p in self.check(c, &format!("cameras[{}]", c.id)) {
                warn!("{p}");
            }
            let created = stored.iter().find(|r| r.id == row.id).map_or(now, |r| r.created_at);
            self.put(c.clone(), "config", created);
        }
        for row in stored {
            if cfg_cameras.iter().any(|c| c.id.as_str() == row.id) {
                if row.source != "config" {
                    warn!(camera = %row.id, "an API camera has the id of a camera in the configuration file; the file's camera replaces it");
                }
                continue;
            }
            if row.source == "config" {
                // A config camera no longer in the file.
                self.shared.store.delete_camera(&row.id).await?;
                continue;
            }
            match serde_json::from_str::<config::Camera>(&row.spec) {
                Ok(c) => self.put(c, &row.source, row.created_at),
                Err(e) => error!(camera = %row.id, error = %e, "stored camera unreadable; skipped"),
            }
        }
        Ok(())
    }

    /// Applies the configuration file's cameras: new ones start, changed ones restart, removed
    /// ones stop; API cameras and unchanged cameras are not touched. Returns (added, changed,
    /// removed) ids.
    pub async fn reload(
        &self,
        cfg_cameras: &[config::Camera],
    ) -> Result<(Vec<String>, Vec<String>, Vec<String>), Error> {
        let now = now_ms();
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let current: HashMap<String, (config::Camera, String)> = lock(&self.shared.cams)
            .iter()
            .map(|(k, e)| (k.clone(), (config::Camera::clone(&e.spec), e.source.clone())))
            .collect();
        for c in cfg_cameras {
            let id = c.id.to_string();
            match current.get(&id) {
                Some((_, src)) if src != "config" => {
                    return Err(Error::Conflict(format!(
                        "camera {id:?} in the file is also an API camera; delete one of them"
                    )));
                }
                Some((old, _)) if old == c => continue,
                Some(_) => changed.push(id.clone()),
                None => added.push(id.clone()),
            }
            self.shared.store.upsert_camera(&CameraRow::of(c, "config", now, now), true).await?;
            self.put(c.clone(), "config", now);
        }
        for (id, (_, src)) in current {
            if src == "config" && !cfg_cameras.iter().any(|c| c.id.as_str() == id) {
                self.shared.store.delete_camera(&id).await?;
                self.remove(&id);
                removed.push(id);
            }
        }
        Ok((added, changed, removed))
    }

    /// Deletes evidence older than `vision.evidence_retention` (rows, then files).
    async fn apply_evidence_retention(&self) {
        let cutoff = now_ms() - self.shared.settings.evidence_retention.as_millis() as i64;
        match self.shared.store.delete_evidence_before(cutoff).await {
            Ok(files) if !files.is_empty() => {
                let root = self.shared.settings.evidence_dir.clone();
                let n = files.len();
                let _ = tokio::task::spawn_blocking(move || {
                    for f in files.iter().filter(|f| !f.contains("..") && !f.starts_with('/')) {
                        let _ = std::fs::remove_file(root.join(f));
                    }
                })
                .await;
                info!(files = n, "old evidence deleted (vision.evidence_retention)");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "evidence retention failed; retrying in an hour"),
        }
    }

    /// Once a second: a camera that has delivered nothing for its `offline_after` gets one
    /// offline finding per outage, cleared (with the outage's duration) once it delivers again.
    /// Hourly (and at start): evidence retention. Runs until `shutdown`.
    ///
    /// The monitor runs on a tokio worker: it takes the camera map's lock only to read health
    /// counters, and waits on the writer and the store with nothing held.
    pub async fn run_monitor(self, shutdown: common::Shutdown) {
        let Some(writer) = lock(&self.shared.writer).clone() else { return };
        self.adopt_open_outages().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        let mut clears: Vec<PendingClear> = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if n.is_multiple_of(3600) {
                self.apply_evidence_retention().await;
            }
            n += 1;
            self.stop_unwatched();
            let (hits, back) = self.watch_cameras();
            // A new outage of a camera supersedes its clear not yet stored: the finding stays
            // open and is cleared when the camera is back again.
            clears.retain(|c| !hits.iter().any(|h| h.dedup_key == c.key));
            clears.extend(back);
            if !hits.is_empty() {
                let batch = Batch { findings: hits, ..Batch::default() };
                if writer.send(batch).await.is_err() {
                    break;
                }
            }
            self.store_clears(&mut clears).await;
        }
        drop(writer);
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.stop()).await;
    }

    /// One look at every running camera (a short section under the camera map's lock): the
    /// findings of outages that reached `offline_after`, and the clears of outages that ended.
    fn watch_cameras(&self) -> (Vec<FindingHit>, Vec<PendingClear>) {
        let (mut hits, mut back) = (Vec::new(), Vec::new());
        let now = std::time::Instant::now();
        let mut cams = lock(&self.shared.cams);
        for e in cams.values_mut() {
            let Some(r) = &e.running else { continue };
            let h = r.health();
            let w = &mut e.watch;
            if h.frames_in != w.frames_in {
                w.frames_in = h.frames_in;
                if w.raised {
                    w.raised = false;
                    let outage = now.duration_since(w.last_data);
                    info!(camera = %e.spec.id, outage = ?outage, "camera back online");
                    back.push(PendingClear {
                        key: offline_key(&e.spec),
                        camera: e.spec.id.to_string(),
                        details: serde_json::json!({
                            "reason": "back online",
                            "outage_ms": outage.as_millis() as u64,
                            "since": w.last_data_ms,
                            "back_at": now_ms(),
                        })
                        .to_string(),
                        since: now,
                    });
                }
                w.last_data = now;
                w.last_data_ms = now_ms();
            } else if !w.raised && now.duration_since(w.last_data) >= e.spec.offline_after {
                w.raised = true;
                let why = h.last_error.unwrap_or_else(|| "no data".into());
                warn!(camera = %e.spec.id, error = %why, "camera offline");
                hits.push(self.offline_hit(&e.spec, &why, w.last_data_ms));
            }
        }
        (hits, back)
    }

    /// Clears the findings of ended outages in the store. One the store does not have open
    /// yet (still queued for the writer) is tried again at the next tick, for up to an hour.
    async fn store_clears(&self, clears: &mut Vec<PendingClear>) {
        let mut i = 0;
        while i < clears.len() {
            let c = &clears[i];
            let done = match tokio::time::timeout(
                Duration::from_secs(2),
                self.shared.store.clear_open_finding(&c.key, &c.details, now_ms()),
            )
            .await
            {
                Ok(Ok(true)) => true,
                Ok(Ok(false)) if c.since.elapsed() > Duration::from_secs(3600) => {
                    warn!(camera = %c.camera, "no open camera-offline finding to clear after an hour; giving up");
                    true
                }
                Ok(Ok(false)) => false,
                Ok(Err(e)) => {
                    warn!(camera = %c.camera, error = %e, "clearing the camera-offline finding failed; retrying");
                    false
                }
                Err(_) => {
                    warn!(camera = %c.camera, "the store did not answer within 2 s; clearing the camera-offline finding later");
                    // The store is stalled: the others would wait as long.
                    return;
                }
            };
            if done {
                clears.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Cameras whose offline finding is still open (from before a restart) count as in an
    /// outage, so that their finding is cleared when they deliver.
    async fn adopt_open_outages(&self) {
        let filter = FindingFilter {
            rule: Some("camera-offline".into()),
            states: vec![FindingState::Active, FindingState::Acknowledged],
            limit: 1000,
            ..FindingFilter::default()
        };
        let open = match tokio::time::timeout(
            Duration::from_secs(5),
            self.shared.store.findings(&filter, &crate::auth::Scope::All),
        )
        .await
        {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                warn!(error = %e, "reading open camera-offline findings failed; they stay open");
                return;
            }
            Err(_) => {
                warn!("reading open camera-offline findings took over 5 s; they stay open");
                return;
            }
        };
        let mut cams = lock(&self.shared.cams);
        for f in open {
            if let Some(e) = f.camera_id.as_deref().and_then(|id| cams.get_mut(id)) {
                e.watch.raised = true;
                e.watch.last_data_ms = f.first_seen;
                let ago =
                    Duration::from_millis(now_ms().saturating_sub(f.first_seen).max(0) as u64);
                e.watch.last_data =
                    std::time::Instant::now().checked_sub(ago).unwrap_or(e.watch.last_data);
            }
        }
    }

    fn offline_hit(&self, c: &config::Camera, why: &str, since: UnixMs) -> FindingHit {
        let at = now_ms();
        let site = c.site.to_string();
        FindingHit {
            dedup_key: offline_key(c),
            camera_id: Some(c.id.to_string()),
            device_id: None,
            rule: "camera-offline".into(),
            kind: "offline".into(),
            severity: Severity::Minor,
            item_code: None,
            region: self.shared.registry.sites.get(&site).map(|s| s.region.clone()),
            summary: format!("Camera {} offline: {why}", c.id),
            first_seen: since.min(at),
            last_seen: at,
            count: 1,
            last_value: None,
            details: serde_json::json!({ "reason": why, "since": since }).to_string(),
            evidence: Vec::new(),
            site_id: site,
        }
    }

    /// Stops every camera and closes the frame queue; the workers end once it is drained.
    pub fn stop(&self) {
        lock(&self.shared.frames).take();
        lock(&self.shared.writer).take();
        let cams = std::mem::take(&mut *lock(&self.shared.cams));
        for (_, e) in cams {
            if let Some(r) = e.running {
                r.stop();
            }
        }
    }
}

/// The key of a camera's offline finding.
fn offline_key(c: &config::Camera) -> String {
    FindingHit::key(c.site.as_str(), c.id.as_str(), "camera-offline", "offline")
}

fn view(e: &Entry) -> CameraView {
    let mut spec = config::Camera::clone(&e.spec);
    spec.url = ingest::camera::redact(&spec.url);
    let health = e.running.as_ref().map(|r| r.health()).unwrap_or(Health {
        state: if e.spec.enabled && on_demand(&e.spec) {
            CameraState::Idle
        } else {
            CameraState::Stopped
        },
        ..Health::default()
    });
    CameraView {
        spec,
        source: e.source.clone(),
        created_at: e.created_at,
        updated_at: e.updated_at,
        health,
        starts: e.starts,
        stats: lock(&e.scene.stats).clone(),
        viewers: 0,
        pull: PullView {
            mode: if on_demand(&e.spec) { "on_demand" } else { "always" },
            active: e.running.is_some(),
            since: e.pull_changed,
            stops_at: e.idle_since.map(|(_, stops_at)| stops_at),
        },
    }
}

/// An analysis worker: takes up to `batch` frames at a time from the shared queue.
fn worker(rx: Arc<Mutex<mpsc::Receiver<Frame>>>, shared: Arc<Shared>, writer: mpsc::Sender<Batch>) {
    let mut detectors: HashMap<String, Detector> = HashMap::new();
    let mut generation = shared.generation.load(std::sync::atomic::Ordering::SeqCst);
    let mut detections: Vec<Detection> = Vec::new();
    let mut firings: Vec<Firing> = Vec::new();
    let mut frames = Vec::with_capacity(shared.settings.batch);
    loop {
        {
            let mut rx = lock(&rx);
            match rx.blocking_recv() {
                Some(f) => frames.push(f),
                None => break,
            }
            while frames.len() < shared.settings.batch {
                match rx.try_recv() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                }
            }
        }
        let now = shared.generation.load(std::sync::atomic::Ordering::SeqCst);
        if now != generation {
            // The library was reloaded: build detectors from the new models.
            detectors.clear();
            generation = now;
        }
        for frame in frames.drain(..) {
            analyse(&shared, &writer, frame, &mut detectors, &mut detections, &mut firings);
        }
    }
}

fn analyse(
    shared: &Shared,
    writer: &mpsc::Sender<Batch>,
    frame: Frame,
    detectors: &mut HashMap<String, Detector>,
    detections: &mut Vec<Detection>,
    firings: &mut Vec<Firing>,
) {
    let (scene, spec) = {
        let cams = lock(&shared.cams);
        let Some(e) = cams.get(frame.camera.as_str()) else { return };
        (e.scene.clone(), e.spec.clone())
    };
    *lock(&scene.latest) = Some(frame.clone());
    // Another worker is analysing this camera: skip the frame.
    let Some(mut state) = lock(&scene.state).take() else { return };
    let mut boxes = None;
    let hits = evaluate(
        shared, &spec, &scene, &mut state, &frame, detectors, detections, firings, &mut boxes,
    );
    *lock(&scene.state) = Some(state);
    if let Some(boxes) = boxes {
        publish_detections(shared, &frame, boxes);
    }
    // Nothing is held while a finding waits for the writer (a full queue: the worker waits,
    // the API and the monitor do not).
    for hit in hits {
        let evidence = hit.evidence.clone();
        let batch = Batch { findings: vec![hit], ..Batch::default() };
        if writer.blocking_send(batch).is_err() {
            // Stopping: the finding will never be stored, nor will its images be referred to.
            crate::evidence::discard(&shared.settings.evidence_dir, &evidence);
            return;
        }
    }
}

/// Sends the analysed frame's detections to the camera's live viewers, placed on their media
/// timeline (`t`, seconds, as the player's `currentTime`), boxes normalised to the frame.
/// Frames without a camera timestamp, or analysed before the live view's first unit, are not
/// sent (they could not be aligned).
fn publish_detections(shared: &Shared, frame: &Frame, boxes: Vec<serde_json::Value>) {
    let Some(ring) = lock(&shared.rings).get(frame.camera.as_str()).cloned() else { return };
    if ring.viewers() == 0 {
        return;
    }
    let Some(t) = frame.pts.and_then(|pts| ring.media_seconds(pts)) else { return };
    let msg = serde_json::json!({
        "type": "detections", "t": t, "width": frame.width, "height": frame.height,
        "boxes": boxes,
    });
    ring.publish_detections(bytes::Bytes::from(msg.to_string()));
}

/// Runs the camera's models and rules on one frame; returns the findings of the rules that
/// fired (their evidence written). When the models ran, `boxes` has the detections the rules
/// look at (a rule's model, one of its labels, at its minimum score). Holds no lock but the
/// stats', briefly.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    shared: &Shared,
    spec: &config::Camera,
    scene: &Scene,
    state: &mut SceneState,
    frame: &Frame,
    detectors: &mut HashMap<String, Detector>,
    detections: &mut Vec<Detection>,
    firings: &mut Vec<Firing>,
    boxes: &mut Option<Vec<serde_json::Value>>,
) -> Vec<FindingHit> {
    let mut hits = Vec::new();
    if state.rules.is_empty() {
        return hits;
    }
    if let Some(g) = &mut state.gate
        && !g.moved(&frame.rgb, frame.width, frame.height)
    {
        lock(&scene.stats).frames_still += 1;
        return hits;
    }
    lock(&scene.stats).frames_analysed += 1;
    shared.analysed.inc();
    let boxes = boxes.insert(Vec::new());
    let mut problem = None;
    for model in state.rules.models().iter() {
        let det = match detectors.get_mut(model) {
            Some(d) => d,
            None => match shared
                .library
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(model)
                .and_then(Detector::new)
            {
                Ok(d) => detectors.entry(model.clone()).or_insert(d),
                Err(e) => {
                    let msg = e.to_string();
                    if lock(&scene.stats).analysis_error.as_deref() != Some(&msg) {
                        warn!(camera = %frame.camera, model = %model, error = %msg, "camera rules cannot run");
                    }
                    problem = Some(msg);
                    continue;
                }
            },
        };
        if let Err(e) = det.detect_into(&frame.rgb, frame.width, frame.height, detections) {
            problem = Some(e.to_string());
            continue;
        }
        let (w, h) = (frame.width.max(1) as f32, frame.height.max(1) as f32);
        for d in detections.iter() {
            let wanted = spec.rules.iter().any(|r| {
                r.model == *model
                    && d.score >= r.min_score
                    && (r.labels.is_empty() || r.labels.iter().any(|l| **l == *d.label))
            });
            if wanted {
                boxes.push(serde_json::json!({
                    "label": &*d.label, "score": d.score,
                    "x": d.x1 / w, "y": d.y1 / h, "w": (d.x2 - d.x1) / w, "h": (d.y2 - d.y1) / h,
                }));
            }
        }
        firings.clear();
        state.rules.evaluate(
            model,
            detections,
            frame.width,
            frame.height,
            frame.received_at,
            firings,
        );
        for f in firings.drain(..) {
            lock(&scene.stats).firings += 1;
            let hit = fire(shared, spec, frame, detections, &f);
            if let Some(why) = hit.evidence.iter().find_map(|e| e.missing.as_ref()) {
                problem = Some(format!("evidence not written: {why}"));
            }
            hits.push(hit);
        }
    }
    // The latest frame's problem, or none once analysis works again.
    lock(&scene.stats).analysis_error = problem;
    hits
}

fn fire(
    shared: &Shared,
    c: &config::Camera,
    frame: &Frame,
    detections: &[Detection],
    f: &Firing,
) -> FindingHit {
    let evidence = crate::evidence::write(
        &shared.settings.evidence_dir,
        c.id.as_str(),
        &f.rule_id,
        frame.received_at,
        &frame.rgb,
        frame.width,
        frame.height,
        detections,
        &f.matched,
        shared.settings.jpeg_quality,
    )
    .unwrap_or_else(|e| {
        // The finding matters more than its images: it is stored, marked as missing them.
        error!(camera = %c.id, rule = %f.rule_id, error = %e, "writing evidence failed; the finding is stored without images");
        crate::evidence::missing(
            frame.received_at,
            frame.width,
            frame.height,
            detections,
            &f.matched,
            &e,
        )
    });
    let site = c.site.to_string();
    let best =
        f.matched.iter().filter_map(|&i| detections.get(i)).map(|d| d.score).fold(0.0, f32::max);
    FindingHit {
        dedup_key: FindingHit::key(&site, c.id.as_str(), &f.rule_id, "detection"),
        camera_id: Some(c.id.to_string()),
        device_id: None,
        rule: f.rule_id.clone(),
        kind: "detection".into(),
        severity: f.severity,
        item_code: Some(f.item_code.clone()),
        region: shared.registry.sites.get(&site).map(|s| s.region.clone()),
        summary: format!(
            "{}: {}",
            if c.name.trim().is_empty() { c.id.as_str() } else { &c.name },
            f.summary
        ),
        first_seen: f.since.min(frame.received_at),
        last_seen: frame.received_at,
        count: 1,
        last_value: Some(f.count as f64),
        details: serde_json::json!({ "count": f.count, "best_score": best, "since": f.since })
            .to_string(),
        evidence: vec![evidence],
        site_id: site,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Runs `f` on its own thread; None when it takes over a second (a thread stuck on a
    /// lock is left behind, so the test fails instead of hanging).
    fn within_a_second<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_and_the_monitor_answer_while_a_worker_waits_for_a_full_writer_queue() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let data = root.join("../shared/data");
        let img = data.join("images/intel_worker-zone_f30.jpg");
        assert!(
            img.is_file(),
            "{} is missing: the shared models and images live in ../shared/data beside the project",
            img.display()
        );
        let mut dec = jpeg_decoder::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&img).expect("the image"),
        ));
        let rgb = dec.decode().expect("a JPEG");
        let info = dec.info().expect("JPEG info");
        let lib = ModelLibrary::load(
            inference::library::BUILTIN,
            &[root.join("models"), data.join("models")],
            &inference::library::LoadOptions { sessions: 1, threads: 1 },
        );
        assert!(lib.get("fastestdet").is_ok(), "fastestdet loads from ../shared/data/models");
        let dir = std::env::temp_dir().join(format!("hub-cameras-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let store = Store::connect("sqlite://hub.db", &dir, 1).await.expect("a SQLite store");
        // The writer's queue is full and nobody reads it: a firing worker waits on it.
        let (writer, _unread) = mpsc::channel(1);
        writer.try_send(Batch::default()).expect("room for one batch");
        let settings = VisionSettings {
            queue: 4,
            workers: 1,
            batch: 1,
            utc_offset_s: 0,
            jpeg_quality: 80,
            evidence_dir: dir.join("evidence"),
            evidence_retention: Duration::from_secs(86400),
            live_linger: Duration::from_secs(20),
        };
        let registry = Arc::new(Registry::new(&[], BTreeMap::new()));
        let metrics = Metrics::new();
        let (cams, _workers) =
            CameraManager::new(settings, Arc::new(lib), registry, store, writer, &metrics);
        let spec: config::Camera = toml::from_str(
            r#"
            id = "cam"
            site = "s1"
            url = "rtsp://127.0.0.1:9/none"
            enabled = false
            [[rules]]
            id = "person"
            model = "fastestdet"
            labels = ["person"]
            min_score = 0.3
            severity = "major"
            item_code = "11610100000001"
            "#,
        )
        .expect("a camera");
        cams.put(spec, "api", 0);
        let frame = Frame {
            camera: common::CameraId::new("cam").expect("an id"),
            width: u32::from(info.width),
            height: u32::from(info.height),
            rgb: rgb.into(),
            received_at: now_ms(),
            pts: None,
        };
        let frames = lock(&cams.shared.frames).clone().expect("running");
        frames.send(frame).await.expect("the frame queued");

        // The rule fires; the worker now waits for the writer. Every look is bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = cams.clone();
            let list = within_a_second(move || c.list()).expect("GET /api/v1/cameras blocked");
            if list[0].stats.firings >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "no firing: {:?}", list[0].stats);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            let c = cams.clone();
            let one = within_a_second(move || c.get("cam")).expect("GET a camera blocked");
            assert_eq!(one.expect("the camera").stats.firings, 1);
            let c = cams.clone();
            let snap = within_a_second(move || c.snapshot("cam")).expect("a snapshot blocked");
            assert!(snap.is_ok(), "{snap:?}");
            let c = cams.clone();
            within_a_second(move || c.watch_cameras()).expect("the offline monitor blocked");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
