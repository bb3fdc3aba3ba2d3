//! The rule engine: per device, per rule state over event time (a reading's `ts`), producing
//! [`Hit`]s. Sensor-model rules produce score requests that are run in batches.
//!
//! Readings older than the device's newest one do not move rule state (they are late
//! duplicates or replays); the caller still stores them.
//!
//! Times and values come from devices: arithmetic on them saturates (times) or stays in floating
//! point (values), so no reading can overflow, whatever its `ts` or value. Keeping a wrong clock
//! from holding a device's rules is the caller's job (the hub refuses a `ts` outside a window
//! around its own clock).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use common::{Severity, UnixMs};
use config::{Rule, RuleType};

use crate::library::ModelLibrary;
use crate::sensor::{SensorModel, WindowState};

/// The condition a compiled rule checks.
#[derive(Debug, Clone)]
pub enum Check {
    Threshold { above: Option<f64>, below: Option<f64>, hold_ms: i64 },
    RateOfChange { max_per_minute: f64, window_ms: i64 },
    Flatline { window_ms: i64, tolerance: f64 },
    Spike { samples: usize, z: f64 },
    Model { model: Arc<SensorModel>, every: u32 },
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: String,
    /// The finding type: `threshold`, `rate_of_change`, `flatline`, `spike`, `anomaly`.
    pub kind: &'static str,
    pub metric: String,
    pub check: Check,
    pub severity: Severity,
    pub item_code: String,
    pub summary: String,
}

/// All rules, indexed by device kind.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<CompiledRule>,
    by_kind: HashMap<String, Vec<usize>>,
}

fn ms(d: Option<std::time::Duration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn default_summary(r: &Rule) -> String {
    let m = r.metric.as_deref().unwrap_or("");
    match r.rule_type {
        RuleType::Threshold => match (r.above, r.below) {
            (Some(a), Some(b)) => format!("{m} outside {b}..{a}"),
            (Some(a), None) => format!("{m} above {a}"),
            (None, Some(b)) => format!("{m} below {b}"),
            (None, None) => m.to_owned(),
        },
        RuleType::RateOfChange => format!("{m} changing faster than {:?}/min", r.max_per_minute),
        RuleType::Flatline => format!("{m} not changing (stuck sensor)"),
        RuleType::Spike => format!("{m} spike"),
        RuleType::Model => format!("anomaly model {}", r.model.as_deref().unwrap_or("")),
    }
}

impl RuleSet {
    /// Compiles validated rules. A model rule whose model is not in the library is left out
    /// and reported; the other rules work.
    pub fn compile(rules: &[Rule], library: &ModelLibrary) -> (RuleSet, Vec<String>) {
        let mut set = RuleSet::default();
        let mut problems = Vec::new();
        for r in rules {
            let metric = r.metric.clone().unwrap_or_default();
            let (kind, check, metric) = match r.rule_type {
                RuleType::Threshold => (
                    "threshold",
                    Check::Threshold { above: r.above, below: r.below, hold_ms: ms(r.hold) },
                    metric,
                ),
                RuleType::RateOfChange => (
                    "rate_of_change",
                    Check::RateOfChange {
                        max_per_minute: r.max_per_minute.unwrap_or(f64::INFINITY),
                        window_ms: ms(r.window),
                    },
                    metric,
                ),
                RuleType::Flatline => (
                    "flatline",
                    Check::Flatline {
                        window_ms: ms(r.window),
                        tolerance: r.tolerance.unwrap_or(0.0),
                    },
                    metric,
                ),
                RuleType::Spike => (
                    "spike",
                    Check::Spike { samples: r.samples.unwrap_or(30), z: r.z.unwrap_or(6.0) },
                    metric,
                ),
                RuleType::Model => {
                    let name = r.model.clone().unwrap_or_default();
                    let model = library.get(&name).and_then(SensorModel::new);
                    match model {
                        Ok(m) => {
                            let metric = m.spec.metric.clone();
                            let every = r.every.unwrap_or(1).max(1);
                            ("anomaly", Check::Model { model: Arc::new(m), every }, metric)
                        }
                        Err(e) => {
                            problems.push(format!("rule {:?} disabled: {e}", r.id));
                            continue;
                        }
                    }
                }
            };
            let idx = set.rules.len();
            set.rules.push(CompiledRule {
                id: r.id.clone(),
                kind,
                metric,
                check,
                severity: r.severity,
                item_code: r.item_code.clone(),
                summary: r.summary.clone().unwrap_or_else(|| default_summary(r)),
            });
            for k in &r.device_kinds {
                set.by_kind.entry(k.clone()).or_default().push(idx);
            }
        }
        (set, problems)
    }

    pub fn for_kind(&self, kind: &str) -> &[usize] {
        self.by_kind.get(kind).map_or(&[], Vec::as_slice)
    }
}

/// A rule's condition held for a reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The caller's tag of the reading (e.g. its index in a batch).
    pub tag: usize,
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    pub ts: UnixMs,
    /// The metric's value, or the model's score.
    pub value: f64,
}

