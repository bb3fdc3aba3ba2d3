//! Simulated RTSP cameras (gst-rtsp-server) that serve a clip in a loop **without re-encoding**.
//!
//! A clip is read once into memory as H.264 access units (demux → parse, byte-stream/au). Each
//! camera is an RTSP server on its own port and GLib main context with one shared mount; its
//! media is `appsrc ! h264parse ! rtph264pay`, fed by a thread that pushes the access units
//! again and again with continuous timestamps (the loop offset grows by the clip's length), at
//! the pace the live pipeline takes them. When no clip is available, a synthetic one is encoded
//! once (`videotestsrc` + `x264enc`, I420, fixed GOP) and then served the same way.
//!
//! One server may serve many mounts ([`SimCamera::serve`]), each its own clip, optionally behind
//! RTSP basic authentication.
//!
//! Faults for tests: [`SimCamera::stop`] closes every session and the listener (a dead camera);
//! starting a camera again on the same port brings it back. [`SimCamera::stall`] keeps the
//! sessions open but sends nothing; [`SimCamera::garbage`] sends random bytes in place of the
//! video.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// One H.264 access unit of a clip.
#[derive(Clone)]
struct Unit {
    buffer: gst::Buffer,
    /// Presentation time from the clip's start.
    pts: gst::ClockTime,
}

/// A decoded frame: width, height, packed RGB8.
pub type DecodedFrame = (u32, u32, Vec<u8>);

/// A clip held in memory, ready to be served in a loop.
#[derive(Clone)]
pub struct Clip {
    caps: gst::Caps,
    units: Arc<Vec<Unit>>,
    /// Time from the first unit's start to the last unit's end.
    length: gst::ClockTime,
    pub name: String,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip").field("name", &self.name).field("units", &self.units.len()).finish()
    }
}

/// Builds a pipeline from a launch line.
fn pipeline(launch: &str) -> anyhow::Result<gst::Pipeline> {
    gst::init()?;
    gst::parse::launch(launch)?.downcast::<gst::Pipeline>().map_err(|_| anyhow!("not a pipeline"))
}

/// The pipeline's element `name`, of type `T`.
fn element<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> anyhow::Result<T> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| anyhow!("the pipeline has no element {name:?} of the expected type"))
}

fn collect(launch: &str, name: &str) -> anyhow::Result<Clip> {
    let pipeline = pipeline(launch).with_context(|| format!("building the reader for {name}"))?;
    let sink: gst_app::AppSink = element(&pipeline, "sink")?;
    pipeline.set_state(gst::State::Playing)?;
    let mut units = Vec::new();
    let mut caps = None;
    let mut last_end = gst::ClockTime::ZERO;
    while let Ok(sample) = sink.pull_sample() {
        if caps.is_none() {
            caps = sample.caps_owned();
        }
        let Some(buffer) = sample.buffer_owned() else { continue };
        let pts = buffer.pts().unwrap_or(last_end);
        last_end = pts + buffer.duration().unwrap_or(gst::ClockTime::from_mseconds(40));
        units.push(Unit { buffer, pts });
    }
    let bus = pipeline.bus().ok_or_else(|| anyhow!("no bus"))?;
    let error = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null)?;
    if let Some(msg) = error
        && let gst::MessageView::Error(e) = msg.view()
    {
        bail!("reading {name}: {}", e.error());
    }
    if units.is_empty() {
        bail!("{name} has no H.264 video");
    }
    let first = units[0].pts;
    for u in &mut units {
        u.pts = u.pts.saturating_sub(first);
    }
    Ok(Clip {
        caps: caps.ok_or_else(|| anyhow!("{name}: no caps"))?,
        units: Arc::new(units),
        length: last_end.saturating_sub(first),
        name: name.to_owned(),
    })
}

impl Clip {
    /// Reads the H.264 track of an MP4 clip (demux and parse only).
    pub fn from_mp4(path: &Path) -> anyhow::Result<Clip> {
        if !path.is_file() {
            bail!("clip {} does not exist", path.display());
        }
        let launch = format!(
            "filesrc location=\"{}\" ! qtdemux ! h264parse config-interval=-1 ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false",
            path.display()
        );
        collect(&launch, &path.display().to_string())
    }

