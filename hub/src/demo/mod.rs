//! `hub demo`: broker, hub and the simulated demo site in one process.
//!
//! The site's scripted past (five hours of readings with six incidents) is replayed within
//! seconds, so findings are there at once; then the devices follow the wall clock. Credentials
//! of every demo device are written to `DATA_DIR/demo-credentials.json`; `fridge-manual` is left
//! to people with `mosquitto_pub`.
//!
//! Cameras: one simulated RTSP server (in this process) serves four mounts, clips from the
//! clip folder when present (a synthetic pattern otherwise): a dock with a restricted floor zone
//! (a person there is a finding within seconds), an aisle where two or more people for three
//! seconds is a finding, a production line analysed without rules (snapshots), and a gate
//! relayed only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::Shutdown;
use config::Config;
use devices::credentials::{CredentialsFile, DeviceCredential};
use devices::scenario::Scenario;
use devices::site::{self, Pace, SiteOptions};
use tracing::{error, info};

mod receiver;

use crate::app::{Hub, StartOptions};
use crate::error::Error;
use crate::registry;

/// Flags of `hub demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub http: String,
    pub mqtt: String,
    pub data_dir: PathBuf,
    /// Model search path (the project's `models/` and a mirror of the published models).
    pub models: Vec<PathBuf>,
    /// Folder of the sample clips (`../shared/data/videos`); synthetic video when absent.
    pub clips: Option<PathBuf>,
}

