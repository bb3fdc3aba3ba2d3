//! What both RTSP clients share: the camera's spec and health, backoff, failure handling, and
//! the GStreamer decoder chain that turns access units into RGB frames on the analysis queue.
//! [`crate::camera`] runs a client; [`crate::native`] and [`crate::gst_client`] use this module
//! and nothing of each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::metrics::Counter;
use common::{CameraId, UnixMs};
use gstreamer as gst;
use gstreamer_app as gst_app;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

/// A connected camera that delivered nothing for this long is restarted, unless its spec says
/// otherwise ([`CameraSpec::stall_timeout`]): the configuration's default.
pub use config::DEFAULT_STALL_TIMEOUT;
/// Connecting (until the first data) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between a camera's reconnection attempts (before jitter): a camera is back
/// within about a second of its server's return, plus the RTSP set-up.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A camera's reconnection delays: 250 ms doubling up to [`MAX_BACKOFF`].
pub(crate) fn camera_backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(250), MAX_BACKOFF)
}

/// How much of a camera's stream is decoded for analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// Decode key frames only.
    Keyframes,
    /// Decode everything, keep this many frames a second.
    Fps(u32),
    /// Relay only: no decoder at all.
    Off,
}

/// Which RTSP client pulls a camera: the configuration's own type (`native`: see
/// [`crate::native`]; `gstreamer`: one rtspsrc pipeline and thread per camera).
pub use config::RtspClient;

/// What a camera source needs.
#[derive(Debug, Clone)]
pub struct CameraSpec {
    pub id: CameraId,
    /// `rtsp://[user:pass@]host[:port]/path`; the credentials never reach logs or health.
    pub url: String,
    /// rtspsrc's jitter buffer (the `gstreamer` client only: over TCP the native client needs
    /// none).
    pub latency_ms: u32,
    pub analysis: Analysis,
    pub client: RtspClient,
    /// A connected camera that delivered nothing for this long is reconnected.
    pub stall_timeout: Duration,
    /// Where the camera's access units go, undecoded, for live viewing.
    pub live: Option<LiveTap>,
}

/// Receives a camera's access units as they arrive, undecoded, to relay them to viewers.
pub trait LiveSink: Send + Sync {
    /// The stream's decoder configuration (the body of an `avcC` box) and picture size: at the
    /// start of each connection and whenever the camera changes its parameters.
    fn parameters(&self, avcc: &[u8], width: u32, height: u32);
    /// One access unit in AVC format (4-byte NAL lengths); `pts` in 90 kHz ticks since the
    /// connection's first unit.
    fn unit(&self, key: bool, pts: i64, data: &[u8]);
}

/// A [`LiveSink`] in a camera's spec.
#[derive(Clone)]
pub struct LiveTap(pub std::sync::Arc<dyn LiveSink>);

impl std::fmt::Debug for LiveTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTap")
    }
}

/// A decoded frame for analysis: RGB, tightly packed.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera: CameraId,
    pub width: u32,
    pub height: u32,
    /// The GStreamer buffer's memory, mapped (no copy).
    pub rgb: Bytes,
    pub received_at: UnixMs,
    /// The camera's timestamp of the frame (90 kHz ticks, as [`LiveSink::unit`]'s); aligns
    /// analysis results with the live view.
    pub pts: Option<i64>,
}

/// Connection state of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Connecting,
    Online,
    Offline,
    Stopped,
    /// Pulled on demand and not pulled now: nobody watches it (no connection, not an outage).
    Idle,
}

