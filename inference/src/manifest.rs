//! The model manifest: `manifest.toml` beside each `.onnx` file, or a manifest that names a
//! third-party file kept elsewhere (found by file name on the search path, see `library`).
//!
//! ```toml
//! name = "coldchain-temp-ae"
//! version = "1.0.0"
//! task = "sensor_anomaly"
//! file = "coldchain-temp-ae.onnx"
//! sha256 = "…"
//! url = "https://…"       # optional: where the file is published (pinned)
//! labels = ["…"]          # optional: class names in output order (or labels_file = "…")
//! [[inputs]]
//! name = "window"
//! shape = [-1, 20]        # -1: any size
//! dtype = "f32"
//! [[outputs]]
//! …
//! [sensor]                # task-specific section: [sensor] or [detection]
//! ```

use serde::{Deserialize, Serialize};

use crate::vision::heads::{STRIDES, aizoo_anchor_count, grid_cells};

/// What a model does; decides which task section must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Scores windows of sensor readings; needs `[sensor]`.
    SensorAnomaly,
    /// Finds labelled boxes in an image; needs `[detection]` and class labels.
    Detection,
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

/// The output decoding of a detector family (see `vision::decode` for each one's tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// FastestDet: one `[1, 5+C, gh, gw]` map; score `obj^0.6 · max(cls)^0.4`.
    Fastestdet,
    /// YOLOX: `[1, N, 5+C]` over grids of strides 8/16/32; score `obj · cls`.
    Yolox,
    /// YuNet (2023mar): cls, obj, bbox, kps per stride 8/16/32 (12 outputs in that order);
    /// score `sqrt(cls · obj)`; five landmarks.
    Yunet,
    /// AIZOO face-mask SSD: `loc [1, N, 4]` and `cls [1, N, C]` over its fixed anchors.
    SsdAizoo,
}

/// Order of the colour planes the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[1, 3, height, width]`, one plane per channel.
    #[default]
    Nchw,
}

/// How a frame is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scaled to exactly the input size; the aspect ratio is not kept.
    Stretch,
    /// Scaled by `r = min(input_width / width, input_height / height)` to
    /// `(floor(width·r), floor(height·r))`, placed at the top-left corner, the rest filled with
    /// `pad_value`.
    LetterboxTopLeft,
}

fn zeros3() -> [f32; 3] {
    [0.0; 3]
}

fn ones3() -> [f32; 3] {
    [1.0; 3]
}

/// How a detection model's input is built and its output decoded. Resizing is bilinear with
/// PIL's filter (a triangle whose support widens when downscaling), so results match models
/// validated in Python.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSpec {
    /// The family of the model's outputs.
    pub decoder: Decoder,
    /// Input tensor width in pixels.
    pub input_width: u32,
    /// Input tensor height in pixels.
    pub input_height: u32,
    /// Order of the colour planes in the input tensor.
    pub channel_order: ChannelOrder,
    /// Layout of the input tensor; only `nchw`.
    #[serde(default)]
    pub layout: Layout,
    /// How the frame is fitted to the input size.
    pub resize: Resize,
    /// Pixel value (0–255, before normalisation) of the letterbox padding.
    #[serde(default)]
    pub pad_value: f32,
    /// Each input value is `(pixel · scale − mean[c]) / std[c]`, pixel in 0–255 and `c` the
    /// plane index in the tensor (after `channel_order`).
    pub scale: f32,
    /// Per-plane mean subtracted after scaling; default 0.
    #[serde(default = "zeros3")]
    pub mean: [f32; 3],
    /// Per-plane divisor applied last; default 1.
    #[serde(default = "ones3")]
    pub std: [f32; 3],
    /// Detections scoring at or below this are dropped (scores are in 0–1).
    pub score_threshold: f32,
    /// Class-wise non-maximum suppression: a box overlapping a better one of its class by more
    /// than this intersection over union is dropped.
    pub nms_iou: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub task: Task,
    #[serde(default)]
    pub description: String,
    /// The ONNX file: relative to the manifest's folder, else found by its file name in the
    /// directories of the search path (a mirror of third-party models).
    pub file: String,
    /// Hex sha256 of the file; verified at load.
    pub sha256: String,
    /// Where the file is published, pinned to one revision; said when the file is missing.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub licence: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Class names in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A file of class names, one a line, found like `file`; exclusive with `labels`. The
    /// library reads it at load and fills `labels`.
    #[serde(default)]
    pub labels_file: Option<String>,
    #[serde(default)]
    pub sensor: Option<SensorSpec>,
    #[serde(default)]
    pub detection: Option<DetectionSpec>,
}

