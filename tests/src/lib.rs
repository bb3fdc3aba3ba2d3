//! Test utilities for the end-to-end suite (`tests/e2e`): starting hubs on ephemeral ports,
//! finding the PostgreSQL and MQTT servers the suite needs, and waiting for conditions.
//!
//! The suite runs against real components. `scripts/test` provides them: it exports
//! `HUB_TEST_POSTGRES_URL` (the server on 127.0.0.1:5432 when reachable, a throwaway one
//! otherwise) and `HUB_TEST_MQTT_URL` with the accounts of a throwaway Mosquitto that
//! authenticates through its dynamic-security plugin ([`broker`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use config::Config;
use hub::{Hub, StartOptions};
use serde_json::Value;

/// A PostgreSQL server URL, or a failure saying how to get one.
pub fn postgres_url() -> anyhow::Result<String> {
    std::env::var("HUB_TEST_POSTGRES_URL").context(
        "HUB_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which uses the \
         PostgreSQL on 127.0.0.1:5432 or starts a throwaway one (Debian package postgresql), \
         or export HUB_TEST_POSTGRES_URL=postgres://user@host:port/db yourself",
    )
}

/// An external MQTT broker URL (`mqtt://host:port`), or a failure saying how to get one. The
/// broker authenticates: see [`broker`] for the accounts.
pub fn mqtt_url() -> anyhow::Result<String> {
    std::env::var("HUB_TEST_MQTT_URL").context(
        "HUB_TEST_MQTT_URL is not set: run the suite with scripts/test, which starts a throwaway \
         Mosquitto with the dynamic-security plugin (Debian package mosquitto), or export \
         HUB_TEST_MQTT_URL=mqtt://host:port and the HUB_TEST_MQTT_{ADMIN,HUB}_{USER,PASSWORD} \
         accounts of such a broker yourself",
    )
}

/// The external test broker: Mosquitto with the dynamic-security plugin and no anonymous
/// login, as `scripts/lib/setup.sh` (`ensure_mosquitto`) starts it.
#[derive(Debug, Clone)]
pub struct Broker {
    /// `mqtt://host:port`
    pub url: String,
    pub host: String,
    pub port: u16,
    /// An account with the plugin's admin role.
    pub admin: (String, String),
    /// The hub's own account: subscribe `sites/+/devices/+/#` (shared too), publish `hub/#`.
    pub hub: (String, String),
}

fn env_or_fail(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!(
            "{name} is not set: the external broker authenticates, and scripts/test exports its \
             admin and hub accounts (HUB_TEST_MQTT_ADMIN_USER/_PASSWORD, \
             HUB_TEST_MQTT_HUB_USER/_PASSWORD) with the throwaway Mosquitto it starts"
        )
    })
}

/// The external test broker and its accounts, or a failure saying how to get them.
pub fn broker() -> anyhow::Result<Broker> {
    let url = mqtt_url()?;
    let hostport = url.trim_start_matches("mqtt://").trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "1883"));
    Ok(Broker {
        host: host.to_owned(),
        port: port.parse().with_context(|| format!("port of HUB_TEST_MQTT_URL={url}"))?,
        admin: (
            env_or_fail("HUB_TEST_MQTT_ADMIN_USER")?,
            env_or_fail("HUB_TEST_MQTT_ADMIN_PASSWORD")?,
        ),
        hub: (env_or_fail("HUB_TEST_MQTT_HUB_USER")?, env_or_fail("HUB_TEST_MQTT_HUB_PASSWORD")?),
        url,
    })
}

impl Broker {
    /// Points `cfg` at this broker in external mode, logged in with the hub's account and
    /// provisioning devices with the admin account.
    pub fn configure(&self, cfg: &mut Config, client_id: &str, group: &str) {
        cfg.mqtt.mode = config::MqttMode::External;
        cfg.mqtt.url = Some(self.url.clone());
        cfg.mqtt.client_id = client_id.to_owned();
        cfg.mqtt.shared_group = group.to_owned();
        cfg.mqtt.username = Some(self.hub.0.clone());
        cfg.mqtt.password = Some(self.hub.1.clone());
        cfg.mqtt.dynsec_username = Some(self.admin.0.clone());
        cfg.mqtt.dynsec_password = Some(self.admin.1.clone());
    }

