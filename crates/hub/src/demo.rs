//! `hub demo`: broker, hub and the simulated demo site in one process.
//!
//! The site's scripted past (five hours of readings with six incidents) is replayed within
//! seconds, so findings are there at once; then the devices follow the wall clock. Credentials
//! of every demo device are written to `DATA_DIR/demo-credentials.json`; `fridge-manual` is left
//! to people with `mosquitto_pub`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::Shutdown;
use config::Config;
use devices::credentials::{CredentialsFile, DeviceCredential};
use devices::scenario::Scenario;
use devices::site::{self, Pace, SiteOptions};
use tracing::{error, info};

use crate::app::{Hub, StartOptions};
use crate::error::Error;
use crate::registry;

/// Flags of `hub demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: String,
    pub mqtt: String,
    pub data_dir: PathBuf,
}

pub const CREDENTIALS_FILE: &str = "demo-credentials.json";

/// Secrets of earlier runs are kept, so a person's `mosquitto_pub` line keeps working.
fn secrets(path: &Path, scenario: &Scenario) -> Vec<(String, String)> {
    let old: Option<CredentialsFile> =
        std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok());
    scenario
        .devices
        .iter()
        .map(|d| {
            let secret = old
                .as_ref()
                .and_then(|o| o.find(d.id))
                .map(|c| c.secret.clone())
                .unwrap_or_else(registry::new_secret);
            (d.id.to_owned(), secret)
        })
        .collect()
}

/// The demo's configuration: the default file plus the scenario's sites and devices.
pub fn config(
    opts: &DemoOptions,
    scenario: &Scenario,
    secrets: &[(String, String)],
) -> Result<Config, Error> {
    let mut text = Config::default_toml().to_owned();
    for s in &scenario.sites {
        text.push_str(&format!(
            "\n[[sites]]\nid = \"{}\"\nname = \"{}\"\nregion = \"{}\"\nindustry = \"{}\"\nentity_name = \"{}\"\nuscc = \"{}\"\n",
            s.id, s.name, s.region, s.industry, s.entity_name, s.uscc
        ));
    }
    for d in &scenario.devices {
        let secret = &secrets.iter().find(|(id, _)| id == d.id).expect("a secret per device").1;
        text.push_str(&format!(
            "\n[[devices]]\nid = \"{}\"\nsite = \"{}\"\nkind = \"{}\"\nname = \"{}\"\nsecret_hash = \"{}\"\n",
            d.id,
            d.site,
            d.kind.name(),
            d.name,
            registry::hash_secret(secret)
        ));
    }
    text.push_str("\n[[outputs]]\ntype = \"jsonl\"\npath = \"findings.jsonl\"\n");
    let mut cfg = Config::parse(&text, "<demo configuration>")?;
    cfg.data_dir = opts.data_dir.clone();
    cfg.http.listen = opts.http.clone();
    cfg.mqtt.listen = opts.mqtt.clone();
    Ok(cfg)
}

pub fn credentials(
    scenario: &Scenario,
    secrets: &[(String, String)],
    mqtt: SocketAddr,
    http: SocketAddr,
) -> CredentialsFile {
    let devices: Vec<DeviceCredential> = scenario
        .devices
        .iter()
        .map(|d| {
            let prefix = format!("sites/{}/devices/{}/", d.site, d.id);
            DeviceCredential {
                device_id: d.id.into(),
                site_id: d.site.into(),
                kind: d.kind.name().into(),
                username: d.id.into(),
                secret: secrets
                    .iter()
                    .find(|(id, _)| id == d.id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default(),
                telemetry_topic: format!("{prefix}telemetry"),
                status_topic: format!("{prefix}status"),
            }
        })
        .collect();
    let manual = devices.iter().find(|d| d.device_id == "fridge-manual").cloned();
    let example = manual
        .map(|m| {
            format!(
                "mosquitto_pub -h {} -p {} -u {} -P {} -t {} -m '{{\"values\":{{\"temperature_c\":21.5}}}}'",
                mqtt.ip(),
                mqtt.port(),
                m.username,
                m.secret,
                m.telemetry_topic
            )
        })
        .unwrap_or_default();
    CredentialsFile { mqtt: mqtt.to_string(), http: format!("http://{http}"), devices, example }
}

/// Runs the demo until shutdown.
pub async fn run(opts: DemoOptions, shutdown: Shutdown) -> Result<(), Error> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| Error::Io {
        context: format!("creating {}", opts.data_dir.display()),
        source,
    })?;
    let scenario = Scenario::demo();
    let cred_path = opts.data_dir.join(CREDENTIALS_FILE);
    let secrets = secrets(&cred_path, &scenario);
    let cfg = config(&opts, &scenario, &secrets)?;
    let hub =
        Hub::start(cfg, StartOptions { shutdown: shutdown.clone(), ..Default::default() }).await?;
    let mqtt = hub.mqtt_addr.expect("the demo runs the embedded broker");
    let creds = credentials(&scenario, &secrets, mqtt, hub.http_addr);
    let json = serde_json::to_string_pretty(&creds).expect("credentials serialize");
    std::fs::write(&cred_path, json).map_err(|source| Error::Io {
        context: format!("writing {}", cred_path.display()),
        source,
    })?;
    println!();
    println!("Supervision hub demo is running.");
    println!("  Browser / API:  http://{}/api/v1/findings", hub.http_addr);
    println!("  Devices:        http://{}/api/v1/devices", hub.http_addr);
    println!("  MQTT (3.1.1):   {mqtt}");
    println!("  Credentials:    {}", cred_path.display());
    println!("  Try:            {}", creds.example);
    println!("Stop with Ctrl-C.");
    println!();
    let now = common::Clock::now_ms(&common::SystemClock);
    let site_opts = SiteOptions {
        mqtt: mqtt.to_string(),
        credentials: creds.devices,
        start_ms: now - scenario.length_ms,
        end_ms: None,
        pace: Pace::CatchUpThenRealtime,
    };
    let token = shutdown.token();
    tokio::spawn(async move {
        match site::run(&scenario, site_opts, token).await {
            Ok(r) => info!(published = r.published, "simulated site stopped"),
            Err(e) => error!(error = %e, "simulated site failed"),
        }
    });
    hub.wait().await;
    Ok(())
}
