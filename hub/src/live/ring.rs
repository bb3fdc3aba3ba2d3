//! A camera's recent fragments, shared by all its viewers.
//!
//! The pull appends each access unit's fragment once ([`Ring::push`]); every viewer is only a
//! cursor into the ring ([`Viewer`]), so a thousand viewers cost a thousand cursors, not a
//! thousand copies or muxers. The ring is bounded (frames and bytes): the oldest fragment
//! goes when it is full, whatever the viewers do, so a slow viewer never holds the pull back.
//! A viewer that falls behind — past the ring's start, or more than `max_lag` frames behind the
//! newest — skips to the newest key frame and is told how many frames it lost; it is never
//! disconnected for being slow and never handed part of a frame.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::fmp4::Init;

/// One access unit, muxed.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Position in the camera's stream, from 0, without gaps.
    pub seq: u64,
    pub key: bool,
    /// Presentation time, 90 kHz ticks (for aligning detections with the displayed frame).
    pub pts: i64,
    /// Its time on the viewers' media timeline (the fragment's decode time), 90 kHz ticks.
    pub media: u64,
    /// When the hub received it from the camera (Unix ms): viewers measure their delay.
    pub at: i64,
    /// `moof` + `mdat`, shared: cloning is a reference count.
    pub data: Bytes,
}

#[derive(Debug)]
struct Inner {
    init: Option<Arc<Init>>,
    /// Changes with each new init segment: a viewer then starts over from it.
    generation: u64,
    frames: VecDeque<Fragment>,
    bytes: usize,
    next_seq: u64,
    /// The camera was removed: viewers end.
    closed: bool,
    /// The newest unit's camera timestamp and its time on the viewers' media timeline (both
    /// 90 kHz ticks), to place analysis results on that timeline.
    clock: Option<(i64, u64)>,
}

/// The limits of a ring.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frames: usize,
    pub max_bytes: usize,
    /// A viewer further behind the newest frame than this skips to the newest key frame.
    pub max_lag: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // About 8 s at 30 fps, and 16 MiB: a few groups of pictures of a typical camera.
        Self { max_frames: 256, max_bytes: 16 << 20, max_lag: 90 }
    }
}

/// A camera's recent fragments.
#[derive(Debug)]
pub struct Ring {
    inner: Mutex<Inner>,
    limits: Limits,
    /// The next sequence number (newest + 1): viewers wait on it.
    tick: watch::Sender<u64>,
    /// Viewers reading this ring now.
    viewers: std::sync::atomic::AtomicUsize,
    /// The latest analysis results as the viewers' JSON message (a newer one replaces it: a
    /// viewer that was busy gets only the newest).
    detections: watch::Sender<Option<Bytes>>,
    /// Which camera source may write here ([`Ring::claim`]): one that was replaced or stopped
    /// may still deliver a few units before its thread ends, and they must not mix in.
    owner: std::sync::atomic::AtomicU64,
}

/// What a viewer gets next.
#[derive(Debug, Clone)]
pub enum Next {
    /// Start (again) with this init segment; the frames that follow begin at a key frame.
    Init(Arc<Init>),
    Frame(Fragment),
    /// This many frames were skipped (the viewer fell behind); a key frame follows.
    Dropped(u64),
}