    /// A synthetic clip: a moving test pattern encoded once (I420, one keyframe a second).
    pub fn synthetic(width: u32, height: u32, fps: u32, seconds: u32) -> anyhow::Result<Clip> {
        let launch = format!(
            "videotestsrc num-buffers={} pattern=ball ! video/x-raw,format=I420,width={width},\
             height={height},framerate={fps}/1 ! x264enc speed-preset=ultrafast tune=zerolatency \
             key-int-max={fps} option-string=scenecut=0 ! video/x-h264,profile=constrained-baseline ! \
             h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! \
             appsink name=sink sync=false",
            fps * seconds
        );
        collect(&launch, "synthetic")
    }

    /// The clip's length in seconds (one loop).
    pub fn length_seconds(&self) -> f64 {
        self.length.nseconds() as f64 / 1e9
    }

    /// Decodes the clip's key frames `repeat` times in one pipeline with the analysis chain of a
    /// camera (parse → drop delta units → decode → RGB), as fast as possible: the bare-decode
    /// baseline of `hub bench cameras`. Returns the frames of the last pass as (width, height,
    /// RGB) and how many frames were decoded in all.
    pub fn decode_keyframes(&self, repeat: usize) -> anyhow::Result<(Vec<DecodedFrame>, usize)> {
        let pipeline = pipeline(
            "appsrc name=src format=time ! h264parse ! identity drop-buffer-flags=delta-unit ! \
             avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false",
        )?;
        let src: gst_app::AppSrc = element(&pipeline, "src")?;
        let sink: gst_app::AppSink = element(&pipeline, "sink")?;
        src.set_caps(Some(&self.caps));
        pipeline.set_state(gst::State::Playing)?;
        let (units, length) = (self.units.clone(), self.length);
        let pusher = std::thread::spawn(move || {
            let mut offset = gst::ClockTime::ZERO;
            for _ in 0..repeat {
                for u in units.iter() {
                    let mut b = u.buffer.copy();
                    if let Some(b) = b.get_mut() {
                        b.set_pts(offset + u.pts);
                        b.set_dts(gst::ClockTime::NONE);
                    }
                    if src.push_buffer(b).is_err() {
                        return;
                    }
                }
                offset += length;
            }
            let _ = src.end_of_stream();
        });
        let per_pass = self.keyframes();
        let mut last = Vec::new();
        let mut total = 0;
        while let Ok(sample) = sink.pull_sample() {
            total += 1;
            let (w, h) = sample
                .caps()
                .and_then(|c| c.structure(0))
                .and_then(|st| Some((st.get::<i32>("width").ok()?, st.get::<i32>("height").ok()?)))
                .unwrap_or((0, 0));
            if total + per_pass > repeat * per_pass
                && let Some(b) = sample.buffer()
                && let Ok(map) = b.map_readable()
            {
                last.push((w as u32, h as u32, map.to_vec()));
            }
        }
        let _ = pusher.join();
        pipeline.set_state(gst::State::Null)?;
        if total == 0 {
            bail!("{}: nothing decoded", self.name);
        }
        Ok((last, total))
    }

    /// Key frames in the clip.
    pub fn keyframes(&self) -> usize {
        self.units
            .iter()
            .filter(|u| !u.buffer.flags().contains(gst::BufferFlags::DELTA_UNIT))
            .count()
    }
}

/// Faults injected into one mount.
#[derive(Debug, Default)]
pub struct Faults {
    stalled: AtomicBool,
    garbage: AtomicBool,
}

/// A running simulated camera server: one port, one or more mounts.
pub struct SimCamera {
    pub port: u16,
    /// The first mount's path.
    pub path: String,
    faults: HashMap<String, Arc<Faults>>,
    /// Held so the server lives as long as the camera.
    _server: rtsp::RTSPServer,
    context: gst::glib::MainContext,
    main_loop: gst::glib::MainLoop,
    source: Option<gst::glib::SourceId>,
    thread: Option<std::thread::JoinHandle<()>>,
    stopped: Arc<AtomicBool>,
    /// The clients' sockets, to shut down at [`SimCamera::stop`].
    sockets: Arc<std::sync::Mutex<Vec<KeptSocket>>>,
}