/// The demo's cameras: (mount, clip file, camera TOML after the URL).
const CAMERAS: &[(&str, &str, &str, &str)] = &[
    (
        "dock",
        "coldstore-01",
        "intel_worker-zone-detection_from-gif.mp4",
        r#"name = "Loading dock floor"
[[cameras.zones]]
name = "restricted-floor"
polygon = [[0.0, 0.4], [0.5, 0.4], [0.5, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "person-in-restricted-zone"
model = "fastestdet"
labels = ["person"]
min_score = 0.6
zone = "restricted-floor"
cooldown = "10m"
severity = "major"
item_code = "61000000100004"
summary = "person in the restricted floor zone"
"#,
    ),
    (
        "aisle",
        "coldstore-01",
        "intel_store-aisle-detection_from-gif.mp4",
        r#"name = "Packing aisle"
[[cameras.rules]]
id = "crowding"
model = "fastestdet"
labels = ["person"]
min_score = 0.6
min_count = 2
dwell = "3s"
cooldown = "10m"
severity = "minor"
item_code = "61000000100005"
summary = "two or more people in the packing aisle"
"#,
    ),
    (
        "line",
        "coldstore-01",
        "intel_fruit-and-vegetable-detection_from-gif.mp4",
        r#"name = "Produce line""#,
    ),
    (
        "gate",
        "freightyard-01",
        "intel_car-detection.mp4",
        r#"name = "Yard gate (relay only)"
analysis = "off""#,
    ),
];

/// Starts the demo's camera server; returns it and the `[[cameras]]` TOML.
fn cameras(clips: Option<&Path>) -> Result<(devices::camera::SimCamera, String), Error> {
    use devices::camera::{Clip, SimCamera};
    let fail = |e: anyhow::Error| Error::InvalidArgument(format!("demo cameras: {e:#}"));
    let mut loaded = Vec::new();
    let mut synthetic = None;
    for (mount, _, file, _) in CAMERAS {
        let clip = match clips.map(|d| d.join(file)).filter(|p| p.is_file()) {
            Some(p) => Clip::from_mp4(&p).map_err(fail)?,
            None => {
                if synthetic.is_none() {
                    info!(
                        "demo camera clips not found; serving a synthetic pattern (no video findings)"
                    );
                    synthetic = Some(Clip::synthetic(640, 360, 15, 4).map_err(fail)?);
                }
                synthetic.clone().expect("set above")
            }
        };
        loaded.push((*mount, clip));
    }
    let mounts: Vec<(&str, &Clip)> = loaded.iter().map(|(m, c)| (*m, c)).collect();
    let server = SimCamera::serve(0, &mounts, None).map_err(fail)?;
    let mut text = String::new();
    for (mount, site, _, rest) in CAMERAS {
        text.push_str(&format!(
            "\n[[cameras]]\nid = \"{mount}\"\nsite = \"{site}\"\nurl = \"{}\"\n{rest}\n",
            server.url_of(mount)
        ));
    }
    Ok((server, text))
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
    cameras: &str,
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
    // Every verified finding becomes a supervision record at once.
    text = text.replace(
        "auto_severities = []",
        "auto_severities = [\"info\", \"minor\", \"major\", \"critical\"]",
    );
    text.push_str(cameras);
    let mut cfg = Config::parse(&text, "<demo configuration>")?;
    cfg.models.search_path = opts.models.clone();
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
    CredentialsFile {
        mqtt: mqtt.to_string(),
        http: format!("http://{http}"),
        devices,
        example,
        users: Vec::new(),
        admin_token: None,
    }
}

/// The demo's departments: (id, name, region, industries, USCC). The duty room is the
/// province's; the two city departments differ in region and industry.
const DEPARTMENTS: &[(&str, &str, &str, &[&str], &str)] = &[
    ("duty-room", "Shaanxi duty room", "610000", &["food", "transport"], "11610000MB12345675"),
    (
        "shaanxi-market",
        "Shaanxi market regulation",
        "610000",
        &["food", "transport"],
        "11610000MB2345678N",
    ),
    ("xian-food", "Xi'an food safety", "610100", &["food"], "11610100MB3456789D"),
    ("xianyang-transport", "Xianyang transport", "610400", &["transport"], "11610400MB4567890F"),
];

/// The demo's people: (username, role, department).
const USERS: &[(&str, &str, &str)] = &[
    ("operator", "duty_operator", "duty-room"),
    ("province", "department", "shaanxi-market"),
    ("xian", "department", "xian-food"),
    ("xianyang", "department", "xianyang-transport"),
];

fn cli_audit(action: &str, target: String) -> crate::store::AuditEntry {
    crate::store::AuditEntry {
        actor: "hub:demo".into(),
        address: "-".into(),
        action: action.into(),
        target,
        before: None,
        after: None,
    }
}

/// Creates the demo's departments and users (keeping the passwords of an earlier run's
/// credentials file) and a fresh admin token.
async fn accounts(
    store: &crate::store::Store,
    old: Option<&CredentialsFile>,
) -> Result<(Vec<devices::credentials::UserCredential>, devices::credentials::TokenCredential), Error>
{
    use crate::accounts::{self, NewDepartment, NewToken, NewUser, UserChange};
    let now = common::Clock::now_ms(&common::SystemClock);
    for (id, name, region, industries, uscc) in DEPARTMENTS {
        let n = NewDepartment {
            id: (*id).into(),
            name: (*name).into(),
            region: (*region).into(),
            industries: industries.iter().map(|i| (*i).to_owned()).collect(),
            uscc: (*uscc).into(),
        };
        match accounts::create_department(
            store,
            n,
            cli_audit("department.create", format!("department:{id}")),
            now,
        )
        .await
        {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut users = Vec::new();
    for (username, role, department) in USERS {
        let password = old
            .and_then(|o| o.user(username))
            .map(|u| u.password.clone())
            .unwrap_or_else(|| crate::auth::secrets::random(12));
        let n = NewUser {
            username: (*username).into(),
            password: password.clone(),
            roles: vec![(*role).into()],
            department: Some((*department).into()),
        };
        let a = cli_audit("user.create", format!("user:{username}"));
        match accounts::create_user(store, n, a, now).await {
            Ok(_) => {}
            Err(Error::Conflict(_)) => {
                // Known from an earlier run: the password in the file is made true again.
                let c = UserChange { password: Some(password.clone()), ..Default::default() };
                let a = cli_audit("user.password", format!("user:{username}"));
                accounts::update_user(store, username, c, a, now).await?;
            }
            Err(e) => return Err(e),
        }
        users.push(devices::credentials::UserCredential {
            username: (*username).into(),
            password,
            role: (*role).into(),
            department: Some((*department).into()),
        });
    }
    let n = NewToken {
        name: "demo admin".into(),
        roles: vec!["admin".into()],
        department: None,
        integrator: None,
        expires_in_days: 30,
    };
    let (_, token) = accounts::create_token(
        store,
        n,
        "hub:demo",
        cli_audit("token.create", "token:demo admin".into()),
        now,
    )
    .await?;
    let token = devices::credentials::TokenCredential {
        name: "demo admin".into(),
        token,
        role: "admin".into(),
    };
    Ok((users, token))
}

/// The demo's supervision item catalogue and regulated entities (both industries).
const CATALOGUE: &str = include_str!("catalogue.csv");
const ENTITIES: &str = include_str!("entities.csv");

async fn records_data(store: &crate::store::Store) -> Result<(), Error> {
    use crate::records::import::{self, Format};
    let now = common::Clock::now_ms(&common::SystemClock);
    let departments = store.departments().await?.into_iter().map(|d| d.id).collect();
    let items = import::catalogue(CATALOGUE, Format::Csv, &departments)
        .map_err(|p| Error::InvalidArgument(format!("the demo catalogue: {p:?}")))?;
    store.import_catalogue(&items, &cli_audit("catalogue.import", "catalogue".into()), now).await?;
    let entities = import::entities(ENTITIES, Format::Csv)
        .map_err(|p| Error::InvalidArgument(format!("the demo entities: {p:?}")))?;
    store.import_entities(&entities, &cli_audit("entity.import", "entities".into()), now).await?;
    Ok(())
}

/// Runs the demo until shutdown.
pub async fn run(opts: DemoOptions, shutdown: Shutdown) -> Result<(), Error> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| Error::Io {
        context: format!("creating {}", opts.data_dir.display()),
        source,
    })?;
    let scenario = Scenario::demo();
    let cred_path = opts.data_dir.join(CREDENTIALS_FILE);
    let old: Option<CredentialsFile> =
        std::fs::read_to_string(&cred_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let secrets = secrets(&cred_path, &scenario);
    let (camera_server, camera_toml) = cameras(opts.clips.as_deref())?;
    let cfg = config(&opts, &scenario, &secrets, &camera_toml)?;
    let hub =
        Hub::start(cfg, StartOptions { shutdown: shutdown.clone(), ..Default::default() }).await?;
    let mqtt = hub.mqtt_addr.expect("the demo runs the embedded broker");
    let mut creds = credentials(&scenario, &secrets, mqtt, hub.http_addr);
    let (users, token) = accounts(&hub.store, old.as_ref()).await?;
    creds.users = users;
    creds.admin_token = Some(token);
    records_data(&hub.store).await?;
    let receiver = receiver::start(
        &hub.store,
        &["xian-food", "xianyang-transport", "shaanxi-market"],
        shutdown.clone(),
    )
    .await?;
    let mqtt_subscriber =
        receiver::start_mqtt(&hub.store, mqtt, "shaanxi-market", shutdown.clone()).await?;
    let json = serde_json::to_string_pretty(&creds).expect("credentials serialize");
    std::fs::write(&cred_path, json).map_err(|source| Error::Io {
        context: format!("writing {}", cred_path.display()),
        source,
    })?;
    println!();
    println!("Supervision hub demo is running.");
    let op = creds.user("operator").map(|u| u.password.clone()).unwrap_or_default();
    println!("  Duty room (UI): http://{}/", hub.http_addr);
    println!(
        "  Login:          operator / {op}   (duty operator; other users and an admin token in the credentials file)"
    );
    let others: Vec<String> = creds
        .users
        .iter()
        .filter(|u| u.username != "operator")
        .map(|u| format!("{} / {}", u.username, u.password))
        .collect();
    println!("  Departments:    {}", others.join(", "));
    println!(
        "  API:            http://{}/api/v1/openapi.json (admin token in the credentials file)",
        hub.http_addr
    );
    println!("  MQTT (3.1.1):   {mqtt}");
    println!(
        "  Webhooks:       http://{receiver}/hooks/<department> (the demo's receiver prints each record event it gets)"
    );
    println!(
        "  Record MQTT:    {mqtt_subscriber} (the demo's MQTT subscriber prints each record event it acknowledges)"
    );
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
    drop(camera_server);
    Ok(())
}

#[cfg(test)]
mod account_tests {
    #[test]
    fn the_demo_departments_have_valid_codes() {
        for (id, _, region, _, uscc) in super::DEPARTMENTS {
            assert!(common::Uscc::new(uscc).is_ok(), "{id}: {uscc}");
            assert!(common::RegionCode::new(region).is_ok(), "{id}: {region}");
        }
    }
}
