//! Devices' accounts on an external Mosquitto with the dynamic-security plugin
//! (`mqtt.dynsec_username`): the provisioner the API calls, and the start-up check that names
//! the devices the broker does not know.
//!
//! The hub keeps only an argon2 hash of a device's secret, so it can create a broker account
//! only when it makes the secret (`POST /api/v1/devices`). Devices of the configuration file,
//! and devices registered before provisioning was turned on, must be created by the operator
//! (`mosquitto_ctrl … dynsec createClient ID` and a role allowing `sites/SITE/devices/ID/#`,
//! docs/guide.md); the check below logs each of them at start.

use std::sync::Arc;
use std::time::Duration;

use common::Shutdown;
use config::{Config, MqttMode};
use ingest::dynsec::{Dynsec, DynsecConfig, Provisioner};
use tracing::{info, warn};

use crate::error::Error;
use crate::registry::Registry;

/// How long one provisioning command may take before the API answers 503.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The provisioner the configuration asks for: external mode with `mqtt.dynsec_username`.
pub fn provisioner(
    cfg: &Config,
    shutdown: Shutdown,
) -> Result<Option<Arc<dyn Provisioner>>, Error> {
    let (MqttMode::External, Some(username)) = (cfg.mqtt.mode, &cfg.mqtt.dynsec_username) else {
        return Ok(None);
    };
    let dynsec = Dynsec::connect(
        DynsecConfig {
            url: cfg.mqtt.url.clone().unwrap_or_default(),
            client_id: format!("{}-dynsec", cfg.mqtt.client_id),
            username: username.clone(),
            password: cfg.mqtt.dynsec_password.clone().unwrap_or_default(),
            timeout: COMMAND_TIMEOUT,
        },
        shutdown,
    )?;
    Ok(Some(Arc::new(dynsec)))
}

/// Logs, once, every known device that has no account on the broker (WARN: it cannot log in
/// until the operator creates one).
pub fn check_accounts(p: Arc<dyn Provisioner>, registry: Arc<Registry>) {
    tokio::spawn(async move {
        let clients = match p.clients().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot list the broker's accounts; devices without one cannot log in");
                return;
            }
        };
        let known: std::collections::HashSet<String> = clients.into_iter().collect();
        let missing: Vec<_> =
            registry.all().into_iter().filter(|d| !known.contains(&d.id)).collect();
        for d in &missing {
            warn!(
                device = %d.id,
                site = %d.site,
                source = %d.source,
                "device has no account on the broker and the hub does not know its secret: create \
                 it with `mosquitto_ctrl dynsec createClient {}` and a role allowing \
                 sites/{}/devices/{}/# (docs/guide.md), or register it through the API",
                d.id,
                d.site,
                d.id,
            );
        }
        info!(devices = registry.all().len(), missing = missing.len(), "broker accounts checked");
    });
}
