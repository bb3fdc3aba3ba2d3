//! Models and rules: the risk model library (风险模型库), ONNX Runtime sessions, the sensor
//! anomaly model's features, the rule engine that turns readings into hits, and vision
//! detectors (`vision`) that turn decoded RGB frames into labelled boxes.
//!
//! This crate knows nothing of RTSP, MQTT, HTTP, video codecs or storage. It is given readings
//! and decoded frames and returns hits and detections; what they become is the hub's business.

pub mod library;
pub mod manifest;
pub mod pull;
pub mod rules;
pub mod runtime;
pub mod sensor;
pub mod vision;

pub use library::{LoadReport, ModelLibrary};
pub use manifest::Manifest;
pub use vision::{Detection, Detector};

use std::path::PathBuf;

/// Errors of the model library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "ONNX Runtime library not found at {path:?}: run scripts/test or scripts/demo once \
         (they extract it from the onnxruntime==1.31.1 wheel into .ort/), or set ORT_DYLIB_PATH"
    )]
    RuntimeMissing { path: PathBuf },
    #[error("ONNX Runtime library {path:?} failed to load: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    #[error("model {model:?}: manifest {path:?}: {message}")]
    Manifest { model: String, path: PathBuf, message: String },
    #[error("model {model:?}: file {path:?}: {message}")]
    File { model: String, path: PathBuf, message: String },
    #[error(
        "model {model:?}: sha256 of {path:?} is {actual}, the manifest says {expected}; \
         the file is corrupt or not the published one (hub models pull fetches it again)"
    )]
    Checksum { model: String, path: PathBuf, expected: String, actual: String },
    #[error("model {model:?}: ONNX Runtime: {message}")]
    Session { model: String, message: String },
    #[error("model {model:?} is not in the library")]
    NotFound { model: String },
    #[error("model {model:?}: frame {width}x{height}: {message}")]
    Frame { model: String, width: u32, height: u32, message: vision::FrameError },
    #[error("model {model:?}: output {output:?}: {message}")]
    Output { model: String, output: String, message: String },
}

impl Error {
    pub fn kind(&self) -> common::ErrorKind {
        match self {
            Error::NotFound { .. } => common::ErrorKind::NotFound,
            Error::Frame { .. } => common::ErrorKind::InvalidArgument,
            Error::RuntimeMissing { .. } | Error::RuntimeLoad { .. } => {
                common::ErrorKind::Unavailable
            }
            _ => common::ErrorKind::Internal,
        }
    }
}