    /// MQTT options for a client of this broker logging in as `username`.
    pub fn options(&self, client_id: &str, username: &str, password: &str) -> rumqttc::MqttOptions {
        let mut mo = rumqttc::MqttOptions::new(client_id, &self.host, self.port);
        mo.set_keep_alive(Duration::from_secs(10));
        mo.set_credentials(username, password);
        mo
    }

    /// An admin connection to the dynamic-security plugin (stopped when dropped).
    pub fn admin(&self) -> anyhow::Result<ingest::dynsec::Dynsec> {
        Ok(ingest::dynsec::Dynsec::connect(
            ingest::dynsec::DynsecConfig {
                url: self.url.clone(),
                client_id: format!("test-admin-{}", rand::random::<u32>()),
                username: self.admin.0.clone(),
                password: self.admin.1.clone(),
                timeout: Duration::from_secs(10),
            },
            common::Shutdown::new(),
        )?)
    }

    /// Creates broker accounts for devices whose secrets the test knows (configuration-file
    /// devices: the hub knows only their hashes), as an operator would with `mosquitto_ctrl`.
    pub async fn provision(&self, devices: &[(&str, &str, String)]) -> anyhow::Result<()> {
        use ingest::dynsec::Provisioner;
        let admin = self.admin()?;
        for (id, site, secret) in devices {
            admin.provision(id, site, secret).await?;
        }
        Ok(())
    }
}

/// Creates an empty PostgreSQL database for one test; returns its URL.
pub async fn fresh_postgres_database() -> anyhow::Result<String> {
    use sqlx::Connection;
    let url = postgres_url()?;
    let name = format!("hub_test_{}_{}", std::process::id(), rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hub-test-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A hub under test and a client for its API.
pub struct TestHub {
    pub hub: Hub,
    pub base: String,
    /// A client sending an admin API token with every request.
    pub http: reqwest::Client,
    /// That token.
    pub admin_token: String,
    pub dir: PathBuf,
}

/// A reqwest client that sends `token` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a token is a header value"),
    );
    reqwest::Client::builder().default_headers(h).build().expect("reqwest client")
}

/// Creates an API token on a hub's database directly (as `hub token create` does).
pub async fn create_token(
    store: &hub::store::Store,
    roles: &[&str],
    department: Option<&str>,
    integrator: Option<&str>,
) -> anyhow::Result<String> {
    let n = hub::accounts::NewToken {
        name: format!("test {}", roles.join("+")),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        department: department.map(str::to_owned),
        integrator: integrator.map(str::to_owned),
        expires_in_days: 30,
    };
    let audit = hub::store::AuditEntry {
        actor: "test".into(),
        address: "-".into(),
        action: "token.create".into(),
        target: "token:test".into(),
        before: None,
        after: None,
    };
    let now = common::Clock::now_ms(&common::SystemClock);
    Ok(hub::accounts::create_token(store, n, "test", audit, now).await?.1)
}

impl TestHub {
    /// Starts a hub on ephemeral ports with the given configuration (its data_dir, HTTP and
    /// MQTT addresses are set here).
    pub async fn start(mut cfg: Config, opts: StartOptions) -> anyhow::Result<Self> {
        let dir = scratch_dir("hub");
        cfg.data_dir = dir.clone();
        cfg.http.listen = "127.0.0.1:0".into();
        cfg.mqtt.listen = "127.0.0.1:0".into();
        let hub = Hub::start(cfg, opts).await?;
        let base = format!("http://{}", hub.http_addr);
        let admin_token = create_token(&hub.store, &["admin"], None, None).await?;
        Ok(Self { hub, base, http: client_with_token(&admin_token), admin_token, dir })
    }

