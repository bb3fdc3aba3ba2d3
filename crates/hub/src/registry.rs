//! The in-memory device registry: who may connect, to which site and kind a device belongs, and
//! whether it is online. Loaded from the database at start; the API adds to it.
//!
//! Hot-path state (last event time, last arrival) is atomics, written by the pipeline and read
//! by the API and the offline monitor without locks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use common::{SiteId, UnixMs};
use config::{DeviceKind, Site};
use ingest::{DeviceCredentials, DeviceDirectory};

use crate::store::DeviceRow;

/// A registered device.
#[derive(Debug)]
pub struct Device {
    pub id: String,
    pub site: SiteId,
    pub kind: String,
    pub name: String,
    pub secret_hash: String,
    pub source: String,
    pub created_at: UnixMs,
    /// Event time of the newest reading; `i64::MIN` when none.
    pub last_seen: AtomicI64,
    /// Wall-clock arrival of the newest message; 0 when none since start.
    pub last_rx: AtomicI64,
    pub online: AtomicBool,
    /// `last_seen` changed since the last flush to the database.
    pub seen_dirty: AtomicBool,
}

impl Device {
    pub fn from_row(r: DeviceRow) -> Result<Self, common::IdError> {
        Ok(Self {
            site: SiteId::new(r.site_id)?,
            id: r.id,
            kind: r.kind,
            name: r.name,
            secret_hash: r.secret_hash,
            source: r.source,
            created_at: r.created_at,
            last_seen: AtomicI64::new(r.last_seen.unwrap_or(i64::MIN)),
            last_rx: AtomicI64::new(0),
            online: AtomicBool::new(r.online),
            seen_dirty: AtomicBool::new(false),
        })
    }

    pub fn last_seen(&self) -> Option<UnixMs> {
        let v = self.last_seen.load(Ordering::Relaxed);
        (v != i64::MIN).then_some(v)
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }
}

/// Devices, sites and device kinds.
#[derive(Debug, Default)]
pub struct Registry {
    devices: RwLock<HashMap<String, Arc<Device>>>,
    pub sites: BTreeMap<String, Site>,
    pub kinds: BTreeMap<String, DeviceKind>,
}

impl Registry {
    pub fn new(sites: &[Site], kinds: BTreeMap<String, DeviceKind>) -> Self {
        Self {
            devices: RwLock::new(HashMap::new()),
            sites: sites.iter().map(|s| (s.id.as_str().to_owned(), s.clone())).collect(),
            kinds,
        }
    }

    pub fn insert(&self, d: Device) -> Arc<Device> {
        let d = Arc::new(d);
        self.devices.write().unwrap_or_else(|e| e.into_inner()).insert(d.id.clone(), d.clone());
        d
    }

    pub fn get(&self, id: &str) -> Option<Arc<Device>> {
        self.devices.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// All devices, sorted by id.
    pub fn all(&self) -> Vec<Arc<Device>> {
        let mut v: Vec<_> =
            self.devices.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn online_count(&self) -> i64 {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices.values().filter(|d| d.is_online()).count() as i64
    }
}

impl DeviceDirectory for Registry {
    fn credentials(&self, device_id: &str) -> Option<DeviceCredentials> {
        self.get(device_id)
            .map(|d| DeviceCredentials { site: d.site.clone(), secret_hash: d.secret_hash.clone() })
    }
}

/// Makes a new device secret: 24 random bytes, base64url (32 characters).
pub fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// argon2id PHC string of a secret.
pub fn hash_secret(secret: &str) -> String {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 with default parameters hashes any secret")
}
