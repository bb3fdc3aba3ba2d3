//! The model manifest: `manifest.toml` beside each `.onnx` file.
//!
//! ```toml
//! name = "coldchain-temp-ae"
//! version = "1.0.0"
//! task = "sensor_anomaly"
//! file = "coldchain-temp-ae.onnx"
//! sha256 = "…"
//! [[inputs]]
//! name = "window"
//! shape = [-1, 20]        # -1: any size
//! dtype = "f32"
//! [[outputs]]
//! …
//! [sensor]                # task-specific section
//! ```

use serde::{Deserialize, Serialize};

/// What a model does; decides which task section must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Scores windows of sensor readings; needs `[sensor]`.
    SensorAnomaly,
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    /// Dimensions; -1 where any size is accepted.
    pub shape: Vec<i64>,
    pub dtype: Dtype,
}

/// How a sensor anomaly model's input is built and its output judged.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSpec {
    /// The telemetry metric the model reads.
    pub metric: String,
    /// Readings per window.
    pub window: usize,
    /// Smoothing factor of the baseline EMA.
    pub baseline_alpha: f64,
    /// A reading further than this from the baseline is not folded into it, so an excursion
    /// does not drag the baseline along.
    pub baseline_gate: f64,
    /// Features are (reading − baseline) / scale.
    pub scale: f64,
    /// Readings a device must have sent before its first window is scored.
    pub warmup: usize,
    /// How the output is compared with the input; only "mse" (mean squared reconstruction
    /// error) exists.
    pub score: String,
    /// Scores above this are anomalies.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
    /// The ONNX file, relative to the manifest.
    pub file: String,
    /// Hex sha256 of the file; verified at load.
    pub sha256: String,
    #[serde(default)]
    pub licence: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub sensor: Option<SensorSpec>,
}

impl Manifest {
    /// Checks the parts serde cannot: task sections and shapes.
    pub fn check(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("needs at least one input and one output".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256 must be 64 hex digits".into());
        }
        match self.task {
            Task::SensorAnomaly => {
                let s =
                    self.sensor.as_ref().ok_or("task sensor_anomaly needs a [sensor] section")?;
                if s.score != "mse" {
                    return Err(format!(
                        "sensor.score {:?} is not supported (only \"mse\")",
                        s.score
                    ));
                }
                let w = s.window as i64;
                if self.inputs[0].shape.last() != Some(&w)
                    || self.outputs[0].shape.last() != Some(&w)
                {
                    return Err(format!("input and output must end in the window size {w}"));
                }
                if s.warmup < s.window + 1 || s.scale <= 0.0 {
                    return Err("sensor.warmup must exceed window; scale must be positive".into());
                }
            }
        }
        Ok(())
    }
}
