//! The configuration schema. Every struct refuses unknown fields; defaults live in the `Default`
//! impls and `default_*` functions of this file only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{CameraId, DeviceId, Industry, Severity, SiteId};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the hub keeps its own files (SQLite database, evidence, demo credentials).
    pub data_dir: PathBuf,
    pub http: Http,
    pub database: Database,
    pub mqtt: Mqtt,
    pub pipeline: Pipeline,
    pub models: Models,
    /// Supervised sites.
    pub sites: Vec<Site>,
    /// Per device kind settings (inactivity timeout); keys are kind names used by `devices[].kind`.
    pub device_kinds: BTreeMap<String, DeviceKind>,
    /// Devices known from the file; more can be registered through the API.
    pub devices: Vec<Device>,
    /// Rules that turn readings into findings.
    pub rules: Vec<Rule>,
    /// Where new findings are reported besides the database.
    pub outputs: Vec<Output>,
    /// Video analysis shared by all cameras: queue, workers, evidence.
    pub vision: Vision,
    /// RTSP cameras known from the file; more can be added through the API.
    pub cameras: Vec<Camera>,
    /// Supervision records: which verified findings become records, deadlines, attachments.
    pub records: Records,
    /// Delivery of record events to departments' endpoints.
    pub delivery: Delivery,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            http: Http::default(),
            database: Database::default(),
            mqtt: Mqtt::default(),
            pipeline: Pipeline::default(),
            models: Models::default(),
            sites: Vec::new(),
            device_kinds: BTreeMap::new(),
            devices: Vec::new(),
            rules: Vec::new(),
            outputs: Vec::new(),
            vision: Vision::default(),
            cameras: Vec::new(),
            records: Records::default(),
            delivery: Delivery::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address of the HTTP API and UI. Env `HUB_HTTP_LISTEN` overrides.
    pub listen: String,
    /// A login session ends after this long without a request.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A login session ends this long after the login, whatever its use (a duty shift).
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Set when a TLS-terminating proxy serves the hub: session cookies then carry `Secure`.
    pub secure_cookies: bool,
    /// Failed logins of one username within `login_window` before further attempts of it are
    /// refused (429) until the window has passed.
    pub login_failures_per_user: u32,
    /// The same per client address.
    pub login_failures_per_address: u32,
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Address ranges (CIDR) that cameras added through the API may point at; a host name
    /// is resolved and every address must lie within. The hub must not be usable to probe
    /// other hosts of its network.
    pub camera_networks: Vec<String>,
    /// A live video socket or event stream re-checks its caller's credential this often: a
    /// logout, revocation, expiry, disabled account or changed scope ends it within this.
    #[serde(with = "humantime_serde")]
    pub stream_recheck: Duration,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            session_idle: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            login_failures_per_user: 5,
            login_failures_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            max_body_bytes: 1 << 20,
            stream_recheck: Duration::from_secs(30),
            camera_networks: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://PATH` (created when missing; relative paths are under `data_dir`) or
    /// `postgres://user@host:port/db`. Env `HUB_DATABASE_URL` overrides.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// Readings older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub readings_retention: Duration,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: "sqlite://hub.db".into(),
            max_connections: 8,
            readings_retention: Duration::from_secs(7 * 86400),
        }
    }
}

/// Embedded broker (default) or an external one such as Mosquitto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttMode {
    Embedded,
    External,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    pub mode: MqttMode,
    /// Embedded mode: address devices connect to (MQTT 3.1.1).
    pub listen: String,
    /// External mode: `mqtt://host:port` of the broker. Env `HUB_MQTT_URL` overrides.
    pub url: Option<String>,
    /// External mode: client id of this hub process (unique per process).
    pub client_id: String,
    /// External mode: shared-subscription group; hubs in one group split the devices' messages.
    pub shared_group: String,
    /// External mode credentials. Env `HUB_MQTT_PASSWORD` overrides the password.
    pub username: Option<String>,
    pub password: Option<String>,
    /// External mode, Mosquitto: a client with the dynamic-security plugin's admin role. When
    /// set, the hub creates a device's broker account (username = device id, its secret, its
    /// own topics only) when the device is registered through the API and deletes it when the
    /// device is removed. Env `HUB_MQTT_DYNSEC_PASSWORD` overrides the password.
    pub dynsec_username: Option<String>,
    pub dynsec_password: Option<String>,
    /// Largest accepted payload in bytes; larger messages are dropped and counted.
    pub max_payload: usize,
    /// Embedded mode: most device connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Embedded mode: new connections per second one source address may open (token bucket);
    /// more are closed at accept.
    pub connections_per_ip_per_second: f64,
    /// Embedded mode: connections one source address may open at once above that rate.
    pub connection_burst: u32,
    /// Embedded mode: after repeated wrong secrets (more than 3 for a device id, 10 from a source
    /// address), the id or address is refused without checking for this long, doubling with each
    /// further failure.
    #[serde(with = "humantime_serde")]
    pub login_failure_delay: Duration,
    /// Embedded mode: the longest such delay.
    #[serde(with = "humantime_serde")]
    pub login_failure_max_delay: Duration,
}