impl Manifest {
    /// Checks the parts serde cannot: task sections and shapes. With `labels_file`, the class
    /// count is checked once the library has read the labels ([`Manifest::set_labels`]).
    pub fn check(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("needs at least one input and one output".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256 must be 64 hex digits".into());
        }
        if let Some(url) = &self.url
            && !url.starts_with("https://")
        {
            return Err(format!("url {url:?} must be an https:// address"));
        }
        if self.labels_file.is_some() && !self.labels.is_empty() {
            return Err("give labels or labels_file, not both".into());
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
            Task::Detection => self.check_detection()?,
        }
        Ok(())
    }

    fn check_detection(&self) -> Result<(), String> {
        let d = self.detection.as_ref().ok_or("task detection needs a [detection] section")?;
        if self.labels.is_empty() && self.labels_file.is_none() {
            return Err("task detection needs labels or labels_file".into());
        }
        if !(1..=8192).contains(&d.input_width) || !(1..=8192).contains(&d.input_height) {
            return Err("detection.input_width and input_height must be in 1..=8192".into());
        }
        let (w, h) = (i64::from(d.input_width), i64::from(d.input_height));
        let input = &self.inputs[0].shape;
        if input.len() != 4 || !matches!(input[0], -1 | 1) || input[1..] != [3, h, w] {
            return Err(format!(
                "inputs[0].shape {input:?} must be [1, 3, {h}, {w}] (nchw, \
                 detection.input_height and input_width)"
            ));
        }
        if !(d.scale.is_finite() && d.scale > 0.0) {
            return Err("detection.scale must be positive".into());
        }
        if d.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || d.mean.iter().any(|m| !m.is_finite())
        {
            return Err("detection.std must be positive and detection.mean finite".into());
        }
        if !(0.0..=255.0).contains(&d.pad_value) {
            return Err("detection.pad_value is a pixel value in 0..=255".into());
        }
        if !(d.score_threshold > 0.0 && d.score_threshold < 1.0) {
            return Err("detection.score_threshold must be in (0, 1)".into());
        }
        if !(d.nms_iou > 0.0 && d.nms_iou <= 1.0) {
            return Err("detection.nms_iou must be in (0, 1]".into());
        }
        check_outputs(d, &self.outputs, self.labels.len())
    }

    /// Sets the labels read from `labels_file` (one a line, blank lines skipped) and checks
    /// their count against the outputs.
    pub fn set_labels(&mut self, text: &str) -> Result<(), String> {
        self.labels =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if self.labels.is_empty() {
            return Err("the labels file has no labels".into());
        }
        if let Some(d) = &self.detection {
            check_outputs(d, &self.outputs, self.labels.len())?;
        }
        Ok(())
    }
}

