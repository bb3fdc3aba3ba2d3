//! The native RTSP client: [retina](https://docs.rs/retina) receives and depacketises on a small
//! shared async runtime (no threads per camera), and GStreamer decodes only what is analysed.
//!
//! ```text
//! retina (RTSP over TCP, H.264 access units) ─┬─ relay only (`off`): counted, nothing decoded
//!                                              └─ key frames (or all, for `fps`) ─▶ appsrc
//!                                                 ! avdec_h264 max-threads=1 ! videoconvert
//!                                                 ! RGB appsink ─▶ analysis queue
//! ```
//!
//! rtspsrc spends about 0.6 % of a core per 15 fps camera on this platform receiving alone (a
//! jitter buffer, an RTP session and about nine threads per stream); this path spends about
//! 0.12 % (BENCHMARKS.md). TCP delivers in order, so no jitter buffer is needed. The decoder's input is bounded
//! ([`MAX_QUEUED`] access units): beyond it a unit is dropped and counted, never waited for.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::metrics::Counter;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::{CodecItem, ParametersRef, VideoFrame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::source::{
    Analysis, CONNECT_TIMEOUT, CameraSpec, CameraState, Frame, Health, camera_backoff,
    decode_chain, gst_ready, lock, now_ms, on_failure, send_frames_to,
};

/// Access units waiting for the decoder at most; more are dropped and counted.
pub const MAX_QUEUED: u64 = 4;

/// The runtime every native camera runs on: receiving is light, a couple of threads serve
/// hundreds of cameras.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("rtsp")
            .enable_all()
            .build()
            .expect("building the RTSP runtime")
    })
}

/// A running native camera: cancel it, then wait for `done`.
pub(crate) struct Task {
    cancel: CancellationToken,
    done: std_mpsc::Receiver<()>,
}

impl Task {
    pub(crate) fn start(
        spec: CameraSpec,
        frames: mpsc::Sender<Frame>,
        dropped: Arc<Counter>,
        health: Arc<Mutex<Health>>,
    ) -> Task {
        let cancel = CancellationToken::new();
        let (done_tx, done) = std_mpsc::channel();
        let c = cancel.clone();
        runtime().spawn(async move {
            run(spec, frames, dropped, health, c).await;
            let _ = done_tx.send(());
        });
        Task { cancel, done }
    }

