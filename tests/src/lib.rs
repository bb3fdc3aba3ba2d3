//! Test utilities for the end-to-end suite (`tests/e2e`): starting hubs on ephemeral ports,
//! finding the PostgreSQL and MQTT servers the suite needs, and waiting for conditions.
//!
//! The suite runs against real components. `scripts/test` provides them: it exports
//! `HUB_TEST_POSTGRES_URL` and `HUB_TEST_MQTT_URL` (existing servers on 127.0.0.1:5432/:1883
//! when reachable, throwaway ones otherwise).

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

/// An external MQTT broker URL (`mqtt://host:port`), or a failure saying how to get one.
pub fn mqtt_url() -> anyhow::Result<String> {
    std::env::var("HUB_TEST_MQTT_URL").context(
        "HUB_TEST_MQTT_URL is not set: run the suite with scripts/test, which uses the Mosquitto \
         on 127.0.0.1:1883 or starts a throwaway one (Debian package mosquitto), or export \
         HUB_TEST_MQTT_URL=mqtt://host:port yourself",
    )
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
    pub http: reqwest::Client,
    pub dir: PathBuf,
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
        Ok(Self { hub, base, http: reqwest::Client::new(), dir })
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

/// The default configuration plus `extra` TOML (sites, devices, …), validated.
pub fn config_with(extra: &str) -> anyhow::Result<Config> {
    let text = format!("{}\n{extra}", Config::default_toml());
    Ok(Config::parse(&text, "<test configuration>")?)
}

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
