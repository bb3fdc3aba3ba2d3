//! The demo credentials file (`DATA_DIR/demo-credentials.json`): what a person needs to publish
//! as a demo device with `mosquitto_pub`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCredential {
    pub device_id: String,
    pub site_id: String,
    pub kind: String,
    /// MQTT username (the device id).
    pub username: String,
    /// MQTT password.
    pub secret: String,
    pub telemetry_topic: String,
    pub status_topic: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialsFile {
    /// `host:port` of the MQTT listener.
    pub mqtt: String,
    /// Base URL of the HTTP API.
    pub http: String,
    pub devices: Vec<DeviceCredential>,
    /// A ready-to-paste example.
    pub example: String,
    /// People who can log in to the hub.
    #[serde(default)]
    pub users: Vec<UserCredential>,
    /// An admin API token (`Authorization: Bearer …`) for scripts.
    #[serde(default)]
    pub admin_token: Option<TokenCredential>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCredential {
    pub username: String,
    pub password: String,
    pub role: String,
    pub department: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCredential {
    pub name: String,
    pub token: String,
    pub role: String,
}

impl CredentialsFile {
    pub fn find(&self, device: &str) -> Option<&DeviceCredential> {
        self.devices.iter().find(|d| d.device_id == device)
    }

    pub fn user(&self, username: &str) -> Option<&UserCredential> {
        self.users.iter().find(|u| u.username == username)
    }
}