#[derive(Debug, Clone)]
enum State {
    Threshold { since: Option<UnixMs> },
    Series(VecDeque<(UnixMs, f64)>),
    Model(WindowState),
}

#[derive(Debug, Default)]
struct DeviceState {
    last_ts: Option<UnixMs>,
    /// One state per rule of the device's kind, in `for_kind` order.
    states: Vec<State>,
}

/// Windows waiting to be scored, grouped per model.
#[derive(Debug, Default)]
pub struct ScoreBatch {
    groups: Vec<ScoreGroup>,
}

#[derive(Debug)]
struct ScoreGroup {
    model: Arc<SensorModel>,
    features: Vec<f32>,
    /// (tag, rule, ts) per window.
    meta: Vec<(usize, usize, UnixMs)>,
}

impl ScoreBatch {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Windows queued.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.meta.len()).sum()
    }

    fn push(
        &mut self,
        model: &Arc<SensorModel>,
        state: &WindowState,
        meta: (usize, usize, UnixMs),
    ) {
        let i = match self.groups.iter().position(|g| Arc::ptr_eq(&g.model, model)) {
            Some(i) => i,
            None => {
                self.groups.push(ScoreGroup {
                    model: model.clone(),
                    features: Vec::new(),
                    meta: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        state.features(&model.spec, &mut g.features);
        g.meta.push(meta);
    }

    /// Runs every model once over its windows; hits for scores above the threshold. Blocking.
    pub fn run(self) -> Result<Vec<Hit>, crate::Error> {
        let mut hits = Vec::new();
        for g in self.groups {
            let threshold = g.model.spec.threshold;
            let scores = g.model.score(g.features)?;
            for ((tag, rule, ts), s) in g.meta.into_iter().zip(scores) {
                if f64::from(s) > threshold {
                    hits.push(Hit { tag, rule, ts, value: f64::from(s) });
                }
            }
        }
        Ok(hits)
    }
}

/// One reading as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// The caller's tag, returned in hits.
    pub tag: usize,
    pub device: &'a str,
    pub kind: &'a str,
    pub ts: UnixMs,
    pub values: &'a [(String, f64)],
}

/// What evaluations produced: immediate hits, and model windows to score in one batch.
#[derive(Debug, Default)]
pub struct Outcome {
    pub hits: Vec<Hit>,
    pub scores: ScoreBatch,
}

/// Per-device rule state. Owned by one task; not shared.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Arc<RuleSet>,
    devices: HashMap<String, DeviceState>,
}

/// Drops entries from the front while the second one is at or before `start`, so the deque
/// keeps exactly one entry at or before the window start (when there is one).
fn trim_window(q: &mut VecDeque<(UnixMs, f64)>, start: UnixMs) {
    while q.len() >= 2 && q[1].0 <= start {
        q.pop_front();
    }
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Self { rules, devices: HashMap::new() }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Forgets a device's state (e.g. it was deleted).
    pub fn forget(&mut self, device: &str) {
        self.devices.remove(device);
    }

    /// Evaluates one reading. Immediate hits go to `out.hits`; model windows to `out.scores`.
    pub fn evaluate(&mut self, reading: Reading<'_>, out: &mut Outcome) {
        let Reading { tag, device, kind, ts, values } = reading;
        let (hits, scores) = (&mut out.hits, &mut out.scores);
        let indices = self.rules.for_kind(kind);
        if indices.is_empty() {
            return;
        }
        let rules = &self.rules;
        let dev = self.devices.entry(device.to_owned()).or_insert_with(|| DeviceState {
            last_ts: None,
            states: indices
                .iter()
                .map(|&i| match rules.rules[i].check {
                    Check::Threshold { .. } => State::Threshold { since: None },
                    Check::Model { .. } => State::Model(WindowState::default()),
                    _ => State::Series(VecDeque::new()),
                })
                .collect(),
        });
        if dev.last_ts.is_some_and(|last| ts < last) {
            return;
        }
        dev.last_ts = Some(ts);
        for (slot, &ri) in indices.iter().enumerate() {
            let rule = &rules.rules[ri];
            let Some(v) = values.iter().find(|(m, _)| *m == rule.metric).map(|(_, v)| *v) else {
                continue;
            };
            let hit = Hit { tag, rule: ri, ts, value: v };
            match (&rule.check, &mut dev.states[slot]) {
                (Check::Threshold { above, below, hold_ms }, State::Threshold { since }) => {
                    let out = above.is_some_and(|a| v > a) || below.is_some_and(|b| v < b);
                    if !out {
                        *since = None;
                        continue;
                    }
                    let start = *since.get_or_insert(ts);
                    if ts.saturating_sub(start) >= *hold_ms {
                        hits.push(hit);
                    }
                }
                (Check::RateOfChange { max_per_minute, window_ms }, State::Series(q)) => {
                    q.push_back((ts, v));
                    let start = ts.saturating_sub(*window_ms);
                    trim_window(q, start);
                    let (t0, v0) = q[0];
                    if t0 <= start && ts > t0 {
                        // In f64: `ts - t0` may not fit an i64 (e.g. from i64::MIN to i64::MAX).
                        let minutes = (ts as f64 - t0 as f64) / 60_000.0;
                        let rate = (v - v0).abs() / minutes;
                        if rate > *max_per_minute {
                            hits.push(hit);
                        }
                    }
                }
                (Check::Flatline { window_ms, tolerance }, State::Series(q)) => {
                    q.push_back((ts, v));
                    let start = ts.saturating_sub(*window_ms);
                    trim_window(q, start);
                    let covered = q[0].0 <= start;
                    if covered && q.len() >= 3 {
                        let (lo, hi) = q.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, x)| {
                            (lo.min(*x), hi.max(*x))
                        });
                        if hi - lo <= *tolerance {
                            hits.push(hit);
                        }
                    }
                }
                (Check::Spike { samples, z }, State::Series(q)) => {
                    if q.len() == *samples {
                        let n = q.len() as f64;
                        let mean = q.iter().map(|(_, x)| x).sum::<f64>() / n;
                        let var = q.iter().map(|(_, x)| (x - mean) * (x - mean)).sum::<f64>() / n;
                        let floor = var.sqrt().max(1e-6 + 1e-3 * mean.abs());
                        if (v - mean).abs() > z * floor {
                            // A spike stays out of the reference window.
                            hits.push(hit);
                            continue;
                        }
                    }
                    q.push_back((ts, v));
                    if q.len() > *samples {
                        q.pop_front();
                    }
                }
                (Check::Model { model, every }, State::Model(w)) => {
                    if w.push(v, &model.spec) && w.count() % u64::from(*every) == 0 {
                        scores.push(model, w, (tag, ri, ts));
                    }
                }
                _ => unreachable!("rule state is built from the rule's check"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        toml::from_str(toml_text).unwrap()
    }

    fn engine(r: Rule) -> Engine {
        let (set, problems) = RuleSet::compile(&[r], &ModelLibrary::default());
        assert!(problems.is_empty(), "{problems:?}");
        Engine::new(Arc::new(set))
    }

    /// Feeds (minute, value) readings; returns the minutes that hit.
    fn run(e: &mut Engine, readings: &[(i64, f64)]) -> Vec<i64> {
        let mut out = Outcome::default();
        for (i, (min, v)) in readings.iter().enumerate() {
            let values = [("m".to_owned(), *v)];
            let r = Reading { tag: i, device: "d", kind: "k", ts: min * 60_000, values: &values };
            e.evaluate(r, &mut out);
        }
        out.hits.iter().map(|h| h.ts / 60_000).collect()
    }

    const COMMON: &str = "id = \"r\"\ndevice_kinds = [\"k\"]\nmetric = \"m\"\nseverity = \"minor\"\nitem_code = \"12345678901234\"\n";

    #[test]
    fn threshold_fires_after_holding_and_resets_when_normal() {
        let mut e =
            engine(rule(&format!("{COMMON}type = \"threshold\"\nabove = 8.0\nfor = \"2m\"")));
        let r = [(0, 9.0), (1, 9.0), (2, 9.0), (3, 7.0), (4, 9.0), (5, 9.0), (6, 9.5)];
        assert_eq!(run(&mut e, &r), vec![2, 6]);
    }

    #[test]
    fn threshold_below_fires_at_once_without_hold() {
        let mut e = engine(rule(&format!("{COMMON}type = \"threshold\"\nbelow = 1.0")));
        assert_eq!(run(&mut e, &[(0, 2.0), (1, 0.5), (2, 2.0)]), vec![1]);
    }

    #[test]
    fn rate_of_change_needs_a_full_window() {
        let mut e = engine(rule(&format!(
            "{COMMON}type = \"rate_of_change\"\nmax_per_minute = 5.0\nwindow = \"2m\""
        )));
        // +4/min is fine, then +8/min over two minutes fires.
        let r = [(0, 0.0), (1, 4.0), (2, 8.0), (3, 16.0), (4, 24.0), (5, 24.0), (6, 24.0)];
        assert_eq!(run(&mut e, &r), vec![3, 4]);
    }

    #[test]
    fn flatline_fires_once_the_window_is_covered_by_identical_values() {
        let mut e =
            engine(rule(&format!("{COMMON}type = \"flatline\"\nwindow = \"3m\"\ntolerance = 0.0")));
        let r = [(0, 1.0), (1, 2.0), (2, 2.0), (3, 2.0), (4, 2.0), (5, 2.0), (6, 3.0)];
        assert_eq!(run(&mut e, &r), vec![4, 5]);
    }

    #[test]
    fn spike_compares_with_the_reference_window_and_keeps_spikes_out_of_it() {
        let mut e = engine(rule(&format!("{COMMON}type = \"spike\"\nsamples = 4\nz = 5.0")));
        let r = [(0, 10.0), (1, 10.2), (2, 9.8), (3, 10.0), (4, 30.0), (5, 30.0), (6, 10.1)];
        assert_eq!(run(&mut e, &r), vec![4, 5]);
    }

    #[test]
    fn late_readings_do_not_move_state() {
        let mut e = engine(rule(&format!("{COMMON}type = \"threshold\"\nabove = 8.0")));
        assert_eq!(run(&mut e, &[(5, 1.0), (4, 9.0), (6, 9.0)]), vec![6]);
    }

    #[test]
    fn a_model_rule_without_its_model_is_reported_and_left_out() {
        let r = rule(
            &format!("{COMMON}type = \"model\"\nmodel = \"nope\"").replace("metric = \"m\"\n", ""),
        );
        let (set, problems) = RuleSet::compile(&[r], &ModelLibrary::default());
        assert!(set.rules.is_empty());
        assert!(problems[0].contains("\"nope\""), "{problems:?}");
    }
}