    /// Cancels the camera and waits (briefly) until its decoder is torn down.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

async fn run(
    spec: CameraSpec,
    frames: mpsc::Sender<Frame>,
    dropped: Arc<Counter>,
    health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
) {
    if !gst_ready(&health) {
        return;
    }
    let mut backoff = camera_backoff();
    loop {
        lock(&health).state = CameraState::Connecting;
        let why = tokio::select! {
            _ = cancel.cancelled() => break,
            why = session(&spec, &frames, &dropped, &health) => why,
        };
        on_failure(&spec, &health, why);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
    lock(&health).state = CameraState::Stopped;
}

/// `rtsp://user:pass@host/x` → (`rtsp://host/x`, the credentials, percent-decoded).
fn split_credentials(raw: &str) -> Result<(url::Url, Option<Credentials>), String> {
    let mut url =
        url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e}): expected rtsp://…"))?;
    if url.scheme() != "rtsp" {
        return Err(format!("scheme {:?} is not rtsp", url.scheme()));
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let creds = (!url.username().is_empty()).then(|| Credentials {
        username: decode(url.username()),
        password: decode(url.password().unwrap_or("")),
    });
    // Cannot fail for an rtsp URL with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, creds))
}

/// A retina error as one line for the camera's health (its display adds connection and message
/// context on further lines), with what to do for the usual status codes.
fn explain(e: retina::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    match e.status_code() {
        Some(401) => format!(
            "the camera refused the credentials (401 Unauthorized): check the user and password \
             in the URL ({first})"
        ),
        Some(404) => format!("the camera has no stream at this path (404 Not Found): {first}"),
        _ => first,
    }
}

/// One connection: returns why it ended (it never ends by itself otherwise).
async fn session(
    spec: &CameraSpec,
    frames: &mpsc::Sender<Frame>,
    dropped: &Arc<Counter>,
    health: &Arc<Mutex<Health>>,
) -> String {
    let (url, creds) = match split_credentials(&spec.url) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("supervision-hub/{}", env!("CARGO_PKG_VERSION")));
    let connect = async {
        let mut s = Session::describe(url, options).await.map_err(explain)?;
        let video = s
            .streams()
            .iter()
            .position(|st| st.media() == "video" && st.encoding_name() == "h264")
            .ok_or_else(|| {
                let offered: Vec<String> = s
                    .streams()
                    .iter()
                    .map(|st| format!("{}/{}", st.media(), st.encoding_name()))
                    .collect();
                format!(
                    "the camera offers no H.264 video (it offers: {}); configure the camera's \
                     stream as H.264",
                    offered.join(", ")
                )
            })?;
        let setup =
            SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default()));
        s.setup(video, setup).await.map_err(explain)?;
        let playing = s.play(PlayOptions::default()).await.map_err(explain)?;
        Ok::<_, String>((playing.demuxed().map_err(explain)?, video))
    };
    let (mut demuxed, video) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return format!("no data within {CONNECT_TIMEOUT:?}"),
        Ok(Err(e)) => return e,
        Ok(Ok(x)) => x,
    };
    let mut decoder = match spec.analysis {
        Analysis::Off => None,
        analysis => match Decoder::new(spec, analysis, frames, dropped, health) {
            Ok(d) => Some(d),
            Err(e) => return e,
        },
    };
    let started = Instant::now();
    let mut online = false;
    // The live sink has had this connection's parameters.
    let mut live_ready = false;
    let units_at_start = lock(health).frames_in;
    let (mut last_tick, mut last_units, mut bytes, mut last_bytes) =
        (Instant::now(), units_at_start, 0u64, 0u64);
    loop {
        let wait = if online {
            spec.stall_timeout
        } else {
            CONNECT_TIMEOUT.saturating_sub(started.elapsed())
        };
        let item = match tokio::time::timeout(wait, demuxed.next()).await {
            Err(_) if online => return format!("stalled: no data for {:?}", spec.stall_timeout),
            Err(_) => return format!("no data within {CONNECT_TIMEOUT:?}"),
            Ok(None) => return "end of stream".into(),
            Ok(Some(Err(e))) => return explain(e),
            Ok(Some(Ok(item))) => item,
        };
        let CodecItem::VideoFrame(frame) = item else { continue };
        if frame.stream_id() != video {
            continue;
        }
        bytes += frame.data().len() as u64;
        {
            let mut h = lock(health);
            h.frames_in += 1;
            if frame.is_random_access_point() {
                h.keyframes_in += 1;
                h.last_keyframe_at = Some(now_ms());
            }
            if !online {
                info!(camera = %spec.id, "camera online");
                h.state = CameraState::Online;
                h.last_error = None;
                online = true;
            }
            let dt = last_tick.elapsed();
            if dt >= Duration::from_secs(1) {
                h.input_fps = (h.frames_in - last_units) as f64 / dt.as_secs_f64();
                h.bitrate = (bytes - last_bytes) as f64 * 8.0 / dt.as_secs_f64();
                (last_tick, last_units, last_bytes) = (Instant::now(), h.frames_in, bytes);
            }
        }
        if let Some(tap) = &spec.live {
            if (frame.has_new_parameters() || !live_ready)
                && let Some(ParametersRef::Video(v)) =
                    demuxed.streams().get(video).and_then(|s| s.parameters())
            {
                let (w, h) = v.pixel_dimensions();
                tap.0.parameters(v.extra_data(), w, h);
                live_ready = true;
            }
            if live_ready {
                tap.0.unit(
                    frame.is_random_access_point(),
                    frame.timestamp().elapsed(),
                    frame.data(),
                );
            }
        }
        if let Some(d) = decoder.as_mut() {
            if (frame.has_new_parameters() || !d.has_caps())
                && let Some(ParametersRef::Video(v)) =
                    demuxed.streams().get(video).and_then(|s| s.parameters())
            {
                d.set_caps(v.extra_data());
            }
            if let Err(e) = d.push(frame, health, dropped) {
                return e;
            }
        }
    }
}