impl SimCamera {
    /// Serves `clip` at `rtsp://127.0.0.1:{port}/{path}` (port 0: any free port).
    pub fn start(clip: &Clip, port: u16, path: &str) -> anyhow::Result<SimCamera> {
        Self::serve(port, &[(path, clip)], None)
    }

    /// Serves each `(path, clip)` at `rtsp://127.0.0.1:{port}/{path}` from one server (port 0:
    /// any free port). With `credentials`, clients must log in with that user and password
    /// (RTSP basic authentication).
    pub fn serve(
        port: u16,
        mounts: &[(&str, &Clip)],
        credentials: Option<(&str, &str)>,
    ) -> anyhow::Result<SimCamera> {
        gst::init()?;
        let first = mounts.first().ok_or_else(|| anyhow!("a camera server needs a mount"))?.0;
        let context = gst::glib::MainContext::new();
        let main_loop = gst::glib::MainLoop::new(Some(&context), false);
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        if let Some((user, pass)) = credentials {
            let auth = rtsp::RTSPAuth::new();
            let token = rtsp::RTSPToken::builder()
                .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
                .build();
            auth.add_basic(rtsp::RTSPAuth::make_basic(user, pass).as_str(), &token);
            server.set_auth(Some(&auth));
        }
        let points = server.mount_points().ok_or_else(|| anyhow!("no mount points"))?;
        let stopped = Arc::new(AtomicBool::new(false));
        let mut faults = HashMap::new();
        for (path, clip) in mounts {
            let fault = Arc::new(Faults::default());
            faults.insert((*path).to_owned(), fault.clone());
            let factory = mount(clip, stopped.clone(), fault);
            if credentials.is_some() {
                factory.add_role_from_structure(
                    &gst::Structure::builder("viewer")
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                        .build(),
                );
            }
            points.add_factory(&format!("/{path}"), factory);
        }
        let path = first;
        // Each client's socket is kept (weakly) so that `stop` can shut it down: the client's
        // own thread then reads end-of-stream and closes the client itself. Closing clients
        // from another thread (`client_filter` → `gst_rtsp_client_close`) races with their
        // watch, which then polls a closed stream forever (a spinning thread and endless
        // `g_pollable_input_stream_read_nonblocking` criticals).
        let sockets: Arc<std::sync::Mutex<Vec<KeptSocket>>> = Arc::default();
        let kept = sockets.clone();
        server.connect_client_connected(move |_, client| {
            if let Some(socket) = client_socket(client) {
                let mut all = kept.lock().unwrap_or_else(|e| e.into_inner());
                all.retain(|k| !k.0.is_closed());
                all.push(KeptSocket(socket));
            }
        });
        let source = server.attach(Some(&context))?;
        let bound = u16::try_from(server.bound_port()).map_err(|_| anyhow!("not bound"))?;
        let (ml, ctx) = (main_loop.clone(), context.clone());
        let thread =
            std::thread::Builder::new().name(format!("simcam-{bound}")).spawn(move || {
                let _guard = ctx.acquire();
                ml.run();
            })?;
        Ok(SimCamera {
            port: bound,
            path: path.to_owned(),
            faults,
            _server: server,
            context,
            main_loop,
            source: Some(source),
            thread: Some(thread),
            stopped,
            sockets,
        })
    }

    /// The first mount's URL.
    pub fn url(&self) -> String {
        self.url_of(&self.path)
    }

    pub fn url_of(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }

    /// While on, the mount's sessions stay open but receive no video.
    pub fn stall(&self, path: &str, on: bool) {
        if let Some(f) = self.faults.get(path) {
            f.stalled.store(on, Ordering::SeqCst);
        }
    }

    /// While on, the mount sends random bytes in place of each access unit.
    pub fn garbage(&self, path: &str, on: bool) {
        if let Some(f) = self.faults.get(path) {
            f.garbage.store(on, Ordering::SeqCst);
        }
    }

