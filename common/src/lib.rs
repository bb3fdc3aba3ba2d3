//! Domain types shared by every crate of the supervision hub: identifiers that can only hold valid
//! values (`SiteId`, `DeviceId`, `Uscc`, `RegionCode`, `ItemCode`), the finding vocabulary
//! (`Severity`, `FindingState`), the error classification (`ErrorKind`), the shutdown token and
//! clocks.
//!
//! This crate deliberately knows nothing about transports (MQTT, RTSP, HTTP), storage or models:
//! everything else depends on it, it depends on nothing of ours.

pub mod clock;
pub mod codes;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod shutdown;
pub mod types;

pub use clock::{Clock, ManualClock, SystemClock, UnixMs};
pub use codes::{ItemCode, RegionCode, Uscc};
pub use error::ErrorKind;
pub use ids::{CameraId, DeviceId, IdError, SiteId};
pub use shutdown::Shutdown;
pub use types::{
    DismissReason, FeedbackKind, FindingState, Industry, RecordAction, RecordState, RiskGrade,
    Severity, Transport, Verdict,
};