    pub fn mqtt_addr(&self) -> String {
        self.hub.mqtt_addr.map(|a| a.to_string()).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    /// Every finding, following the cursor.
    pub async fn all_findings(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let page = self.get(&format!("/api/v1/findings?limit=50&{query}{c}")).await?;
            out.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// The value of a metric series in `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    pub async fn stop(self) {
        self.hub.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 20 ms until it yields `Some`, failing after `timeout` with `what`.
/// This waits for an observable state, it does not stand in for one.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An argon2 hash of `secret` (the same hashing the hub uses).
pub fn hash(secret: &str) -> String {
    hub::registry::hash_secret(secret)
}

/// The default configuration plus `extra` TOML (sites, devices, …), validated. Readings of any
/// age are accepted ([`HISTORY`]): tests publish fixed, historic timestamps; `device_clock.rs`
/// tests the window itself.
pub fn config_with(extra: &str) -> anyhow::Result<Config> {
    let text = format!("{}\n{extra}", Config::default_toml());
    let mut cfg = Config::parse(&text, "<test configuration>")?;
    cfg.pipeline.max_reading_age = HISTORY;
    Ok(cfg)
}

/// A `pipeline.max_reading_age` that accepts every historic timestamp tests publish.
pub const HISTORY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A site and devices for tests that are not the demo scenario. Secrets are `secret-{id}-xyz`.
pub fn small_site(devices: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "[[sites]]\nid = \"s1\"\nname = \"Test site\"\nregion = \"610100\"\nindustry = \"food\"\n\
         entity_name = \"Test Co.\"\nuscc = \"91350100M000100Y43\"\n",
    );
    for (id, kind) in devices {
        s.push_str(&format!(
            "[[devices]]\nid = \"{id}\"\nsite = \"s1\"\nkind = \"{kind}\"\nsecret_hash = \"{}\"\n",
            hash(&secret_of(id))
        ));
    }
    s
}

pub fn secret_of(device: &str) -> String {
    format!("secret-{device}-xyz")
}

/// The project's root folder (where `models/` is) and the shared data beside it.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the shared data (`../shared/data/…`), or a failure saying how to get it.
pub fn shared_data(rel: &str) -> anyhow::Result<PathBuf> {
    let p = project_root().join("../shared/data").join(rel);
    if !p.exists() {
        bail!(
            "{} is missing: the shared models and clips live in ../shared/data beside the \
             project; scripts/test uses them from there (or fetch the models with `hub models \
             pull`)",
            p.display()
        );
    }
    Ok(p)
}

/// The model search path: the project's model folder and the shared model mirror.
pub fn model_search_path() -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![project_root().join("models"), shared_data("models")?])
}

/// A free TCP port on the loopback (for a hub in another process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A hub in its own process (`hub-under-test`), killed when dropped.
pub struct HubProcess(pub std::process::Child);

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` (the `hub-under-test` binary: `env!("CARGO_BIN_EXE_hub-under-test")` in a
/// test) with `config`, its output into `log`.
pub fn start_hub_process(
    bin: &str,
    config: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<HubProcess> {
    let log = std::fs::File::create(log)?;
    let child =
        std::process::Command::new(bin).arg(config).stdout(log.try_clone()?).stderr(log).spawn()?;
    Ok(HubProcess(child))
}

/// A camera finding of `site` (rule `rule`, kind `k`) with one evidence row, as the writer
/// stores it.
pub fn camera_hit(
    site: &str,
    camera: &str,
    region: &str,
    rule: &str,
    item: Option<&str>,
    severity: common::Severity,
) -> hub::store::FindingHit {
    hub::store::FindingHit {
        dedup_key: format!("{site}|{camera}|{rule}|k"),
        site_id: site.into(),
        device_id: None,
        camera_id: Some(camera.into()),
        rule: rule.into(),
        kind: "k".into(),
        severity,
        item_code: item.map(str::to_owned),
        region: Some(region.into()),
        summary: format!("{rule} at {site}"),
        first_seen: 1,
        last_seen: 1,
        count: 1,
        last_value: None,
        details: "{}".into(),
        evidence: vec![hub::store::EvidenceRow {
            captured_at: 1,
            frame_path: format!("{site}.jpg"),
            annotated_path: format!("{site}.jpg"),
            details: "[]".into(),
            missing: None,
        }],
    }
}

/// An audit entry for a test's own setup.
pub fn setup_audit() -> hub::store::AuditEntry {
    hub::store::AuditEntry {
        actor: "test".into(),
        address: "-".into(),
        action: "setup".into(),
        target: "-".into(),
        before: None,
        after: None,
    }
}