impl Default for Mqtt {
    fn default() -> Self {
        Self {
            mode: MqttMode::Embedded,
            listen: "127.0.0.1:1883".into(),
            url: None,
            client_id: "hub-1".into(),
            shared_group: "hub".into(),
            username: None,
            password: None,
            dynsec_username: None,
            dynsec_password: None,
            max_payload: 16 * 1024,
            max_connections: 10_000,
            connections_per_ip_per_second: 20.0,
            connection_burst: 100,
            login_failure_delay: Duration::from_secs(1),
            login_failure_max_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Capacity of the queue between MQTT and the reading processor. When full, the MQTT
    /// receiver waits (readings are never dropped inside the hub; the broker buffers).
    pub queue: usize,
    /// Most messages the processor takes in one batch. It takes what is queued, without
    /// waiting for more, so batches grow with load and latency stays low when idle.
    pub batch_max: usize,
    /// A reading whose `ts` is further ahead of the hub's clock than this is refused
    /// (`ts_out_of_window`): one reading from a device with a wrong clock would otherwise hold
    /// that device's rules until the clock catches up.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew_ahead: Duration,
    /// A reading whose `ts` is older than this (by the hub's clock) is refused
    /// (`ts_out_of_window`).
    #[serde(with = "humantime_serde")]
    pub max_reading_age: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            queue: 16384,
            batch_max: 4096,
            max_clock_skew_ahead: Duration::from_secs(5 * 60),
            max_reading_age: Duration::from_secs(7 * 86400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    /// Directories searched, in order, for model folders (a `manifest.toml`, one or two levels
    /// down) and for model files a manifest names but does not hold (e.g. a mirror of published
    /// models such as `../shared/data/models`). Relative paths are taken from the working
    /// directory. The project's own sensor models are built into the binary.
    pub search_path: Vec<PathBuf>,
    /// How often the search path is checked for new, changed or removed model files; detection
    /// models are then reloaded without a restart (cameras pick them up at their next frame).
    /// `"0s"` turns watching off.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for Models {
    fn default() -> Self {
        Self { search_path: Vec::new(), reload_interval: Duration::from_secs(2) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    /// 6-digit administrative region code (GB/T 2260), e.g. `610100`.
    pub region: String,
    pub industry: Industry,
    /// Name of the regulated entity operating the site.
    pub entity_name: String,
    /// Its unified social credit code (GB 32100), check character verified.
    pub uscc: String,
    /// The integrator (a hub username with the `integrator` role) who manages the site's
    /// devices and cameras, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrator: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceKind {
    /// What the kind is, for people.
    #[serde(default)]
    pub description: String,
    /// A device of this kind silent for this long is marked offline (and an offline finding
    /// raised).
    #[serde(with = "humantime_serde")]
    pub inactivity_timeout: Duration,
    /// Severity of the offline finding.
    #[serde(default = "default_offline_severity")]
    pub offline_severity: Severity,
    /// Supervision item code of the offline finding (14 digits), if it maps to one.
    #[serde(default)]
    pub offline_item_code: Option<String>,
}

fn default_offline_severity() -> Severity {
    Severity::Minor
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Device id; also its MQTT username.
    pub id: DeviceId,
    pub site: SiteId,
    /// A key of `device_kinds`.
    pub kind: String,
    #[serde(default)]
    pub name: String,
    /// The device's secret as an argon2 PHC string (`$argon2id$v=19$…`); `hub device hash`
    /// makes one. Plain secrets are never stored.
    pub secret_hash: String,
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleType {
    /// `metric` above `above` or below `below` for at least `for`.
    Threshold,
    /// `metric` changes faster than `max_per_minute` (absolute) over `window`.
    RateOfChange,
    /// `metric` stays within `tolerance` for `window` (a stuck sensor).
    Flatline,
    /// One reading `z` standard deviations away from the previous `samples` readings.
    Spike,
    /// A sensor anomaly model from the model library scores a window of readings.
    Model,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique rule id; part of a finding's key.
    pub id: String,
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    /// Device kinds the rule applies to.
    pub device_kinds: Vec<String>,
    /// The metric (a key of the telemetry `values`); for `model` rules the model names it.
    #[serde(default)]
    pub metric: Option<String>,
    /// threshold: fire when the value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// threshold: fire when the value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// threshold: how long (event time) the condition must hold; 0 fires on the first reading.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
    /// rate_of_change: largest allowed change per minute (absolute).
    #[serde(default)]
    pub max_per_minute: Option<f64>,
    /// rate_of_change and flatline: the time window looked at.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// flatline: largest max−min spread still counted as stuck.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// spike: readings in the reference window.
    #[serde(default)]
    pub samples: Option<usize>,
    /// spike: how many standard deviations from the reference mean count as a spike.
    #[serde(default)]
    pub z: Option<f64>,
    /// model: the model's name in the library.
    #[serde(default)]
    pub model: Option<String>,
    /// model: score every n-th reading of a device (1 = every reading).
    #[serde(default)]
    pub every: Option<u32>,
    pub severity: Severity,
    /// Supervision item code (14 digits) the finding maps to.
    pub item_code: String,
    /// Short text for operators; defaults to a description of the condition.
    #[serde(default)]
    pub summary: Option<String>,
}

/// Kinds of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// One structured log line per new finding.
    Log,
    /// One JSON line per new finding, appended to `path`.
    Jsonl,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    #[serde(rename = "type")]
    pub output_type: OutputType,
    /// jsonl: the file (relative paths are under `data_dir`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Only findings at least this severe.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_min_severity() -> Severity {
    Severity::Info
}

/// Video analysis settings shared by every camera.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vision {
    /// Decoded frames waiting for analysis, all cameras together. When the queue is full a
    /// camera's new frame is dropped and counted (`frames_dropped` in its health); ingest never
    /// waits for analysis.
    pub queue: usize,
    /// Analysis worker threads. Each runs the models of the frames it takes.
    pub workers: usize,
    /// Pooled ONNX Runtime sessions per model, shared by all cameras.
    pub sessions: usize,
    /// Intra-op threads of each session.
    pub threads: usize,
    /// Most frames a worker takes from the queue at once (frames of different cameras). 1 is
    /// fastest on a small CPU; larger values trade latency for throughput on accelerators.
    pub batch: usize,
    /// Offset of local time from UTC used by camera rules' `time_windows`, e.g. `"+08:00"`.
    pub utc_offset: String,
    /// JPEG quality of evidence and snapshots (1–100).
    pub jpeg_quality: u8,
    /// Evidence images (and their rows) older than this are deleted; the findings stay.
    #[serde(with = "humantime_serde")]
    pub evidence_retention: Duration,
    /// A camera pulled on demand (relay-only, `pull = "auto"`) is disconnected this long after
    /// its last live viewer leaves (a viewer coming back within it finds the picture at once).
    #[serde(with = "humantime_serde")]
    pub live_linger: Duration,
}

impl Default for Vision {
    fn default() -> Self {
        Self {
            queue: 64,
            workers: 1,
            sessions: 1,
            threads: 1,
            batch: 1,
            utc_offset: "+08:00".into(),
            jpeg_quality: 85,
            evidence_retention: Duration::from_secs(90 * 86400),
            live_linger: Duration::from_secs(20),
        }
    }
}

/// When a camera is connected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PullMode {
    /// An analysed camera always; a relay-only one (`analysis = "off"`) only while someone
    /// watches it live, stopped `vision.live_linger` after the last viewer leaves.
    #[default]
    Auto,
    /// Always, even relay-only (its outages are then watched and raise findings).
    Always,
}

/// How much of a camera's stream is decoded for analysis.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMode {
    /// Decode key frames only (about one frame per GOP); the cheapest way to analyse.
    #[default]
    Keyframes,
    /// Decode every frame and keep `fps` frames a second.
    Fps,
    /// Relay only: nothing is decoded and no rule runs.
    Off,
}

/// The RTSP client of a camera.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RtspClient {
    /// The hub's own client (retina): receives on a shared async runtime, hands GStreamer only
    /// the frames it decodes. About a fifth of rtspsrc's receiving CPU.
    #[default]
    Native,
    /// GStreamer's rtspsrc: one whole pipeline per camera, for cameras the native client
    /// cannot talk to.
    Gstreamer,
}

impl RtspClient {
    pub fn as_str(self) -> &'static str {
        match self {
            RtspClient::Native => "native",
            RtspClient::Gstreamer => "gstreamer",
        }
    }
}