/// Checks that `outputs` (the manifest's, in order) are what `d.decoder` reads, and that they
/// carry `classes` classes (unchecked when 0: labels not read yet).
pub fn check_outputs(
    d: &DetectionSpec,
    outputs: &[TensorSpec],
    classes: usize,
) -> Result<(), String> {
    let (w, h) = (d.input_width as usize, d.input_height as usize);
    let want_outputs = match d.decoder {
        Decoder::Fastestdet | Decoder::Yolox => 1,
        Decoder::Yunet => 12,
        Decoder::SsdAizoo => 2,
    };
    if outputs.len() != want_outputs {
        return Err(format!(
            "decoder {:?} reads {want_outputs} outputs, the manifest lists {}",
            d.decoder,
            outputs.len()
        ));
    }
    // Shapes with the batch dimension (1 or -1) removed.
    let mut dims = Vec::with_capacity(outputs.len());
    for o in outputs {
        match o.shape.split_first() {
            Some((-1 | 1, rest)) if rest.iter().all(|d| *d > 0) => {
                dims.push(rest.iter().map(|d| *d as usize).collect::<Vec<_>>());
            }
            _ => {
                return Err(format!(
                    "output {:?}: shape {:?} must be a batch of 1 with fixed sizes",
                    o.name, o.shape
                ));
            }
        }
    }
    let bad = |i: usize, want: String| {
        Err(format!("output {:?}: shape {:?} must be {want}", outputs[i].name, outputs[i].shape))
    };
    let model_classes = match d.decoder {
        Decoder::Fastestdet => {
            if dims[0].len() != 3 || dims[0][0] <= 5 {
                return bad(0, "[1, 5 + classes, grid_h, grid_w]".into());
            }
            dims[0][0] - 5
        }
        Decoder::Yolox => {
            if w % 32 != 0 || h % 32 != 0 {
                return Err("decoder yolox needs an input size divisible by 32".into());
            }
            let n = grid_cells(w, h);
            if dims[0].len() != 2 || dims[0][0] != n || dims[0][1] <= 5 {
                return bad(0, format!("[1, {n}, 5 + classes]"));
            }
            dims[0][1] - 5
        }
        Decoder::Yunet => {
            if w % 32 != 0 || h % 32 != 0 {
                return Err("decoder yunet needs an input size divisible by 32".into());
            }
            for (g, last) in [1usize, 1, 4, 10].into_iter().enumerate() {
                for (k, s) in STRIDES.iter().enumerate() {
                    let i = g * 3 + k;
                    let n = (w / s) * (h / s);
                    if dims[i] != [n, last] {
                        return bad(
                            i,
                            format!(
                                "[1, {n}, {last}] (outputs in order cls, obj, bbox, kps, each \
                                 for strides 8, 16, 32)"
                            ),
                        );
                    }
                }
            }
            1
        }
        Decoder::SsdAizoo => {
            let n = aizoo_anchor_count();
            if dims[0] != [n, 4] {
                return bad(0, format!("[1, {n}, 4] (loc first, then cls)"));
            }
            if dims[1].len() != 2 || dims[1][0] != n || dims[1][1] == 0 {
                return bad(1, format!("[1, {n}, classes]"));
            }
            dims[1][1]
        }
    };
    if classes != 0 && classes != model_classes {
        return Err(format!("the model has {model_classes} classes, the labels {classes}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FASTESTDET: &str = r#"
        name = "fd"
        version = "1"
        task = "detection"
        file = "fd.onnx"
        sha256 = "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880"
        labels = ["a", "b"]
        [[inputs]]
        name = "input.1"
        shape = [1, 3, 352, 352]
        dtype = "f32"
        [[outputs]]
        name = "758"
        shape = [1, 7, 22, 22]
        dtype = "f32"
        [detection]
        decoder = "fastestdet"
        input_width = 352
        input_height = 352
        channel_order = "bgr"
        resize = "stretch"
        scale = 0.00392156862745098
        score_threshold = 0.65
        nms_iou = 0.45
    "#;

    fn parse(text: &str) -> Manifest {
        toml::from_str(text).expect("test manifest parses")
    }

    #[test]
    fn a_detection_manifest_checks_and_takes_defaults() {
        let m = parse(FASTESTDET);
        m.check().unwrap();
        let d = m.detection.unwrap();
        assert_eq!(d.layout, Layout::Nchw);
        assert_eq!((d.mean, d.std, d.pad_value), ([0.0; 3], [1.0; 3], 0.0));
    }

    #[test]
    fn detection_rules_are_checked() {
        let cases = [
            ("labels = [\"a\", \"b\"]", "labels = [\"a\"]", "classes"),
            ("labels = [\"a\", \"b\"]", "", "labels or labels_file"),
            ("labels = [\"a\", \"b\"]", "labels = [\"a\", \"b\"]\nlabels_file = \"x\"", "both"),
            ("shape = [1, 3, 352, 352]", "shape = [1, 352, 352, 3]", "nchw"),
            ("nms_iou = 0.45", "nms_iou = 0.0", "nms_iou"),
            ("score_threshold = 0.65", "score_threshold = 1.5", "score_threshold"),
            ("scale = 0.00392156862745098", "scale = 0.0", "scale"),
            ("resize = \"stretch\"", "resize = \"stretch\"\nstd = [1, 0, 1]", "std"),
            ("resize = \"stretch\"", "resize = \"stretch\"\npad_value = 300", "pad_value"),
            ("file = \"fd.onnx\"", "file = \"fd.onnx\"\nurl = \"http://x\"", "https"),
            ("[detection]", "[sensor_]", "unknown field"),
        ];
        for (from, to, want) in cases {
            let text = FASTESTDET.replace(from, to);
            let err = match toml::from_str::<Manifest>(&text) {
                Err(e) => e.to_string(),
                Ok(m) => m.check().expect_err(to),
            };
            assert!(err.contains(want), "{to:?}: {err}");
        }
        let no_section = FASTESTDET.split("[detection]").next().unwrap_or_default();
        let err = parse(no_section).check().unwrap_err();
        assert!(err.contains("[detection]"), "{err}");
    }

    #[test]
    fn labels_from_a_file_are_counted_against_the_outputs() {
        let mut m = parse(&FASTESTDET.replace("labels = [\"a\", \"b\"]", "labels_file = \"l\""));
        m.check().unwrap();
        assert!(m.set_labels("a\n\n").unwrap_err().contains("classes"));
        m.set_labels("a\r\nb\n").unwrap();
        assert_eq!(m.labels, ["a", "b"]);
    }
}