/// A camera's health, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub state: CameraState,
    /// Input access units per second (all frames, decoded or not).
    pub input_fps: f64,
    /// Input bits per second.
    pub bitrate: f64,
    /// Input access units since the camera started (every connection), counted as they arrive.
    pub frames_in: u64,
    /// Key frames among `frames_in`.
    pub keyframes_in: u64,
    pub frames_decoded: u64,
    pub frames_dropped: u64,
    pub last_keyframe_at: Option<UnixMs>,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: CameraState::Connecting,
            input_fps: 0.0,
            bitrate: 0.0,
            frames_in: 0,
            keyframes_in: 0,
            frames_decoded: 0,
            frames_dropped: 0,
            last_keyframe_at: None,
            last_error: None,
            reconnects: 0,
        }
    }
}

/// `rtsp://user:secret@host/x` → `rtsp://user:***@host/x`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme_end], &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

pub(crate) fn now_ms() -> UnixMs {
    crate::now_ms()
}

pub(crate) fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health.lock().unwrap_or_else(|e| e.into_inner())
}

/// Initialises GStreamer (once per process); a failure is the camera's last error.
pub(crate) fn gst_ready(health: &Mutex<Health>) -> bool {
    match gst::init() {
        Ok(()) => true,
        Err(e) => {
            lock(health).last_error = Some(format!("GStreamer: {e}"));
            false
        }
    }
}

/// A connection ended with `why`: logged and shown in the health with credentials redacted.
pub(crate) fn on_failure(spec: &CameraSpec, health: &Mutex<Health>, why: String) {
    let url = redact(&spec.url);
    let why = why.replace(&spec.url, &url);
    warn!(camera = %spec.id, url = %url, error = %why, "camera failed; reconnecting");
    let mut h = lock(health);
    h.state = CameraState::Offline;
    h.last_error = Some(why);
    h.reconnects += 1;
    h.input_fps = 0.0;
    h.bitrate = 0.0;
}

/// From H.264 access units to RGB frames in `appsink name=sink`: the decoder and what follows
/// it, for both clients (`None` for relay-only cameras).
pub(crate) fn decode_chain(analysis: Analysis) -> Option<String> {
    let sink = "appsink name=sink max-buffers=2 drop=true sync=false";
    match analysis {
        Analysis::Off => None,
        Analysis::Keyframes => Some(format!(
            "avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=RGB ! {sink}"
        )),
        Analysis::Fps(n) => Some(format!(
            "avdec_h264 max-threads=1 ! videorate drop-only=true ! video/x-raw,framerate={n}/1 ! \
             videoconvert ! video/x-raw,format=RGB ! {sink}"
        )),
    }
}

/// Sends what `sink` receives (packed RGB) to the analysis queue: `try_send`, so a full queue
/// drops the frame and counts it, and the pipeline never waits.
pub(crate) fn send_frames_to(
    sink: &gst_app::AppSink,
    id: CameraId,
    frames: mpsc::Sender<Frame>,
    dropped: Arc<Counter>,
    health: Arc<Mutex<Health>>,
) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (w, h) = sample
                    .caps()
                    .and_then(|c| c.structure(0))
                    .and_then(|st| {
                        Some((st.get::<i32>("width").ok()?, st.get::<i32>("height").ok()?))
                    })
                    .unwrap_or((0, 0));
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // The decoder keeps its input's timestamps, the ones the live view was given.
                let pts = buffer
                    .pts()
                    .map(|t| (u128::from(t.nseconds()) * 90_000 / 1_000_000_000) as i64);
                let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let frame = Frame {
                    camera: id.clone(),
                    width: w as u32,
                    height: h as u32,
                    rgb: Bytes::from_owner(mapped),
                    received_at: now_ms(),
                    pts,
                };
                let mut hl = lock(&health);
                hl.frames_decoded += 1;
                if frames.try_send(frame).is_err() {
                    hl.frames_dropped += 1;
                    dropped.inc();
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.5:554/ch1"),
            "rtsp://admin:***@10.0.0.5:554/ch1"
        );
        assert_eq!(redact("rtsp://10.0.0.5/ch1"), "rtsp://10.0.0.5/ch1");
        assert_eq!(redact("rtsp://a:b@c@host/x"), "rtsp://a:***@host/x");
    }
}