impl std::str::FromStr for RtspClient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [RtspClient::Native, RtspClient::Gstreamer]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("{s:?}: expected native or gstreamer"))
    }
}

impl std::fmt::Display for RtspClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RTSP camera.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub id: CameraId,
    pub site: SiteId,
    #[serde(default)]
    pub name: String,
    /// `rtsp://[user:password@]host[:port]/path` (H.264). The credentials never appear in logs
    /// or API responses.
    #[schemars(regex(pattern = CAMERA_URL_PATTERN))]
    pub url: String,
    /// Which RTSP client pulls the camera.
    #[serde(default)]
    pub rtsp_client: RtspClient,
    /// rtspsrc jitter-buffer latency in milliseconds (`rtsp_client = "gstreamer"` only); ~1000
    /// keeps frames when many cameras share a small CPU.
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u32,
    /// A camera that delivered nothing for this long gets one `camera-offline` finding, cleared
    /// with the outage's duration when the camera is back. Shorter pauses (the end of a clip
    /// loop, a brief network drop) only reconnect.
    #[serde(default = "default_offline_after", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub offline_after: Duration,
    /// A connected camera that delivered nothing for this long is reconnected.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stall_timeout: Duration,
    #[serde(default)]
    pub analysis: AnalysisMode,
    /// `analysis = "fps"`: frames analysed per second.
    #[serde(default)]
    pub fps: Option<u32>,
    /// Skip inference while the scene is still: the mean absolute difference (0–255) of a
    /// small grayscale copy against its running average must reach this. Unset = always analyse.
    #[serde(default)]
    pub motion_threshold: Option<f32>,
    /// `auto`: relay-only cameras are pulled only while watched; `always`: always.
    #[serde(default)]
    pub pull: PullMode,
    /// A stopped camera is kept in the list but not pulled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Named polygons in normalised frame coordinates (0–1, origin top left).
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Detections to findings.
    #[serde(default)]
    pub rules: Vec<CameraRule>,
}