/// `appsrc ! avdec_h264 ! … ! appsink` for one connection.
struct Decoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    bus: gst::Bus,
    analysis: Analysis,
    caps: Option<Vec<u8>>,
    /// A key frame has been handed over since the start or the last dropped unit: delta units
    /// before it could not be decoded.
    synced: bool,
}

impl Decoder {
    fn new(
        spec: &CameraSpec,
        analysis: Analysis,
        frames: &mpsc::Sender<Frame>,
        dropped: &Arc<Counter>,
        health: &Arc<Mutex<Health>>,
    ) -> Result<Self, String> {
        let launch = format!(
            "appsrc name=src is-live=true format=time ! {}",
            decode_chain(analysis).ok_or("no decoder for relay-only cameras")?
        );
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| format!("building the decoder: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the decoder is not a pipeline".to_owned())?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("the decoder has no appsrc")?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("the decoder has no appsink")?;
        send_frames_to(&sink, spec.id.clone(), frames.clone(), dropped.clone(), health.clone());
        let bus = pipeline.bus().ok_or("the decoder has no bus")?;
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(format!("starting the decoder: {e}"));
        }
        Ok(Decoder { pipeline, src, bus, analysis, caps: None, synced: false })
    }

    fn has_caps(&self) -> bool {
        self.caps.is_some()
    }

    /// The stream's parameters (an AVCDecoderConfigurationRecord) as the decoder's caps.
    fn set_caps(&mut self, avcc: &[u8]) {
        if self.caps.as_deref() == Some(avcc) {
            return;
        }
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("codec_data", gst::Buffer::from_slice(avcc.to_vec()))
            .build();
        self.src.set_caps(Some(&caps));
        self.caps = Some(avcc.to_vec());
    }

    /// Hands one access unit to the decoder (key frames only for `keyframes`; for `fps`, every
    /// unit from a key frame on). Never waits: a full decoder input drops the unit and counts it.
    fn push(
        &mut self,
        frame: VideoFrame,
        health: &Arc<Mutex<Health>>,
        dropped: &Arc<Counter>,
    ) -> Result<(), String> {
        let key = frame.is_random_access_point();
        if (!key && (self.analysis == Analysis::Keyframes || !self.synced)) || self.caps.is_none() {
            return Ok(());
        }
        if let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            return Err(format!("decoding: {}", e.error()));
        }
        if self.src.property::<u64>("current-level-buffers") >= MAX_QUEUED {
            lock(health).frames_dropped += 1;
            dropped.inc();
            // The delta units that follow depend on this one: wait for the next key frame.
            self.synced = false;
            return Ok(());
        }
        self.synced |= key;
        let ts = frame.timestamp();
        let ns = (ts.elapsed().max(0) as u128 * 1_000_000_000 / u128::from(ts.clock_rate().get()))
            as u64;
        let mut buffer = gst::Buffer::from_mut_slice(frame.into_data());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(ns));
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src.push_buffer(buffer).map(|_| ()).map_err(|e| format!("decoder input: {e:?}"))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_are_percent_decoded() {
        let (url, creds) = split_credentials("rtsp://ad%40min:p%3Ass@10.0.0.5:554/ch1").unwrap();
        assert_eq!(url.as_str(), "rtsp://10.0.0.5:554/ch1");
        let c = creds.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ad@min", "p:ss"));
        assert!(split_credentials("rtsp://10.0.0.5/ch1").unwrap().1.is_none());
        assert!(split_credentials("http://10.0.0.5/ch1").unwrap_err().contains("not rtsp"));
        assert!(split_credentials("not a url").unwrap_err().contains("rtsp://"));
    }
}
