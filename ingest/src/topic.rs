//! The topic contract (docs/mqtt.md):
//!
//! - `sites/{site_id}/devices/{device_id}/telemetry`: readings, JSON.
//! - `sites/{site_id}/devices/{device_id}/status`: `online` / `offline`, retained, and the
//!   device's last will.
//! - `v1/devices/me/telemetry`: ThingsBoard-style alias of the device's own telemetry topic
//!   (embedded mode: the gateway knows who is connected and rewrites it).
//! - `hub/events/findings`: published by the hub after each finding is stored or updated.

use common::{DeviceId, SiteId};

pub const TB_TELEMETRY: &str = "v1/devices/me/telemetry";
pub const FINDING_EVENTS: &str = "hub/events/findings";
/// Filters the hub subscribes to.
pub const TELEMETRY_FILTER: &str = "sites/+/devices/+/telemetry";
pub const STATUS_FILTER: &str = "sites/+/devices/+/status";

/// Which of a device's topics a message was published on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Telemetry,
    Status,
}

/// A parsed device topic, borrowing from the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTopic<'a> {
    pub site: &'a str,
    pub device: &'a str,
    /// The last level (`telemetry`, `status`, or anything else the device owns).
    pub leaf: &'a str,
}

impl DeviceTopic<'_> {
    pub fn channel(&self) -> Option<Channel> {
        match self.leaf {
            "telemetry" => Some(Channel::Telemetry),
            "status" => Some(Channel::Status),
            _ => None,
        }
    }
}

/// Why a topic is not one of ours; cheap, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    NotUtf8,
    NotADeviceTopic,
}

/// Parses `sites/{site}/devices/{device}/{leaf}`.
pub fn parse(topic: &[u8]) -> Result<DeviceTopic<'_>, TopicError> {
    let s = std::str::from_utf8(topic).map_err(|_| TopicError::NotUtf8)?;
    let mut parts = s.split('/');
    let (Some("sites"), Some(site), Some("devices"), Some(device), Some(leaf), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TopicError::NotADeviceTopic);
    };
    if site.is_empty() || device.is_empty() || leaf.is_empty() {
        return Err(TopicError::NotADeviceTopic);
    }
    Ok(DeviceTopic { site, device, leaf })
}

pub fn telemetry(site: &SiteId, device: &DeviceId) -> String {
    format!("sites/{site}/devices/{device}/telemetry")
}

pub fn status(site: &SiteId, device: &DeviceId) -> String {
    format!("sites/{site}/devices/{device}/status")
}

/// The prefix every topic a device owns starts with.
pub fn device_prefix(site: &str, device: &str) -> String {
    format!("sites/{site}/devices/{device}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_topics_and_refuses_others() {
        let t = parse(b"sites/s1/devices/d1/telemetry").unwrap();
        assert_eq!((t.site, t.device, t.channel()), ("s1", "d1", Some(Channel::Telemetry)));
        assert_eq!(parse(b"sites/s1/devices/d1/status").unwrap().channel(), Some(Channel::Status));
        assert_eq!(parse(b"sites/s1/devices/d1/cmd").unwrap().channel(), None);
        for bad in [
            &b"sites/s1/devices/d1"[..],
            b"sites/s1/devices/d1/telemetry/x",
            b"site/s1/devices/d1/telemetry",
            b"sites//devices/d1/telemetry",
            b"\xff",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