    /// Kills the camera: closes every session and the listening socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap_or_else(|e| e.into_inner()));
        for k in &sockets {
            // Already closed by the client: an error, nothing to do.
            let _ = k.0.shutdown(true, true);
        }
        // The listener's source lives in this camera's own context (not the default one that
        // `SourceId::remove` looks in).
        if let Some(id) = self.source.take()
            && let Some(source) = self.context.find_source_by_id(&id)
        {
            source.destroy();
        }
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimCamera {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// A client's socket, kept to shut it down from the thread that stops the camera.
struct KeptSocket(rtsp::gio::Socket);

// SAFETY: only `is_closed` and `shutdown` are called on it, from any thread: GSocket checks its
// closed flag and calls shutdown(2) on its descriptor, which the kernel serialises; the
// object itself is reference-counted atomically.
unsafe impl Send for KeptSocket {}

/// The socket of a client's connection (the bindings do not expose `gst_rtsp_client_get_connection`).
fn client_socket(client: &rtsp::RTSPClient) -> Option<rtsp::gio::Socket> {
    use gst::glib::translate::{FromGlibPtrNone, ToGlibPtr};
    // SAFETY: both calls return borrowed pointers (transfer none) that live as long as the
    // client, which the signal's caller holds; `from_glib_none` takes its own reference.
    unsafe {
        let conn = rtsp::ffi::gst_rtsp_client_get_connection(client.to_glib_none().0);
        if conn.is_null() {
            return None;
        }
        let socket = rtsp::gst_rtsp::ffi::gst_rtsp_connection_get_read_socket(conn);
        if socket.is_null() {
            return None;
        }
        Some(rtsp::gio::Socket::from_glib_none(socket.cast()))
    }
}

/// The media factory of one mount: `appsrc ! h264parse ! rtph264pay`, shared by its clients,
/// fed by a thread per media.
fn mount(clip: &Clip, stopped: Arc<AtomicBool>, faults: Arc<Faults>) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(
        "( appsrc name=src is-live=true format=time block=true max-bytes=2000000 max-time=300000000 ! \
         h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
    );
    factory.set_shared(true);
    let clip = clip.clone();
    factory.connect_media_configure(move |_, media| {
        let Some(src) = media
            .element()
            .downcast::<gst::Bin>()
            .ok()
            .and_then(|b| b.by_name_recurse_up("src"))
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        else {
            return;
        };
        src.set_caps(Some(&clip.caps));
        let (clip, stop, faults) = (clip.clone(), stopped.clone(), faults.clone());
        std::thread::spawn(move || feed(&src, &clip, &stop, &faults));
    });
    factory
}

/// Random bytes of `len` (xorshift; the content only has to be wrong).
fn noise(len: usize, seed: &mut u64) -> gst::Buffer {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    gst::Buffer::from_mut_slice(v)
}

/// Pushes the clip's access units forever with continuous timestamps. `appsrc block=true` with
/// `max-time` of 0.3 s holds this thread back to the pace of the live pipeline (so a fault takes
/// effect within 0.3 s, not after a buffered backlog); it ends when the media is torn
/// down (push fails) or the camera stops.
fn feed(src: &gst_app::AppSrc, clip: &Clip, stop: &AtomicBool, faults: &Faults) {
    let mut offset = gst::ClockTime::ZERO;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    // Paced by the system clock from the first unit on. The media's own clock appears only
    // once it plays; pushing unpaced until then would queue a backlog ahead of real time, and
    // faults would show only after it had drained.
    let clock = gst::SystemClock::obtain();
    let start = clock.time();
    // The media's running time when the first unit goes out.
    let base = src.current_running_time().unwrap_or(gst::ClockTime::ZERO);
    loop {
        for u in clip.units.iter() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut b = if faults.garbage.load(Ordering::SeqCst) {
                let mut g = noise(u.buffer.size().max(16), &mut seed);
                if let Some(g) = g.get_mut() {
                    g.set_flags(u.buffer.flags());
                }
                g
            } else {
                u.buffer.copy()
            };
            {
                let b = b.make_mut();
                b.set_pts(base + offset + u.pts);
                b.set_dts(gst::ClockTime::NONE);
            }
            // Pace to the clock: appsrc is live, the payloader does not wait by itself.
            let _ = clock.new_single_shot_id(start + offset + u.pts).wait();
            // A stalled mount keeps its sessions but sends nothing (time still passes).
            if faults.stalled.load(Ordering::SeqCst) {
                continue;
            }
            if src.push_buffer(b).is_err() {
                return;
            }
        }
        offset += clip.length;
    }
}
