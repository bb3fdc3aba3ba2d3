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
//! - [`feed`]: department feeds on the gateway: subscribers that log in with a hub token and
//!   receive the hub's messages with an end-to-end PUBACK (record events over MQTT).
//! - [`dynsec`]: keeps devices' accounts in Mosquitto's dynamic-security plugin (external mode).
//! - [`topic`] and [`telemetry`]: the documented topic and payload contract.
//!
//! This crate knows nothing of storage, HTTP or models: it hands [`Inbound`] messages to a
//! bounded channel and leaves their meaning to the hub.

pub mod ack;
mod backoff;
pub mod broker;
pub mod camera;
pub mod dynsec;
pub mod external;
pub mod feed;
pub mod gateway;
pub mod gst_client;
pub mod native;
pub mod source;
pub mod telemetry;
pub mod topic;

use bytes::Bytes;
use common::{SiteId, UnixMs};

/// One message from a device, as it arrived on the broker.
#[derive(Debug)]
pub struct Inbound {
    pub topic: Bytes,
    pub payload: Bytes,
    /// Wall-clock time the hub received it.
    pub received_at: UnixMs,
    /// The acknowledgement owed to the sender (QoS 1), to be given once the message's batch is
    /// committed ([`Ack::done`]); `None` when nothing is owed (QoS 0, broker link).
    pub ack: Option<ack::Ack>,
}

/// What the gateway needs to know of a device to authenticate it.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    pub site: SiteId,
    /// argon2 PHC string.
    pub secret_hash: String,
}

/// What [`DeviceDirectory::credentials`] returns.
pub type CredentialsFuture<'a> = futures::future::BoxFuture<'a, Option<DeviceCredentials>>;

/// Looks up devices by id; implemented by the hub's device registry. Asynchronous: a device
/// missing from memory may have been registered through another hub, so the lookup may ask the
/// database.
pub trait DeviceDirectory: Send + Sync + 'static {
    fn credentials<'a>(&'a self, device_id: &'a str) -> CredentialsFuture<'a>;
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
    #[error("Mosquitto dynamic security at {url}: {command}: {message}")]
    Dynsec { url: String, command: String, message: String },
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
