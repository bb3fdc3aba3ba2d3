//! The in-memory device registry: who may connect, to which site and kind a device belongs, and
//! whether it is online. Loaded from the database at start; the API adds to it.
//!
//! Several hubs may share one database (external mode, one shared-subscription group): a device
//! registered through one of them is unknown to the others' memory. A miss therefore asks the
//! store ([`Registry::resolve`]), and remembers ids the store does not have for [`MISS_TTL`]
//! (at most [`MISS_CAPACITY`] of them), so unknown ids cost one query per TTL, not one per
//! message or login.
//!
//! Hot-path state (last event time, last arrival) is atomics, written by the pipeline and read
//! by the API and the offline monitor without locks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use common::{SiteId, UnixMs};
use config::{DeviceKind, Site};
use ingest::{CredentialsFuture, DeviceCredentials, DeviceDirectory};
use tracing::{info, warn};

use crate::store::{DEVICES_BY_ID_MAX, DeviceRow, Store};

/// How long an id the store did not have is answered from memory as unknown.
pub const MISS_TTL: Duration = Duration::from_secs(2);
/// Most unknown ids remembered; when full (after dropping expired ones), further unknown ids
/// are refused without asking the store until entries expire.
pub const MISS_CAPACITY: usize = 10_000;

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
    /// Where misses are looked up; unset: memory only.
    store: OnceLock<Store>,
    /// Ids the store did not have, and when it was asked (negative cache).
    misses: Mutex<HashMap<String, Instant>>,
    pub sites: BTreeMap<String, Site>,
    pub kinds: BTreeMap<String, DeviceKind>,
}

impl Registry {
    pub fn new(sites: &[Site], kinds: BTreeMap<String, DeviceKind>) -> Self {
        Self {
            devices: RwLock::new(HashMap::new()),
            store: OnceLock::new(),
            misses: Mutex::new(HashMap::new()),
            sites: sites.iter().map(|s| (s.id.as_str().to_owned(), s.clone())).collect(),
            kinds,
        }
    }

    /// Looks misses up in `store` from now on (another hub may have registered the device).
    pub fn attach_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    pub fn insert(&self, d: Device) -> Arc<Device> {
        let d = Arc::new(d);
        self.misses.lock().unwrap_or_else(|e| e.into_inner()).remove(&d.id);
        self.devices.write().unwrap_or_else(|e| e.into_inner()).insert(d.id.clone(), d.clone());
        d
    }

    /// Loads into memory those of `ids` that are stored but not known here (one query), unless
    /// the store was asked about them within [`MISS_TTL`]. Store errors are logged; the ids
    /// stay unknown for now and are asked again next time.
    pub async fn resolve(&self, ids: &[&str]) {
        let Some(store) = self.store.get() else { return };
        let now = Instant::now();
        let mut ask: Vec<&str> = Vec::new();
        {
            let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
            let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                if devices.contains_key(*id) || ask.contains(id) {
                    continue;
                }
                if misses.get(*id).is_some_and(|at| now.duration_since(*at) < MISS_TTL) {
                    continue;
                }
                if misses.len() >= MISS_CAPACITY {
                    misses.retain(|_, at| now.duration_since(*at) < MISS_TTL);
                    if misses.len() >= MISS_CAPACITY {
                        continue;
                    }
                }
                ask.push(id);
                if ask.len() == DEVICES_BY_ID_MAX {
                    break;
                }
            }
        }
        if ask.is_empty() {
            return;
        }
        let rows = match store.devices_by_id(&ask).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, devices = ask.len(), "looking up devices unknown to this hub failed");
                return;
            }
        };
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id.clone();
            match Device::from_row(row) {
                Ok(d) => {
                    info!(device = %d.id, "device registered elsewhere loaded from the database");
                    found.push(id);
                    self.insert(d);
                }
                Err(e) => warn!(device = %id, error = %e, "stored device has an invalid site id"),
            }
        }
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        for id in ask.into_iter().filter(|id| !found.iter().any(|f| f == id)) {
            misses.insert(id.to_owned(), now);
        }
    }

    /// The device, from memory or else from the store (see [`Self::resolve`]).
    pub async fn get_or_load(&self, id: &str) -> Option<Arc<Device>> {
        if let Some(d) = self.get(id) {
            return Some(d);
        }
        self.resolve(&[id]).await;
        self.get(id)
    }

    /// Forgets a device (`DELETE /api/v1/devices/{id}`); returns it when it was known.
    pub fn remove(&self, id: &str) -> Option<Arc<Device>> {
        self.devices.write().unwrap_or_else(|e| e.into_inner()).remove(id)
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

    /// Whether the site exists and lies within `scope` (sites not configured are outside
    /// every scope but the admins').
    pub fn site_in_scope(&self, site: &str, scope: &crate::auth::Scope) -> bool {
        match self.sites.get(site) {
            Some(s) => scope.admits(crate::auth::SiteFacts::of(s)),
            None => scope.is_all(),
        }
    }

    /// The sites within `scope`.
    pub fn sites_in(&self, scope: &crate::auth::Scope) -> Vec<&Site> {
        self.sites.values().filter(|s| scope.admits(crate::auth::SiteFacts::of(s))).collect()
    }

    /// The devices within `scope`, sorted by id.
    pub fn devices_in(&self, scope: &crate::auth::Scope) -> Vec<Arc<Device>> {
        let mut v = self.all();
        v.retain(|d| self.site_in_scope(d.site.as_str(), scope));
        v
    }

    /// A device within `scope`; `None` when it does not exist or lies outside (the same
    /// answer).
    pub fn device_in(&self, id: &str, scope: &crate::auth::Scope) -> Option<Arc<Device>> {
        self.get(id).filter(|d| self.site_in_scope(d.site.as_str(), scope))
    }

    pub fn online_count(&self) -> i64 {
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices.values().filter(|d| d.is_online()).count() as i64
    }
}

impl DeviceDirectory for Registry {
    fn credentials<'a>(&'a self, device_id: &'a str) -> CredentialsFuture<'a> {
        Box::pin(async move {
            self.get_or_load(device_id).await.map(|d| DeviceCredentials {
                site: d.site.clone(),
                secret_hash: d.secret_hash.clone(),
            })
        })
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
