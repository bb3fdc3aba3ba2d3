//! Camera rules: which detections count (label, score, zone), how many, for how long, when,
//! and how often a rule may fire. Pure logic over detections and timestamps: the caller owns
//! frames, models and the clock.
//!
//! A rule's condition is "at least `min_count` counting detections in one analysed frame". It
//! fires when the condition has held over consecutive analysed frames for `dwell` (time) or
//! `dwell_frames` (frames), inside one of its local time windows, and its cool-down since the
//! last firing has passed. A frame without the condition resets the streak.

use common::{Severity, UnixMs};
use config::{Camera, CameraRule, TimeWindow};

use super::Detection;

/// A polygon in normalised coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon(pub Vec<[f32; 2]>);

impl Polygon {
    /// Even-odd ray casting; points on an edge may fall either way.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let p = &self.0;
        let mut inside = false;
        let mut j = p.len().wrapping_sub(1);
        for i in 0..p.len() {
            let ([xi, yi], [xj, yj]) = (p[i], p[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// What a firing rule reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// Index of the rule in the camera's rules.
    pub rule: usize,
    pub rule_id: String,
    pub severity: Severity,
    pub item_code: String,
    pub summary: String,
    /// How many detections counted in the frame that fired.
    pub count: usize,
    /// The counting detections (indices into the frame's detections).
    pub matched: Vec<usize>,
    /// When the streak that fired began.
    pub since: UnixMs,
}

#[derive(Debug, Clone)]
struct RuleState {
    streak_since: Option<UnixMs>,
    streak_frames: u32,
    last_fired: Option<UnixMs>,
}

#[derive(Debug, Clone)]
struct Compiled {
    rule: CameraRule,
    zone: Option<Polygon>,
    windows: Vec<TimeWindow>,
    state: RuleState,
}

/// A camera's compiled rules with their state.
#[derive(Debug, Clone)]
pub struct SceneRules {
    rules: Vec<Compiled>,
    /// The models the rules use, without repeats (shared, so callers take it per frame without
    /// allocating).
    models: std::sync::Arc<[String]>,
    utc_offset_s: i32,
}

impl SceneRules {
    /// Compiles a validated camera's rules (`Camera::validate` has checked zones and windows;
    /// an unknown zone or window that slipped through makes its rule never fire).
    pub fn new(camera: &Camera, utc_offset_s: i32) -> Self {
        let rules = camera
            .rules
            .iter()
            .map(|r| Compiled {
                zone: r.zone.as_ref().map(|name| {
                    Polygon(
                        camera
                            .zones
                            .iter()
                            .find(|z| &z.name == name)
                            .map(|z| z.polygon.clone())
                            .unwrap_or_default(),
                    )
                }),
                windows: r.time_windows.iter().filter_map(|w| TimeWindow::parse(w).ok()).collect(),
                state: RuleState { streak_since: None, streak_frames: 0, last_fired: None },
                rule: r.clone(),
            })
            .collect::<Vec<Compiled>>();
        let mut models: Vec<String> = Vec::new();
        for c in &rules {
            if !models.contains(&c.rule.model) {
                models.push(c.rule.model.clone());
            }
        }
        Self { rules, models: models.into(), utc_offset_s }
    }

    /// The models this camera's rules need, without repeats.
    pub fn models(&self) -> std::sync::Arc<[String]> {
        self.models.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn local_minute(&self, at: UnixMs) -> u16 {
        let s = at.div_euclid(1000) + i64::from(self.utc_offset_s);
        (s.rem_euclid(86_400) / 60) as u16
    }

    /// Evaluates the rules that use `model` on one analysed frame's detections (`width` ×
    /// `height` pixels), appending what fires to `out`.
    pub fn evaluate(
        &mut self,
        model: &str,
        detections: &[Detection],
        width: u32,
        height: u32,
        at: UnixMs,
        out: &mut Vec<Firing>,
    ) {
        let minute = self.local_minute(at);
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        for (idx, c) in self.rules.iter_mut().enumerate() {
            if c.rule.model != model {
                continue;
            }
            let r = &c.rule;
            let zone = &c.zone;
            let counts = |d: &Detection| {
                d.score >= r.min_score
                    && (r.labels.is_empty() || r.labels.iter().any(|l| **l == *d.label))
                    && zone.as_ref().is_none_or(|z| z.contains((d.x1 + d.x2) / 2.0 / w, d.y2 / h))
            };
            // Counted on every frame; the indices are collected only when the rule fires.
            let count = detections.iter().filter(|d| counts(d)).count();
            let in_window = c.windows.is_empty() || c.windows.iter().any(|t| t.contains(minute));
            let st = &mut c.state;
            if !in_window || count < r.min_count as usize {
                st.streak_since = None;
                st.streak_frames = 0;
                continue;
            }
            let since = *st.streak_since.get_or_insert(at);
            st.streak_frames = st.streak_frames.saturating_add(1);
            let dwelt = match (r.dwell, r.dwell_frames) {
                (Some(d), _) => at - since >= d.as_millis() as i64,
                (None, Some(n)) => st.streak_frames >= n,
                (None, None) => true,
            };
            let cooled =
                st.last_fired.is_none_or(|t| at - t >= r.cooldown.as_millis() as i64 || at < t);
            if !(dwelt && cooled) {
                continue;
            }
            st.last_fired = Some(at);
            let matched: Vec<usize> =
                (0..detections.len()).filter(|&i| counts(&detections[i])).collect();
            let summary = r.summary.clone().unwrap_or_else(|| {
                let what = if r.labels.is_empty() { "object".into() } else { r.labels.join("/") };
                match &r.zone {
                    Some(z) => format!("{} {what} in zone {z}", matched.len()),
                    None => format!("{} {what} detected", matched.len()),
                }
            });
            out.push(Firing {
                rule: idx,
                rule_id: r.id.clone(),
                severity: r.severity,
                item_code: r.item_code.clone(),
                summary,
                count: matched.len(),
                matched,
                since,
            });
        }
    }
}

/// Skips inference on still scenes: a 32×18 grayscale copy of each frame is compared with a
/// running average; a frame "moves" when the mean absolute difference reaches the threshold.
#[derive(Debug, Clone)]
pub struct MotionGate {
    threshold: f32,
    average: Vec<f32>,
    small: Vec<f32>,
}

const GATE_W: usize = 32;
const GATE_H: usize = 18;

impl MotionGate {
    pub fn new(threshold: f32) -> Self {
        Self { threshold, average: Vec::new(), small: vec![0.0; GATE_W * GATE_H] }
    }

    /// Whether the frame differs enough from the recent ones to be analysed. The first frame
    /// always does. Allocation-free after the first call.
    pub fn moved(&mut self, rgb: &[u8], width: u32, height: u32) -> bool {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() < w * h * 3 {
            return true;
        }
        for gy in 0..GATE_H {
            let y = gy * h / GATE_H + h / GATE_H / 2;
            for gx in 0..GATE_W {
                let x = gx * w / GATE_W + w / GATE_W / 2;
                let p = (y.min(h - 1) * w + x.min(w - 1)) * 3;
                self.small[gy * GATE_W + gx] =
                    0.299 * rgb[p] as f32 + 0.587 * rgb[p + 1] as f32 + 0.114 * rgb[p + 2] as f32;
            }
        }
        if self.average.is_empty() {
            self.average = self.small.clone();
            return true;
        }
        let mut diff = 0.0;
        for (a, s) in self.average.iter_mut().zip(&self.small) {
            diff += (s - *a).abs();
            *a = 0.8 * *a + 0.2 * s;
        }
        diff / self.small.len() as f32 >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn det(label: &str, score: f32, x: f32, y: f32) -> Detection {
        Detection {
            class: 0,
            label: Arc::from(label),
            score,
            x1: x - 10.0,
            y1: y - 40.0,
            x2: x + 10.0,
            y2: y,
            landmarks: None,
        }
    }

    fn camera(rule: CameraRule) -> Camera {
        toml::from_str::<Camera>(
            r#"
            id = "cam"
            site = "s"
            url = "rtsp://h/x"
            [[zones]]
            name = "left"
            polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
            "#,
        )
        .map(|mut c| {
            c.rules.push(rule);
            c
        })
        .unwrap()
    }

    fn rule() -> CameraRule {
        CameraRule {
            id: "r".into(),
            model: "m".into(),
            labels: vec!["person".into()],
            min_score: 0.5,
            zone: Some("left".into()),
            min_count: 1,
            dwell: None,
            dwell_frames: None,
            time_windows: vec![],
            cooldown: Duration::from_secs(10),
            severity: Severity::Major,
            item_code: "00000000000000".into(),
            summary: None,
        }
    }

    fn run(s: &mut SceneRules, dets: &[Detection], at: UnixMs) -> Vec<Firing> {
        let mut out = Vec::new();
        s.evaluate("m", dets, 100, 100, at, &mut out);
        out
    }

    #[test]
    fn polygon_contains_by_even_odd() {
        let sq = Polygon(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        assert!(sq.contains(0.5, 0.5));
        assert!(!sq.contains(1.5, 0.5));
        let tri = Polygon(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(tri.contains(0.2, 0.2) && !tri.contains(0.8, 0.8));
    }

    #[test]
    fn label_score_and_zone_filter_and_cooldown_holds() {
        let mut s = SceneRules::new(&camera(rule()), 0);
        // Right half, low score, wrong label: nothing counts.
        assert!(run(&mut s, &[det("person", 0.9, 80.0, 50.0)], 0).is_empty());
        assert!(run(&mut s, &[det("person", 0.3, 20.0, 50.0)], 0).is_empty());
        assert!(run(&mut s, &[det("car", 0.9, 20.0, 50.0)], 0).is_empty());
        let f = run(&mut s, &[det("person", 0.9, 20.0, 50.0), det("person", 0.9, 80.0, 50.0)], 0);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].count, f[0].matched.clone()), (1, vec![0]));
        assert!(f[0].summary.contains("zone left"), "{}", f[0].summary);
        // Cool-down: quiet for 10 s, then fires again.
        assert!(run(&mut s, &[det("person", 0.9, 20.0, 50.0)], 9_999).is_empty());
        assert_eq!(run(&mut s, &[det("person", 0.9, 20.0, 50.0)], 10_000).len(), 1);
        // Another model's detections are not this rule's business.
        let mut out = Vec::new();
        s.evaluate("other", &[det("person", 0.9, 20.0, 50.0)], 100, 100, 50_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dwell_needs_an_unbroken_streak_and_count_a_threshold() {
        let mut r = rule();
        r.dwell = Some(Duration::from_secs(2));
        r.min_count = 2;
        let mut s = SceneRules::new(&camera(r), 0);
        let two = [det("person", 0.9, 20.0, 50.0), det("person", 0.8, 30.0, 60.0)];
        assert!(run(&mut s, &two, 0).is_empty());
        assert!(run(&mut s, &two, 1_000).is_empty());
        // One person only: the streak breaks.
        assert!(run(&mut s, &two[..1], 1_500).is_empty());
        assert!(run(&mut s, &two, 2_000).is_empty());
        assert!(run(&mut s, &two, 3_000).is_empty());
        let f = run(&mut s, &two, 4_000);
        assert_eq!((f.len(), f[0].since, f[0].count), (1, 2_000, 2));

        let mut r = rule();
        r.dwell_frames = Some(3);
        let mut s = SceneRules::new(&camera(r), 0);
        let one = [det("person", 0.9, 20.0, 50.0)];
        assert!(run(&mut s, &one, 0).is_empty());
        assert!(run(&mut s, &one, 1).is_empty());
        assert_eq!(run(&mut s, &one, 2).len(), 1);
    }

    #[test]
    fn time_windows_use_local_time_and_wrap_midnight() {
        let mut r = rule();
        r.time_windows = vec!["18:00-06:00".into()];
        // UTC+8: 12:00 UTC is 20:00 local (inside), 02:00 UTC is 10:00 local (outside).
        let mut s = SceneRules::new(&camera(r), 8 * 3600);
        let one = [det("person", 0.9, 20.0, 50.0)];
        assert!(run(&mut s, &one, 2 * 3_600_000).is_empty());
        assert_eq!(run(&mut s, &one, 12 * 3_600_000).len(), 1);
    }

    #[test]
    fn the_motion_gate_passes_changes_and_skips_still_frames() {
        let (w, h) = (64u32, 36u32);
        let grey = vec![100u8; (w * h * 3) as usize];
        let mut g = MotionGate::new(4.0);
        assert!(g.moved(&grey, w, h), "the first frame is analysed");
        assert!(!g.moved(&grey, w, h), "a still scene is skipped");
        let bright = vec![200u8; (w * h * 3) as usize];
        assert!(g.moved(&bright, w, h), "a change is analysed");
    }
}