/// What `validate` accepts as a camera URL (rtsp:// or rtsps://, a host, no spaces or quotes),
/// as a regular expression for the HTTP API's OpenAPI document.
pub const CAMERA_URL_PATTERN: &str = r#"^rtsps?://[^/\s"][^\s"]*$"#;

fn default_latency_ms() -> u32 {
    1000
}

fn default_offline_after() -> Duration {
    Duration::from_secs(30)
}

/// A connected camera that delivered nothing for this long is reconnected, unless
/// `cameras[].stall_timeout` says otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

fn default_stall_timeout() -> Duration {
    DEFAULT_STALL_TIMEOUT
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// At least three `[x, y]` points, normalised to the frame (0–1).
    pub polygon: Vec<[f32; 2]>,
}

/// A camera rule: which detections count, where, how many, for how long, and when.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraRule {
    /// Unique within the camera; part of a finding's key.
    pub id: String,
    /// A detection model of the model library.
    pub model: String,
    /// Labels that count (the model's class names); empty = every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Detections below this score do not count.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Only detections whose anchor point (bottom centre of the box) lies in this zone count.
    #[serde(default)]
    pub zone: Option<String>,
    /// Fire when at least this many detections count in one analysed frame.
    #[serde(default = "default_min_count")]
    pub min_count: u32,
    /// The condition must hold this long (over consecutive analysed frames) before firing.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub dwell: Option<Duration>,
    /// …or for this many consecutive analysed frames.
    #[serde(default)]
    pub dwell_frames: Option<u32>,
    /// Local-time windows in which the rule applies, `"HH:MM-HH:MM"` (may wrap midnight, e.g.
    /// `"18:00-06:00"`). Empty = always.
    #[serde(default)]
    pub time_windows: Vec<String>,
    /// After firing, the rule stays quiet this long (the open finding's count still rises).
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
    pub severity: Severity,
    /// Supervision item code (14 digits) the finding maps to.
    pub item_code: String,
    #[serde(default)]
    pub summary: Option<String>,
}

