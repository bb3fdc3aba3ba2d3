//! Camera sources. Two RTSP clients, chosen per camera ([`RtspClient`]):
//!
//! - `native` (the default, [`crate::native`]): retina receives on a small shared async
//!   runtime; only the access units analysis needs go to a GStreamer decoder
//!   (`appsrc ! avdec_h264 ! videoconvert ! RGB appsink`). About a fifth of rtspsrc's receiving CPU.
//! - `gstreamer`: one whole GStreamer pipeline per camera on its own thread, for cameras the
//!   native client cannot talk to:
//!
//! ```text
//! rtspsrc (TCP) ! rtph264depay ! h264parse ─┬─ relay only (`off`): nothing decoded
//!                                           └─ identity drop-buffer-flags=delta-unit
//!                                              ! avdec_h264 max-threads=1 ! videoconvert ! RGB appsink
//! ```
//!
//! Analysis decodes as little as possible: `keyframes` (the default) drops every delta unit
//! before the decoder, so about one frame per GOP is decoded; `fps = N` decodes everything and
//! keeps N frames a second; `off` decodes nothing. Decoded frames go to a bounded queue with
//! `try_send`: when analysis is behind, frames are dropped and counted, and ingest never waits.
//! Decoders run one thread each: with many cameras the parallelism is across cameras, and a
//! frame-threaded decoder would hold key frames back (one per thread) before emitting them.
//!
//! A camera reconnects with backoff and jitter after an error, an end of stream, or a stall
//! (no data for the camera's [`CameraSpec::stall_timeout`]), and keeps its health (state, input fps, last key frame, last error
//! with credentials redacted). A dead camera never blocks another: each has its own thread and
//! pipeline.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use common::CameraId;
use common::metrics::Counter;
use tokio::sync::mpsc;

use crate::source::lock;
pub use crate::source::{
    Analysis, CONNECT_TIMEOUT, CameraSpec, CameraState, DEFAULT_STALL_TIMEOUT, Frame, Health,
    MAX_BACKOFF, RtspClient, redact,
};

/// How a camera runs.
enum Runner {
    Thread { stop: std_mpsc::Sender<()>, thread: Option<std::thread::JoinHandle<()>> },
    Task(crate::native::Task),
}

/// A running camera source.
pub struct Camera {
    pub spec_id: CameraId,
    health: Arc<Mutex<Health>>,
    runner: Runner,
}

impl Camera {
    /// Starts the camera. Frames go to `frames` (dropped and counted when it is full).
    pub fn start(spec: CameraSpec, frames: mpsc::Sender<Frame>, dropped: Arc<Counter>) -> Self {
        let health = Arc::new(Mutex::new(Health::default()));
        let h = health.clone();
        let id = spec.id.clone();
        let runner = match spec.client {
            RtspClient::Native => {
                Runner::Task(crate::native::Task::start(spec, frames, dropped, h))
            }
            RtspClient::Gstreamer => {
                let (stop, stop_rx) = std_mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name(format!("camera-{}", spec.id))
                    .spawn(move || crate::gst_client::run(spec, frames, dropped, h, stop_rx))
                    .expect("spawning a camera thread");
                Runner::Thread { stop, thread: Some(thread) }
            }
        };
        Camera { spec_id: id, health, runner }
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Stops the camera and waits until its pipeline is torn down.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        match &mut self.runner {
            Runner::Thread { stop, thread } => {
                let _ = stop.send(());
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Runner::Task(task) => task.stop(),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.halt();
    }
}
