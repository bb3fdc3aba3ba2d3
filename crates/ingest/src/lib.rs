//! Sources of the supervision hub.
//!
//! - [`gateway`]: the MQTT front door of embedded mode. Devices connect here; the gateway checks
//!   each device's own credentials (argon2), enforces the per-topic ACL that the embedded rumqttd
//!   broker lacks (a device writes only its own topics), maps the ThingsBoard-style
//!   `v1/devices/me/telemetry` onto the device's own topic, and relays everything else to rumqttd
//!   on a loopback listener.
//! - [`broker`]: starts the embedded rumqttd broker and consumes device messages through a local
//!   link.
//! - [`external`]: the same consumer against an external broker (e.g. Mosquitto) with a shared
//!   subscription, so several hub processes split the load.
//! - [`topic`] and [`telemetry`]: the documented topic and payload contract.
//!
//! This crate knows nothing of storage, HTTP or models: it hands [`Inbound`] messages to a
//! bounded channel and leaves their meaning to the hub.

pub mod broker;
pub mod camera;
pub mod external;
pub mod gateway;
pub mod native;
pub mod telemetry;
pub mod topic;

use bytes::Bytes;
use common::{SiteId, UnixMs};

/// One message from a device, as it arrived on the broker.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: Bytes,
    pub payload: Bytes,
    /// Wall-clock time the hub received it.
    pub received_at: UnixMs,
}

/// What the gateway needs to know of a device to authenticate it.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    pub site: SiteId,
    /// argon2 PHC string.
    pub secret_hash: String,
}

/// Looks up devices by id; implemented by the hub's device registry.
pub trait DeviceDirectory: Send + Sync + 'static {
    fn credentials(&self, device_id: &str) -> Option<DeviceCredentials>;
}

/// Errors of the MQTT sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("embedded broker failed to start: {0}")]
    Broker(String),
    #[error("external broker {url}: {message}")]
    External { url: String, message: String },
}

impl Error {
    pub fn kind(&self) -> common::ErrorKind {
        common::ErrorKind::Unavailable
    }
}

/// The current wall-clock time in unix milliseconds.
pub(crate) fn now_ms() -> UnixMs {
    use common::Clock;
    common::SystemClock.now_ms()
}