fn default_min_score() -> f32 {
    0.5
}

fn default_min_count() -> u32 {
    1
}

fn default_cooldown() -> Duration {
    Duration::from_secs(60)
}

/// A local-time window `HH:MM-HH:MM` in minutes after midnight; `start > end` wraps midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: u16,
    pub end: u16,
}

impl TimeWindow {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not HH:MM-HH:MM (e.g. \"18:00-06:00\")");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        Ok(Self { start: minutes(a).ok_or_else(bad)?, end: minutes(b).ok_or_else(bad)? })
    }

    /// Whether `minute` (0–1439, local) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// `"+08:00"` → seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let bad = || format!("{s:?} is not an offset like \"+08:00\" or \"-05:30\"");
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let (h, m) = s[1..].split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m >= 60 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Supervision records (docs/records.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Records {
    /// Verified findings of these severities become records at once (in the verdict's
    /// transaction); others wait for the duty room's "create record".
    pub auto_severities: Vec<Severity>,
    /// Verified findings of these supervision items become records at once.
    pub auto_items: Vec<String>,
    /// Deadlines by severity, used when the item's catalogue entry gives none.
    pub deadlines: Deadlines,
    /// How often the deadline monitor looks for overdue records.
    #[serde(with = "humantime_serde")]
    pub deadline_check: Duration,
    /// Largest attachment (result photo, file) accepted, in bytes.
    pub attachment_max_bytes: usize,
}

impl Default for Records {
    fn default() -> Self {
        Self {
            auto_severities: Vec::new(),
            auto_items: Vec::new(),
            deadlines: Deadlines::default(),
            deadline_check: Duration::from_secs(30),
            attachment_max_bytes: 8 << 20,
        }
    }
}

/// Claim and close deadlines per severity.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    pub critical: Deadline,
    pub major: Deadline,
    pub minor: Deadline,
    pub info: Deadline,
}

impl Deadlines {
    pub fn of(&self, s: Severity) -> &Deadline {
        match s {
            Severity::Critical => &self.critical,
            Severity::Major => &self.major,
            Severity::Minor => &self.minor,
            Severity::Info => &self.info,
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        let d = |claim: u64, close: u64| Deadline {
            claim: Duration::from_secs(claim),
            close: Duration::from_secs(close),
        };
        Self {
            critical: d(30 * 60, 24 * 3600),
            major: d(2 * 3600, 3 * 86400),
            minor: d(24 * 3600, 7 * 86400),
            info: d(3 * 86400, 30 * 86400),
        }
    }
}

/// A record must be claimed within `claim` of its distribution and closed within `close` of
/// its creation; past either it is escalated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    #[serde(with = "humantime_serde")]
    pub claim: Duration,
    #[serde(with = "humantime_serde")]
    pub close: Duration,
}

/// Push delivery of record events (Standard Webhooks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Networks (CIDR) endpoint addresses must lie in; a URL whose host resolves elsewhere is
    /// refused when the subscription is made and at every attempt. Department systems sit on
    /// government intranets: the default is loopback and the private ranges.
    pub networks: Vec<String>,
    /// Each attempt's limit (connect, send, answer).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deliveries in flight at once, per hub.
    pub concurrency: usize,
    /// A claimed delivery's lease: another hub takes it over when this one has not finished
    /// it by then (a crashed worker). Longer than `timeout`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the worker looks for due deliveries besides being woken by this hub's own
    /// changes (other hubs' events, retries, expired leases).
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// The old secret keeps signing beside the new one this long after a rotation.
    #[serde(with = "humantime_serde")]
    pub rotation_overlap: Duration,
    /// A subscription whose deliveries only failed for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            networks: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
            timeout: Duration::from_secs(15),
            concurrency: 64,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            rotation_overlap: Duration::from_secs(86400),
            disable_after: Duration::from_secs(5 * 86400),
        }
    }
}
