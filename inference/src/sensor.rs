//! The sensor anomaly model's features and scoring (see the manifest's description and
//! `models/coldchain-temp-ae/train.py`, which this must match exactly):
//!
//! - baseline `B_0 = t_0`, then `B_j = B_{j−1} + α (t_j − B_{j−1})` in f64, skipping readings
//!   further than `baseline_gate` from `B_{j−1}`;
//! - the window ending at reading k has `x_i = (t_{k−W+1+i} − B_{k−W}) / scale`, oldest first:
//!   the baseline as it stood before the window's first reading;
//! - windows are scored once `warmup` readings have arrived;
//! - score = mean squared difference between features and the model's reconstruction.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::Error;
use crate::library::Model;
use crate::manifest::SensorSpec;

/// One device's feature state for one model.
#[derive(Debug, Clone, Default)]
pub struct WindowState {
    count: u64,
    baseline: f64,
    /// The last `window + 1` readings with the baseline after each.
    ring: VecDeque<(f64, f64)>,
}

impl WindowState {
    /// Folds in one reading; true when a window ending at it may be scored.
    pub fn push(&mut self, t: f64, spec: &SensorSpec) -> bool {
        if self.count == 0 {
            self.baseline = t;
        } else if (t - self.baseline).abs() <= spec.baseline_gate {
            self.baseline += spec.baseline_alpha * (t - self.baseline);
        }
        self.count += 1;
        self.ring.push_back((t, self.baseline));
        if self.ring.len() > spec.window + 1 {
            self.ring.pop_front();
        }
        self.count >= spec.warmup as u64 && self.ring.len() == spec.window + 1
    }

    /// Appends the current window's features to `out`.
    pub fn features(&self, spec: &SensorSpec, out: &mut Vec<f32>) {
        let base = self.ring[0].1;
        out.extend(self.ring.iter().skip(1).map(|(t, _)| ((t - base) / spec.scale) as f32));
    }

    /// Readings seen.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A sensor anomaly model ready to score batches of windows.
#[derive(Debug, Clone)]
pub struct SensorModel {
    pub model: Arc<Model>,
    pub spec: SensorSpec,
}

impl SensorModel {
    pub fn new(model: Arc<Model>) -> Result<Self, Error> {
        let spec = model.manifest.sensor.clone().ok_or_else(|| Error::Manifest {
            model: model.manifest.name.clone(),
            path: model.path.clone(),
            message: "not a sensor_anomaly model (no [sensor] section)".into(),
        })?;
        Ok(Self { model, spec })
    }

    /// Scores `n = features.len() / window` windows in one run. Blocking.
    pub fn score(&self, features: Vec<f32>) -> Result<Vec<f32>, Error> {
        let w = self.spec.window;
        let n = features.len() / w;
        if n == 0 {
            return Ok(Vec::new());
        }
        let input = features.clone();
        let recon = self.model.run_f32(input, &[n, w])?;
        Ok(features
            .chunks_exact(w)
            .zip(recon.chunks_exact(w))
            .map(|(x, y)| x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / w as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SensorSpec {
        SensorSpec {
            metric: "t".into(),
            window: 3,
            baseline_alpha: 0.5,
            baseline_gate: 3.0,
            scale: 2.0,
            warmup: 5,
            score: "mse".into(),
            threshold: 1.0,
        }
    }

    #[test]
    fn features_use_the_baseline_from_before_the_window() {
        let s = spec();
        let mut w = WindowState::default();
        // 9.0 is gated out of the baseline (more than 3 from it).
        let temps = [4.0, 6.0, 9.0, 8.0, 10.0];
        let ready: Vec<bool> = temps.iter().map(|t| w.push(*t, &s)).collect();
        assert_eq!(ready, [false, false, false, false, true]);
        // B_0 = 4, B_1 = 5: the window ending at reading 4 is readings 2..=4, base B_1.
        let mut out = Vec::new();
        w.features(&s, &mut out);
        assert_eq!(out, vec![(9.0 - 5.0) / 2.0, (8.0 - 5.0) / 2.0, (10.0 - 5.0) / 2.0]);
        // The next window starts at reading 3; its base is B_2 = B_1 = 5 (9.0 was gated out).
        w.push(4.0, &s);
        out.clear();
        w.features(&s, &mut out);
        assert_eq!(out[0], ((8.0 - 5.0) / 2.0) as f32);
    }
}
