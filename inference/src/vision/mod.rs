//! Object detection on still frames: a [`Detector`] fits a packed RGB8 frame to a detection
//! model's input (see [`crate::manifest::DetectionSpec`]), runs it, decodes the outputs of its
//! family, applies class-wise NMS and returns boxes in frame pixels.
//!
//! Frames come from the caller already decoded; this module knows nothing of cameras, codecs or
//! streams. A detector reuses its buffers, so steady-state detection allocates only the
//! returned detections (none with [`Detector::detect_into`]) and whatever ONNX Runtime does.

pub mod decode;
pub mod heads;
pub mod nms;
pub mod preprocess;
pub mod resize;
pub mod scene;

use std::sync::Arc;

use crate::Error;
use crate::library::Model;
use crate::manifest::{DetectionSpec, Task};

pub use decode::Candidate;
pub use preprocess::{FrameError, Geometry, Preprocessor};

/// One detected object, in pixels of the frame given to [`Detector::detect`]. Boxes are not
/// clipped to the frame (a person cut by the edge may extend past it).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Index into the model's labels.
    pub class: usize,
    /// The class name (shared with the detector; cloning it does not allocate).
    pub label: Arc<str>,
    /// Confidence in 0–1, as the model family defines it.
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// Five `(x, y)` points for face models (YuNet: right eye, left eye, nose tip, right and
    /// left mouth corners), in frame pixels.
    pub landmarks: Option<[f32; 10]>,
}

/// A detection model with its buffers: one per thread or camera worker (it is `Send`; the model
/// behind it is shared and pooled).
pub struct Detector {
    model: Arc<Model>,
    spec: DetectionSpec,
    labels: Vec<Arc<str>>,
    pre: Preprocessor,
    decoder: decode::DecodeState,
    input_shape: [usize; 4],
    input: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    candidates: Vec<Candidate>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.model.manifest.name)
            .field("decoder", &self.spec.decoder)
            .finish()
    }
}

impl Detector {
    /// A detector for a loaded `detection` model (its labels already read by the library).
    pub fn new(model: Arc<Model>) -> Result<Self, Error> {
        let m = &model.manifest;
        let not_detection = |message: String| Error::Manifest {
            model: m.name.clone(),
            path: model.path.clone(),
            message,
        };
        let spec = match (&m.task, &m.detection) {
            (Task::Detection, Some(spec)) => spec.clone(),
            _ => {
                return Err(not_detection("not a detection model (no [detection] section)".into()));
            }
        };
        if m.labels.is_empty() {
            return Err(not_detection("a detection model needs labels".into()));
        }
        crate::manifest::check_outputs(&spec, &m.outputs, m.labels.len()).map_err(not_detection)?;
        let labels = m.labels.iter().map(|l| Arc::from(l.as_str())).collect();
        let (w, h) = (spec.input_width as usize, spec.input_height as usize);
        let decoder = decode::DecodeState::new(&spec, &m.outputs);
        let outputs =
            (0..m.outputs.len()).map(|i| Vec::with_capacity(decoder.output_len(i))).collect();
        Ok(Self {
            pre: Preprocessor::new(&spec),
            decoder,
            input_shape: [1, 3, h, w],
            input: Vec::with_capacity(3 * w * h),
            outputs,
            candidates: Vec::new(),
            labels,
            spec,
            model,
        })
    }

    /// The model's detection settings.
    pub fn spec(&self) -> &DetectionSpec {
        &self.spec
    }

    /// The class names, by class index.
    pub fn labels(&self) -> &[Arc<str>] {
        &self.labels
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.model.manifest.name
    }

    /// Detects objects in the packed RGB8 frame `rgb` (`width` × `height`, rows top to bottom,
    /// no padding). Best score first. Blocking and CPU-heavy: call it off the async runtime.
    pub fn detect(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<Detection>, Error> {
        let mut out = Vec::new();
        self.detect_into(rgb, width, height, &mut out)?;
        Ok(out)
    }

    /// As [`Detector::detect`], into `out` (cleared first), so a caller that keeps `out`
    /// allocates nothing per frame.
    pub fn detect_into(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<Detection>,
    ) -> Result<(), Error> {
        out.clear();
        let geometry = self.pre.run(rgb, width, height, &mut self.input).map_err(|e| {
            Error::Frame { model: self.model.manifest.name.clone(), width, height, message: e }
        })?;
        self.model.run_f32_into(&self.input, &self.input_shape, &mut self.outputs)?;
        for (i, o) in self.outputs.iter().enumerate() {
            let want = self.decoder.output_len(i);
            if o.len() != want {
                return Err(Error::Output {
                    model: self.model.manifest.name.clone(),
                    output: self.model.manifest.outputs[i].name.clone(),
                    message: format!("{} values where the manifest's shape has {want}", o.len()),
                });
            }
        }
        self.candidates.clear();
        self.decoder.decode(&self.outputs, &mut self.candidates);
        nms::nms_class_wise(&mut self.candidates, self.spec.nms_iou);
        out.extend(self.candidates.iter().map(|c| {
            let (x1, y1) = geometry.to_frame(c.bbox[0], c.bbox[1]);
            let (x2, y2) = geometry.to_frame(c.bbox[2], c.bbox[3]);
            let landmarks = c.landmarks.map(|mut lm| {
                for p in lm.chunks_exact_mut(2) {
                    (p[0], p[1]) = geometry.to_frame(p[0], p[1]);
                }
                lm
            });
            Detection {
                class: c.class,
                // In range: `new` checked the model's class count against the labels.
                label: self.labels[c.class].clone(),
                score: c.score,
                x1,
                y1,
                x2,
                y2,
                landmarks,
            }
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_detector_can_move_to_a_worker_thread() {
        fn send<T: Send>() {}
        send::<super::Detector>();
        send::<super::Detection>();
    }
}