impl Ring {
    pub fn new(limits: Limits) -> Arc<Self> {
        let (tick, _) = watch::channel(0);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                init: None,
                generation: 0,
                frames: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                closed: false,
                clock: None,
            }),
            limits,
            tick,
            viewers: Default::default(),
            detections: watch::channel(None).0,
            owner: Default::default(),
        })
    }

    /// Makes the caller (a new camera source's tap) the only writer; returns its claim.
    pub fn claim(&self) -> u64 {
        self.owner.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Whether `claim` is still the writer's.
    pub fn owned_by(&self, claim: u64) -> bool {
        self.owner.load(std::sync::atomic::Ordering::SeqCst) == claim
    }

    /// The media time (seconds, as a player's `currentTime`) of the camera's timestamp `pts`,
    /// once the stream is muxed.
    pub fn media_seconds(&self, pts: i64) -> Option<f64> {
        let (at, media) = self.lock().clock?;
        let t = media as i64 + (pts - at);
        (t >= 0).then(|| t as f64 / f64::from(super::fmp4::TIMESCALE))
    }

    /// The latest analysis results for the viewers (a JSON text message).
    pub fn publish_detections(&self, message: Bytes) {
        self.detections.send_replace(Some(message));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new init segment (the stream started, or its parameters changed): the frames kept
    /// belong to the old one and go.
    pub fn set_init(&self, init: Init) {
        let mut g = self.lock();
        g.init = Some(Arc::new(init));
        g.generation += 1;
        g.frames.clear();
        g.bytes = 0;
        let next = g.next_seq;
        drop(g);
        self.tick.send_replace(next);
    }

    /// Forgets the stream (its pull stopped): a viewer that comes later waits for the next
    /// pull's init segment instead of getting a stale picture.
    pub fn reset(&self) {
        // The stopped source's last units are not wanted.
        self.claim();
        let mut g = self.lock();
        g.init = None;
        g.generation += 1;
        g.frames.clear();
        g.bytes = 0;
        g.clock = None;
        drop(g);
        self.detections.send_replace(None);
    }

    /// Appends one fragment (camera timestamp `pts`, media time `media`); the oldest go while
    /// the ring is over its limits.
    pub fn push(&self, key: bool, pts: i64, media: u64, data: Bytes) -> u64 {
        let at = chrono::Utc::now().timestamp_millis();
        let mut g = self.lock();
        g.clock = Some((pts, media));
        let seq = g.next_seq;
        g.next_seq += 1;
        g.bytes += data.len();
        g.frames.push_back(Fragment { seq, key, pts, media, at, data });
        while g.frames.len() > self.limits.max_frames
            || (g.bytes > self.limits.max_bytes && g.frames.len() > 1)
        {
            if let Some(f) = g.frames.pop_front() {
                g.bytes -= f.data.len();
            }
        }
        drop(g);
        self.tick.send_replace(seq + 1);
        seq
    }

    /// Ends every viewer (the camera is gone).
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        let next = g.next_seq;
        drop(g);
        self.tick.send_replace(next);
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The current init segment, if the stream has started.
    pub fn init(&self) -> Option<Arc<Init>> {
        self.lock().init.clone()
    }

    /// A new viewer: it starts at the newest key frame (an instant picture), then follows.
    pub fn viewer(self: &Arc<Self>) -> Viewer {
        self.viewers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Viewer { ring: self.clone(), rx: self.tick.subscribe(), generation: 0, cursor: None }
    }

    /// How many viewers read this ring now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Frames kept and their bytes (for metrics and tests).
    pub fn len(&self) -> (usize, usize) {
        let g = self.lock();
        (g.frames.len(), g.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }
}

/// One viewer's position in a ring.
#[derive(Debug)]
pub struct Viewer {
    ring: Arc<Ring>,
    rx: watch::Receiver<u64>,
    /// The init generation this viewer was given (0: none yet).
    generation: u64,
    /// The next sequence number this viewer wants; None: start at the newest key frame.
    cursor: Option<u64>,
}

/// A viewer's feed of the camera's analysis results (apart from its [`Viewer`], so that one
/// task can wait on both).
pub struct Detections(watch::Receiver<Option<Bytes>>);

impl Detections {
    /// The next analysis results (waits for new ones; skips any the viewer was too busy to
    /// take). Never ends while the ring lives.
    pub async fn next(&mut self) -> Bytes {
        loop {
            if self.0.changed().await.is_err() {
                return futures::future::pending().await;
            }
            if let Some(m) = self.0.borrow_and_update().clone() {
                return m;
            }
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.ring.viewers.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Viewer {
    /// This viewer's feed of analysis results, from now on (older results belong to frames it
    /// will not see).
    pub fn detections(&self) -> Detections {
        let mut rx = self.ring.detections.subscribe();
        rx.mark_unchanged();
        Detections(rx)
    }

    /// Marks what the ring holds now as seen: [`Viewer::changed`] then waits for something
    /// newer. Call it before taking what is ready with [`Viewer::poll`].
    pub fn mark_seen(&mut self) {
        self.rx.mark_unchanged();
    }

    /// Waits until the ring changes after [`Viewer::mark_seen`] (a frame, an init, closing);
    /// false when it is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok() && !self.ring.is_closed()
    }

    /// The camera was removed.
    pub fn closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// What to send next, waiting for the camera when the viewer is at the live edge. `None`
    /// when the ring is gone.
    pub async fn next(&mut self) -> Option<Next> {
        loop {
            if self.ring.is_closed() {
                return None;
            }
            if let Some(n) = self.poll() {
                return Some(n);
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// What to send next, if anything is ready.
    pub fn poll(&mut self) -> Option<Next> {
        let g = self.ring.lock();
        let init = g.init.clone()?;
        if self.generation != g.generation {
            self.generation = g.generation;
            self.cursor = None;
            return Some(Next::Init(init));
        }
        let newest_key = || g.frames.iter().rev().find(|f| f.key).map(|f| f.seq);
        let want = match self.cursor {
            Some(c) => c,
            None => {
                // Nothing decodable until a key frame.
                let k = newest_key()?;
                self.cursor = Some(k);
                k
            }
        };
        let oldest = g.frames.front().map_or(g.next_seq, |f| f.seq);
        let behind = g.next_seq.saturating_sub(want);
        if want < oldest || behind > self.ring.limits.max_lag {
            // Fell behind: on to the newest key frame after where it was.
            if let Some(k) = newest_key().filter(|&k| k > want) {
                self.cursor = Some(k);
                return Some(Next::Dropped(k - want));
            }
            if want < oldest {
                // Its frame is gone and no newer key frame yet: wait for one.
                self.cursor = None;
                return Some(Next::Dropped(oldest - want));
            }
        }
        let f = g.frames.get((want - oldest) as usize)?.clone();
        self.cursor = Some(want + 1);
        Some(Next::Frame(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_claim_writes_and_a_reset_ends_every_claim() {
        let ring = Ring::new(Limits::default());
        let old = ring.claim();
        let new = ring.claim();
        assert!(!ring.owned_by(old) && ring.owned_by(new));
        ring.reset();
        assert!(!ring.owned_by(new), "a stopped source's last units are refused");
    }

    #[test]
    fn a_reset_ring_gives_nothing_until_the_next_streams_init() {
        let ring = Ring::new(Limits::default());
        ring.set_init(init());
        ring.push(true, 0, 0, Bytes::from_static(b"k"));
        ring.reset();
        let mut v = ring.viewer();
        assert!(v.poll().is_none(), "no stale picture after a reset");
        ring.set_init(init());
        ring.push(true, 9000, 0, Bytes::from_static(b"k2"));
        assert!(matches!(v.poll(), Some(Next::Init(_))));
        assert!(matches!(v.poll(), Some(Next::Frame(f)) if &f.data[..] == b"k2"));
    }

    #[test]
    fn camera_timestamps_map_onto_the_media_timeline() {
        let ring = Ring::new(Limits::default());
        assert_eq!(ring.media_seconds(1000), None, "nothing muxed yet");
        ring.push(true, 900_000, 90_000, Bytes::from_static(b"k"));
        assert_eq!(ring.media_seconds(900_000), Some(1.0));
        assert_eq!(ring.media_seconds(900_000 - 45_000), Some(0.5));
        assert_eq!(ring.media_seconds(0), None, "before the view's start");
    }

    fn init() -> Init {
        Init {
            segment: Bytes::from_static(b"init"),
            codec: "avc1.64001f".into(),
            width: 2,
            height: 2,
        }
    }

    fn frame(n: &mut Viewer) -> Option<(u64, bool)> {
        match n.poll()? {
            Next::Frame(f) => Some((f.seq, f.key)),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Key frames every `gop` frames.
    fn feed(r: &Ring, from: u64, to: u64, gop: u64) {
        for s in from..to {
            r.push(s % gop == 0, s as i64 * 3000, s * 3000, Bytes::from(vec![0u8; 100]));
        }
    }

    #[test]
    fn a_new_viewer_starts_at_the_newest_key_frame_and_shares_the_bytes() {
        let r = Ring::new(Limits::default());
        let mut v = r.viewer();
        assert!(v.poll().is_none(), "nothing before the stream starts");
        r.set_init(init());
        feed(&r, 0, 25, 10);
        assert!(matches!(v.poll(), Some(Next::Init(_))));
        assert_eq!(frame(&mut v), Some((20, true)));
        for s in 21..25 {
            assert_eq!(frame(&mut v), Some((s, false)));
        }
        assert!(v.poll().is_none(), "at the live edge");
        let mut w = r.viewer();
        assert_eq!(r.viewers(), 2);
        w.poll();
        let Some(Next::Frame(a)) = w.poll() else { panic!() };
        let g = r.lock();
        let b = &g.frames.iter().find(|f| f.seq == a.seq).unwrap().data;
        assert_eq!(a.data.as_ptr(), b.as_ptr(), "viewers share one copy of each fragment");
        drop(g);
        drop(w);
        assert_eq!(r.viewers(), 1, "a viewer that leaves is no longer counted");
    }

    #[test]
    fn a_slow_viewer_skips_to_the_next_key_frame_and_is_told_how_many_it_lost() {
        let r = Ring::new(Limits { max_frames: 50, max_bytes: 1 << 20, max_lag: 30 });
        r.set_init(init());
        let mut slow = r.viewer();
        let mut fast = r.viewer();
        feed(&r, 0, 1, 10);
        for v in [&mut slow, &mut fast] {
            assert!(matches!(v.poll(), Some(Next::Init(_))));
            assert_eq!(frame(v), Some((0, true)));
        }
        // The fast one keeps up while 100 more frames arrive; the slow one reads nothing.
        for s in 1..101 {
            feed(&r, s, s + 1, 10);
            assert_eq!(frame(&mut fast), Some((s, s % 10 == 0)));
        }
        assert_eq!(r.len().0, 50, "the ring stays bounded whatever the slow viewer does");
        match slow.poll() {
            Some(Next::Dropped(n)) => assert_eq!(n, 100 - 1),
            other => panic!("expected a drop notice, got {other:?}"),
        }
        assert_eq!(frame(&mut slow), Some((100, true)), "whole frames, from a key frame");
        assert!(slow.poll().is_none() && fast.poll().is_none());
    }

    #[test]
    fn new_parameters_restart_every_viewer_from_the_new_init_segment() {
        let r = Ring::new(Limits::default());
        r.set_init(init());
        feed(&r, 0, 5, 5);
        let mut v = r.viewer();
        assert!(matches!(v.poll(), Some(Next::Init(_))));
        assert_eq!(frame(&mut v), Some((0, true)));
        r.set_init(init());
        assert!(matches!(v.poll(), Some(Next::Init(_))));
        assert!(v.poll().is_none(), "no frame of the new stream yet");
        feed(&r, 5, 7, 5);
        assert_eq!(frame(&mut v), Some((5, true)));
    }

    #[tokio::test]
    async fn a_viewer_at_the_live_edge_waits_for_the_next_frame() {
        let r = Ring::new(Limits::default());
        r.set_init(init());
        feed(&r, 0, 1, 10);
        let mut v = r.viewer();
        assert!(matches!(v.next().await, Some(Next::Init(_))));
        assert!(matches!(v.next().await, Some(Next::Frame(f)) if f.seq == 0));
        let waiting = tokio::spawn(async move {
            v.next().await.map(|n| matches!(n, Next::Frame(f) if f.seq == 1))
        });
        tokio::task::yield_now().await;
        feed(&r, 1, 2, 10);
        assert_eq!(waiting.await.unwrap(), Some(true));
    }
}
