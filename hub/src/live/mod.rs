//! Live video for the duty room (issue 9, in progress): the camera's own H.264, muxed once
//! per camera into fragmented MP4 ([`fmp4`]: an init segment, then one fragment per access
//! unit) and kept in a bounded ring that every viewer reads through its own cursor
//! ([`ring`]). Nothing here decodes or transcodes.

pub mod fmp4;
pub mod ring;

use std::sync::{Arc, Mutex};

use ring::Ring;

/// What a camera's source calls for each access unit: muxes it once into the camera's ring.
pub struct Tap {
    ring: Arc<Ring>,
    /// This tap's claim on the ring (a later source's tap, or a reset, takes it over).
    claim: u64,
    camera: String,
    state: Mutex<TapState>,
}

#[derive(Default)]
struct TapState {
    /// The stream can be muxed (its parameters were valid).
    ready: bool,
    sequence: u32,
    /// The previous unit's pts and decode time, and the last measured frame interval.
    last_pts: Option<i64>,
    last_decode: u64,
    interval: u32,
    /// A problem already logged for this connection.
    warned: bool,
}

impl Tap {
    pub fn new(ring: Arc<Ring>, camera: &str) -> Self {
        let claim = ring.claim();
        Self { ring, claim, camera: camera.to_owned(), state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ingest::source::LiveSink for Tap {
    fn parameters(&self, avcc: &[u8], width: u32, height: u32) {
        if !self.ring.owned_by(self.claim) {
            return;
        }
        let (w, h) =
            (u16::try_from(width).unwrap_or(u16::MAX), u16::try_from(height).unwrap_or(u16::MAX));
        let mut st = self.lock();
        match fmp4::init(avcc, w, h) {
            Ok(init) => {
                *st = TapState { ready: true, interval: 3000, ..Default::default() };
                self.ring.set_init(init);
            }
            Err(e) => {
                st.ready = false;
                if !st.warned {
                    st.warned = true;
                    tracing::warn!(camera = %self.camera, error = %e, "live view unavailable");
                }
            }
        }
    }

    fn unit(&self, key: bool, pts: i64, data: &[u8]) {
        if !self.ring.owned_by(self.claim) {
            return;
        }
        let mut st = self.lock();
        if !st.ready {
            return;
        }
        // Decode times follow the camera's timestamps and only go forward: a repeated or
        // earlier timestamp steps by one tick. A fragment's duration is the last interval
        // measured (the next unit's time is not known yet; the next fragment's decode time
        // corrects any difference, so nothing drifts).
        let decode = match st.last_pts {
            None => 0,
            Some(prev) if pts > prev => {
                st.interval = fmp4::ticks(Some(prev), pts);
                st.last_decode + (pts - prev) as u64
            }
            Some(_) => st.last_decode + 1,
        };
        st.sequence = st.sequence.wrapping_add(1);
        match fmp4::fragment(st.sequence, decode, st.interval, data, key) {
            Ok(f) => {
                st.last_pts = Some(pts);
                st.last_decode = decode;
                drop(st);
                self.ring.push(key, pts, decode, f);
            }
            Err(e) => {
                if !st.warned {
                    st.warned = true;
                    tracing::warn!(camera = %self.camera, error = %e, "an access unit could not be muxed");
                }
            }
        }
    }
}
