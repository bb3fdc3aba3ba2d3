//! The `gstreamer` RTSP client: one GStreamer pipeline per camera on its own thread, for cameras
//! the native client cannot talk to:
//!
//! ```text
//! rtspsrc (TCP) ! rtph264depay ! h264parse ─┬─ relay only (`off`): nothing decoded
//!                                           └─ identity drop-buffer-flags=delta-unit
//!                                              ! avdec_h264 max-threads=1 ! videoconvert ! RGB appsink
//! ```

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::metrics::Counter;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::info;

use crate::source::*;

enum Ended {
    Stopped,
    Failed(String),
}

pub(crate) fn run(
    spec: CameraSpec,
    frames: mpsc::Sender<Frame>,
    dropped: Arc<Counter>,
    health: Arc<Mutex<Health>>,
    stop: std_mpsc::Receiver<()>,
) {
    if !gst_ready(&health) {
        return;
    }
    let mut backoff = camera_backoff();
    loop {
        lock(&health).state = CameraState::Connecting;
        match run_once(&spec, &frames, &dropped, &health, &stop) {
            Ended::Stopped => break,
            Ended::Failed(why) => on_failure(&spec, &health, why),
        }
        match stop.recv_timeout(backoff.next()) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    lock(&health).state = CameraState::Stopped;
}

fn launch(spec: &CameraSpec) -> String {
    let src = format!(
        "rtspsrc name=src location=\"{}\" protocols=tcp latency={} ! rtph264depay ! \
         h264parse name=parse{}",
        spec.url,
        spec.latency_ms,
        // The live view takes AVC access units (4-byte lengths, avcC in the caps).
        if spec.live.is_some() { " ! video/x-h264,stream-format=avc,alignment=au" } else { "" }
    );
    match (spec.analysis, decode_chain(spec.analysis)) {
        (_, None) => format!("{src} ! fakesink sync=false"),
        (Analysis::Keyframes, Some(chain)) => {
            format!("{src} ! identity drop-buffer-flags=delta-unit ! {chain}")
        }
        (_, Some(chain)) => format!("{src} ! {chain}"),
    }
}

/// Input statistics of one connection that health does not show as such, updated by a pad
/// probe on the parser's output (unit and key-frame counts go straight into the health).
#[derive(Default)]
struct Input {
    bytes: u64,
    last_unit: Option<Instant>,
}

fn run_once(
    spec: &CameraSpec,
    frames: &mpsc::Sender<Frame>,
    dropped: &Arc<Counter>,
    health: &Arc<Mutex<Health>>,
    stop: &std_mpsc::Receiver<()>,
) -> Ended {
    let pipeline = match gst::parse::launch(&launch(spec)) {
        Ok(p) => match p.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(_) => return Ended::Failed("not a pipeline".into()),
        },
        Err(e) => return Ended::Failed(format!("building the pipeline: {e}")),
    };
    let input = Arc::new(Mutex::new(Input::default()));
    if let Some(pad) = pipeline.by_name("parse").and_then(|p| p.static_pad("src")) {
        let (input, health) = (input.clone(), health.clone());
        let live = spec.live.clone();
        // The caps the live view was last given: other caps are new parameters (an equal caps
        // object again is not; the comparison starts with the pointers).
        let given: Mutex<Option<gst::Caps>> = Mutex::new(None);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let (Some(tap), Some(b)) = (&live, info.buffer()) {
                let caps = pad.current_caps();
                let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
                if caps != *given {
                    if let Some(st) = caps.as_ref().and_then(|c| c.structure(0))
                        && let (Ok(cd), Ok(w), Ok(h)) = (
                            st.get::<gst::Buffer>("codec_data"),
                            st.get::<i32>("width"),
                            st.get::<i32>("height"),
                        )
                        && let Ok(m) = cd.map_readable()
                    {
                        tap.0.parameters(&m, w.max(0) as u32, h.max(0) as u32);
                    }
                    *given = caps;
                }
                drop(given);
                if let (Some(pts), Ok(m)) = (b.pts(), b.map_readable()) {
                    let ticks = (u128::from(pts.nseconds()) * 90_000 / 1_000_000_000) as i64;
                    tap.0.unit(!b.flags().contains(gst::BufferFlags::DELTA_UNIT), ticks, &m);
                }
            }
            if let Some(b) = info.buffer() {
                {
                    let mut i = input.lock().unwrap_or_else(|e| e.into_inner());
                    i.bytes += b.size() as u64;
                    i.last_unit = Some(Instant::now());
                }
                // Counted at once (not at the next health tick), across reconnects.
                let mut h = lock(&health);
                h.frames_in += 1;
                if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    h.keyframes_in += 1;
                    h.last_keyframe_at = Some(now_ms());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    if let Some(sink) = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok())
    {
        send_frames_to(&sink, spec.id.clone(), frames.clone(), dropped.clone(), health.clone());
    }
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        let _ = pipeline.set_state(gst::State::Null);
        return Ended::Failed(format!("starting: {e}"));
    }
    let Some(bus) = pipeline.bus() else {
        let _ = pipeline.set_state(gst::State::Null);
        return Ended::Failed("no bus".into());
    };
    let started = Instant::now();
    let units_at_start = lock(health).frames_in;
    let (mut last_tick, mut last_units, mut last_bytes) = (Instant::now(), units_at_start, 0u64);
    let ended = loop {
        if stop.try_recv().is_ok() {
            break Ended::Stopped;
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let detail = e.debug().map(|d| d.to_string()).unwrap_or_default();
                    let first = detail.lines().last().unwrap_or("").to_owned();
                    break Ended::Failed(format!("{} ({first})", e.error()));
                }
                gst::MessageView::Eos(_) => break Ended::Failed("end of stream".into()),
                _ => {}
            }
        }
        let (bytes, last_unit) = {
            let i = input.lock().unwrap_or_else(|e| e.into_inner());
            (i.bytes, i.last_unit)
        };
        match last_unit {
            None if started.elapsed() > CONNECT_TIMEOUT => {
                break Ended::Failed(format!("no data within {CONNECT_TIMEOUT:?}"));
            }
            Some(t) if t.elapsed() > spec.stall_timeout => {
                break Ended::Failed(format!("stalled: no data for {:?}", spec.stall_timeout));
            }
            _ => {}
        }
        let mut h = lock(health);
        if last_unit.is_some() && h.state != CameraState::Online {
            info!(camera = %spec.id, "camera online");
            h.state = CameraState::Online;
            h.last_error = None;
        }
        let dt = last_tick.elapsed();
        if dt >= Duration::from_secs(1) {
            let units = h.frames_in;
            h.input_fps = (units - last_units) as f64 / dt.as_secs_f64();
            h.bitrate = (bytes - last_bytes) as f64 * 8.0 / dt.as_secs_f64();
            (last_tick, last_units, last_bytes) = (Instant::now(), units, bytes);
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    ended
}
