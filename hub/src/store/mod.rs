//! Storage through sqlx `Any`: one code path for SQLite (default) and PostgreSQL. Portable SQL
//! with `$N` placeholders; timestamps are unix milliseconds; migrations per backend differ only
//! in the id column.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use common::{FindingState, Severity, UnixMs};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::error::Error;

pub mod auth;
pub mod records;
pub use crate::auth::Scope;
use auth::bind_all;
pub use auth::{
    AuditEntry, AuditFilter, AuditRow, Bind, DepartmentRow, SessionRow, Stmt, TokenRow, UserRow,
};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Rows per multi-row INSERT (4 parameters each; well under both backends' limits).
const READINGS_PER_INSERT: usize = 500;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

/// One transaction's worth of writes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub readings: Vec<ReadingRow>,
    pub findings: Vec<FindingHit>,
    /// Devices whose online state changed.
    pub status: Vec<(String, bool)>,
    /// Devices' latest event time, flushed periodically.
    pub seen: Vec<(String, UnixMs)>,
    /// Acknowledgements owed for the messages this batch came from (stored or refused): given
    /// by the writer after the commit, never before.
    #[serde(skip)]
    pub acks: Vec<ingest::ack::Ack>,
}

impl Batch {
    /// True when there is nothing to store (acks may still be owed).
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
            && self.findings.is_empty()
            && self.status.is_empty()
            && self.seen.is_empty()
    }
}

/// Whether retrying a failed write can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database is away, busy, locked or out of resources: back off and retry.
    Transient,
    /// The database refused the data itself (a constraint, a value out of range, a bad
    /// statement): retrying fails the same way.
    Permanent,
}

/// Classifies a store error for the writer's retry decision.
pub fn classify(e: &Error) -> Failure {
    let Error::Database { source, .. } = e else { return Failure::Transient };
    match source {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite: primary result codes (extended ones keep them in the low byte).
            // 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN, 7 NOMEM, 15 PROTOCOL;
            // the others (19 CONSTRAINT, 18 TOOBIG, 20 MISMATCH, 1 ERROR: SQL) are permanent.
            // SQLSTATEs are 5 characters (and may be all digits); SQLite codes are shorter.
            if code.len() < 5
                && let Ok(n) = code.parse::<i64>()
            {
                return match n & 0xff {
                    5 | 6 | 7 | 10 | 13 | 14 | 15 => Failure::Transient,
                    _ => Failure::Permanent,
                };
            }
            // PostgreSQL SQLSTATE classes: 08 connection, 40 rollback (serialization,
            // deadlock), 53 insufficient resources, 55 not in prerequisite state (a database
            // not accepting connections), 57 operator intervention (shutdown),
            // 58 system error; 22 data, 23 integrity, 42 syntax and the rest are permanent.
            match code.get(..2) {
                Some("08" | "40" | "53" | "55" | "57" | "58" | "XX") => Failure::Transient,
                _ => Failure::Permanent,
            }
        }
        sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_) => Failure::Permanent,
        // I/O, TLS, protocol, pool timeouts and closed pools: the database is away.
        _ => Failure::Transient,
    }
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct Written {
    /// What the finding upserts did, in the order of `batch.findings`.
    pub changes: Vec<FindingChange>,
    /// Readings inserted (a reading already stored under its device's (device, ts) is not).
    pub readings: u64,
}

/// A reading row to store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReadingRow {
    pub device_id: String,
    pub ts: UnixMs,
    pub received_at: UnixMs,
    /// The values as a JSON object.
    pub vals: String,
    /// True when `ts` is the device's own: the reading is then stored once per (device, ts).
    pub device_clock: bool,
}

/// One or more occurrences of a finding condition, aggregated by key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FindingHit {
    /// `site|device-or-camera|rule|kind`.
    pub dedup_key: String,
    pub site_id: String,
    pub device_id: Option<String>,
    pub camera_id: Option<String>,
    pub rule: String,
    pub kind: String,
    pub severity: Severity,
    pub item_code: Option<String>,
    pub region: Option<String>,
    pub summary: String,
    pub first_seen: UnixMs,
    pub last_seen: UnixMs,
    pub count: i64,
    pub last_value: Option<f64>,
    /// JSON object with rule-specific detail.
    pub details: String,
    /// Evidence files already written under `data_dir/evidence` (video findings).
    pub evidence: Vec<EvidenceRow>,
}

/// One occurrence's evidence: the analysed frame, clean and with the detections drawn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceRow {
    pub captured_at: UnixMs,
    /// Relative to `data_dir/evidence`.
    pub frame_path: String,
    pub annotated_path: String,
    /// JSON: the detections drawn.
    pub details: String,
    /// Why the images could not be written (paths empty); the finding is stored without them.
    pub missing: Option<String>,
}

/// Stored evidence of a finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evidence {
    pub id: i64,
    pub finding_id: i64,
    pub captured_at: UnixMs,
    #[serde(skip)]
    pub frame_path: String,
    #[serde(skip)]
    pub annotated_path: String,
    pub detections: serde_json::Value,
    /// Why the images are missing (they could not be written), if they are.
    pub missing: Option<String>,
}

/// A stored camera.
#[derive(Debug, Clone)]
pub struct CameraRow {
    pub id: String,
    pub site_id: String,
    /// JSON of `config::Camera`.
    pub spec: String,
    pub source: String,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

impl CameraRow {
    /// The row of a camera's configuration.
    pub fn of(c: &config::Camera, source: &str, created_at: UnixMs, updated_at: UnixMs) -> Self {
        Self {
            id: c.id.to_string(),
            site_id: c.site.to_string(),
            spec: serde_json::to_string(c).unwrap_or_default(),
            source: source.into(),
            created_at,
            updated_at,
        }
    }
}

impl FindingHit {
    pub fn key(site: &str, subject: &str, rule: &str, kind: &str) -> String {
        format!("{site}|{subject}|{rule}|{kind}")
    }

    /// Folds a later occurrence of the same key into this one.
    pub fn merge(&mut self, other: FindingHit) {
        self.count += other.count;
        self.evidence.extend(other.evidence);
        self.first_seen = self.first_seen.min(other.first_seen);
        if other.last_seen >= self.last_seen {
            self.last_seen = other.last_seen;
            self.last_value = other.last_value;
            self.details = other.details;
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingChange {
    pub id: i64,
    /// True when the upsert opened a new finding; false when it updated an open one.
    pub opened: bool,
    pub count: i64,
}

/// A stored finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub id: i64,
    pub site_id: String,
    pub device_id: Option<String>,
    pub camera_id: Option<String>,
    pub rule: String,
    pub kind: String,
    pub severity: String,
    pub state: String,
    pub item_code: Option<String>,
    pub region: Option<String>,
    pub summary: String,
    pub first_seen: UnixMs,
    pub last_seen: UnixMs,
    pub count: i64,
    pub last_value: Option<f64>,
    pub details: serde_json::Value,
    pub acknowledged_at: Option<UnixMs>,
    pub cleared_at: Option<UnixMs>,
    pub updated_at: UnixMs,
    /// `unverified`, `verified` or `dismissed` ([`common::Verdict`]).
    pub verdict: String,
    pub verdict_reason: Option<String>,
    pub verdict_note: Option<String>,
    /// Who gave the verdict (the audit log's actor).
    pub verdict_by: Option<String>,
    pub verdict_at: Option<UnixMs>,
    /// The supervision record this finding belongs to, if any.
    pub record_id: Option<i64>,
    /// (site, device or camera, rule, kind): repeats of the same condition share it.
    #[serde(skip)]
    pub dedup_key: String,
}

/// A person's verdict on a finding, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GivenVerdict {
    /// A true finding; an active finding is also acknowledged.
    Verified { note: Option<String> },
    /// A false positive; the finding is cleared.
    Dismissed { reason: common::DismissReason, note: Option<String> },
}

/// Longest verdict note, in characters.
pub const VERDICT_NOTE_MAX: usize = 2000;

/// Filters of a finding query; all optional.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub site: Option<String>,
    pub device: Option<String>,
    pub camera: Option<String>,
    pub rule: Option<String>,
    pub states: Vec<FindingState>,
    pub severities: Vec<Severity>,
    /// `last_seen >= since`
    pub since: Option<UnixMs>,
    /// `last_seen < until`
    pub until: Option<UnixMs>,
    /// Only ids below this (the cursor of the previous page).
    pub before_id: Option<i64>,
    /// Any when empty.
    pub verdicts: Vec<common::Verdict>,
    /// `updated_at >= updated_since`, oldest change first (an event stream's resumption).
    pub updated_since: Option<UnixMs>,
    pub limit: i64,
}

/// A device row.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: String,
    pub site_id: String,
    pub kind: String,
    pub name: String,
    pub secret_hash: String,
    pub source: String,
    pub created_at: UnixMs,
    pub last_seen: Option<UnixMs>,
    pub online: bool,
}

/// A stored reading.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reading {
    pub ts: UnixMs,
    pub received_at: UnixMs,
    pub values: serde_json::Value,
}

/// Where the next page of a device's readings starts: the readings at or before `ts`, less the
/// first `skip` of those at `ts` exactly (the previous pages returned them). A cursor over `ts`
/// alone would lose the readings that share the last timestamp of a page; the table has no row
/// id (PostgreSQL), so ties are counted in their fixed order (arrival, then values) instead.
/// Shown to clients as `{ts}_{skip}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingsCursor {
    pub ts: UnixMs,
    pub skip: i64,
}

impl std::fmt::Display for ReadingsCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.ts, self.skip)
    }
}

impl std::str::FromStr for ReadingsCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ts, skip) = s.split_once('_').ok_or(())?;
        let skip: i64 = skip.parse().map_err(|_| ())?;
        if skip < 0 {
            return Err(());
        }
        Ok(ReadingsCursor { ts: ts.parse().map_err(|_| ())?, skip })
    }
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database { context, source }
}

/// The columns `device_from_row` reads.
const DEVICE_COLUMNS: &str =
    "id, site_id, kind, name, secret_hash, source, created_at, last_seen, online";

fn device_from_row(r: &AnyRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        source: r.try_get("source")?,
        created_at: r.try_get("created_at")?,
        last_seen: r.try_get("last_seen")?,
        online: r.try_get::<i64, _>("online")? != 0,
    })
}

const FINDING_COLUMNS: &str = "id, site_id, device_id, camera_id, rule, kind, severity, state, \
    item_code, region, summary, first_seen, last_seen, count, last_value, details, \
    acknowledged_at, cleared_at, updated_at, verdict, verdict_reason, verdict_note, verdict_by, \
    verdict_at, record_id, dedup_key";

fn finding_from_row(r: &AnyRow) -> Result<Finding, sqlx::Error> {
    let details: String = r.try_get("details")?;
    Ok(Finding {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        device_id: r.try_get("device_id")?,
        camera_id: r.try_get("camera_id")?,
        rule: r.try_get("rule")?,
        kind: r.try_get("kind")?,
        severity: r.try_get("severity")?,
        state: r.try_get("state")?,
        item_code: r.try_get("item_code")?,
        region: r.try_get("region")?,
        summary: r.try_get("summary")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        count: r.try_get("count")?,
        last_value: r.try_get("last_value")?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        acknowledged_at: r.try_get("acknowledged_at")?,
        cleared_at: r.try_get("cleared_at")?,
        updated_at: r.try_get("updated_at")?,
        verdict: r.try_get("verdict")?,
        verdict_reason: r.try_get("verdict_reason")?,
        verdict_note: r.try_get("verdict_note")?,
        verdict_by: r.try_get("verdict_by")?,
        verdict_at: r.try_get("verdict_at")?,
        record_id: r.try_get("record_id")?,
        dedup_key: r.try_get("dedup_key")?,
    })
}

impl Store {
    /// Connects and migrates. A relative SQLite path is taken under `data_dir`.
    pub async fn connect(url: &str, data_dir: &Path, max_connections: u32) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            let full =
                if Path::new(path).is_absolute() { path.into() } else { data_dir.join(path) };
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    context: format!("creating {}", parent.display()),
                    source,
                })?;
            }
            (format!("sqlite://{}?mode=rwc", full.display()), Backend::Sqlite)
        } else {
            (url.to_owned(), Backend::Postgres)
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(max_connections)
            // Short: with the database away, API reads answer 503 within seconds instead of
            // hanging; the writer retries by itself.
            .acquire_timeout(Duration::from_secs(3));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers (the API) run beside the writer; busy_timeout makes
                    // concurrent writers wait for the lock instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    // Checkpoints (and their fsync) would otherwise run inside whichever commit
                    // crosses the threshold, stalling the writer: `checkpoint()` runs them
                    // beside it instead.
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await.map_err(|source| Error::Database {
            context: "connecting to the database (database.url / HUB_DATABASE_URL)",
            source,
        })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        migrator.run(&pool).await.map_err(|e| Error::Migration(e.to_string()))?;
        Ok(Self { pool, backend })
    }

    /// Copies the SQLite write-ahead log into the database without blocking writers (PASSIVE);
    /// a no-op on PostgreSQL. Called periodically by the monitor.
    pub async fn checkpoint(&self) -> Result<(), Error> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await
                .map_err(db("checkpointing the SQLite log"))?;
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db("health check"))?;
        Ok(())
    }

    pub async fn upsert_site(&self, s: &config::Site) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO sites (id, name, region, industry, entity_name, uscc, integrator) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, region = excluded.region, \
             industry = excluded.industry, entity_name = excluded.entity_name, \
             uscc = excluded.uscc, integrator = excluded.integrator",
        )
        .bind(s.id.as_str())
        .bind(&s.name)
        .bind(&s.region)
        .bind(s.industry.as_str())
        .bind(&s.entity_name)
        .bind(&s.uscc)
        .bind(s.integrator.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db("saving a site"))?;
        Ok(())
    }

    /// The ids of the stored sites within `scope`, sorted (the scope's SQL form, for checks).
    pub async fn site_ids_in(&self, scope: &Scope) -> Result<Vec<String>, Error> {
        let mut binds = Vec::new();
        let cond = scope.sql("id", &mut binds);
        let sql = format!("SELECT id FROM sites WHERE {cond} ORDER BY id");
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing sites"))?;
        rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>().map_err(db("reading sites"))
    }

    /// Inserts a device, or updates it when `replace` (config devices follow the file).
    pub async fn upsert_device(&self, d: &DeviceRow, replace: bool) -> Result<bool, Error> {
        Ok(self.exec(&Self::save_device(d, replace), "saving a device").await? == 1)
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRow>, Error> {
        let rows = sqlx::query(&format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing devices"))?;
        rows.iter()
            .map(device_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading devices"))
    }

    /// Writes one batch in one transaction: readings, findings, device state. Returns what
    /// the finding upserts did, in the order of `batch.findings`.
    pub async fn write_batch(&self, batch: &Batch, now: UnixMs) -> Result<Written, Error> {
        let mut tx = self.pool.begin().await.map_err(db("starting a transaction"))?;
        let mut stored = 0;
        for chunk in batch.readings.chunks(READINGS_PER_INSERT) {
            let mut sql = String::with_capacity(96 + chunk.len() * 28);
            sql.push_str(
                "INSERT INTO readings (device_id, ts, received_at, vals, device_clock) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                // sqlx resolves each `$N` of a SQLite statement by name, a linear search per
                // parameter: quadratic for a 2000-parameter insert. Anonymous `?` skips that.
                if self.backend == Backend::Sqlite {
                    sql.push_str("(?,?,?,?,?)");
                } else {
                    let b = i * 5;
                    let _ = write!(sql, "(${},${},${},${},${})", b + 1, b + 2, b + 3, b + 4, b + 5);
                }
            }
            // A reading sent again (lost PUBACK, broker redelivery) hits the unique
            // (device, ts) of device-clock readings and is skipped.
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.device_id)
                    .bind(r.ts)
                    .bind(r.received_at)
                    .bind(&r.vals)
                    .bind(i16::from(r.device_clock));
            }
            stored += q.execute(&mut *tx).await.map_err(db("storing readings"))?.rows_affected();
        }
        let mut changes = Vec::with_capacity(batch.findings.len());
        for f in &batch.findings {
            let change = upsert_finding(&mut tx, f, now).await?;
            for e in &f.evidence {
                sqlx::query(
                    "INSERT INTO evidence (finding_id, captured_at, frame_path, annotated_path, \
                     details, missing) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(change.id)
                .bind(e.captured_at)
                .bind(&e.frame_path)
                .bind(&e.annotated_path)
                .bind(&e.details)
                .bind(e.missing.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(db("storing evidence"))?;
            }
            changes.push(change);
        }
        for (id, online) in &batch.status {
            sqlx::query("UPDATE devices SET online = $1 WHERE id = $2")
                .bind(i64::from(*online))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("updating device state"))?;
        }
        for (id, seen) in &batch.seen {
            sqlx::query("UPDATE devices SET last_seen = $1 WHERE id = $2")
                .bind(*seen)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("updating device last seen"))?;
        }
        tx.commit().await.map_err(db("committing a batch"))?;
        Ok(Written { changes, readings: stored })
    }

    /// Keeps a batch the database refused for good, whole, in `dead_letters`.
    pub async fn dead_letter(&self, batch: &Batch, error: &str, now: UnixMs) -> Result<i64, Error> {
        let json = serde_json::to_string(batch)
            .unwrap_or_else(|e| format!("{{\"unserializable\":\"{e}\"}}"));
        let row = sqlx::query(
            "INSERT INTO dead_letters (created_at, error, readings, findings, batch) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(now)
        .bind(error)
        .bind(batch.readings.len() as i64)
        .bind(batch.findings.len() as i64)
        .bind(json)
        .fetch_one(&self.pool)
        .await
        .map_err(db("keeping a refused batch in dead_letters"))?;
        row.try_get("id").map_err(db("reading a dead letter's id"))
    }

    /// Number of dead letters kept.
    pub async fn dead_letter_count(&self) -> Result<i64, Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM dead_letters")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get("n"))
            .map_err(db("counting dead letters"))
    }

    /// Findings within `scope` matching the filter, newest first.
    pub async fn findings(&self, f: &FindingFilter, scope: &Scope) -> Result<Vec<Finding>, Error> {
        let mut binds = Vec::new();
        let mut sql = format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE {}",
            scope.sql("site_id", &mut binds)
        );
        let mut cond = |sql: &mut String, c: &str, b: Bind| {
            binds.push(b);
            let _ = write!(sql, " AND {c} ${}", binds.len());
        };
        for (col, v) in [
            ("site_id =", &f.site),
            ("device_id =", &f.device),
            ("camera_id =", &f.camera),
            ("rule =", &f.rule),
        ] {
            if let Some(v) = v {
                cond(&mut sql, col, Bind::Text(v.clone()));
            }
        }
        for (col, v) in [
            ("last_seen >=", f.since),
            ("last_seen <", f.until),
            ("id <", f.before_id),
            ("updated_at >=", f.updated_since),
        ] {
            if let Some(v) = v {
                cond(&mut sql, col, Bind::Int(v));
            }
        }
        // Enum values are fixed strings of ours: inline them.
        let list =
            |names: Vec<&str>| names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(",");
        if !f.states.is_empty() {
            let _ = write!(
                sql,
                " AND state IN ({})",
                list(f.states.iter().map(|s| s.as_str()).collect())
            );
        }
        if !f.severities.is_empty() {
            let names = f.severities.iter().map(|s| s.as_str()).collect();
            let _ = write!(sql, " AND severity IN ({})", list(names));
        }
        if !f.verdicts.is_empty() {
            let names = f.verdicts.iter().map(|v| v.as_str()).collect();
            let _ = write!(sql, " AND verdict IN ({})", list(names));
        }
        let order = if f.updated_since.is_some() { "updated_at, id" } else { "id DESC" };
        // One more than a page, so that the API can tell whether another page follows.
        let most = crate::api::FINDINGS_LIMIT_MAX + 1;
        let _ = write!(sql, " ORDER BY {order} LIMIT {}", f.limit.clamp(1, most));
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing findings"))?;
        rows.iter().map(finding_from_row).collect::<Result<_, _>>().map_err(db("reading findings"))
    }

    /// Evidence of the given findings, oldest first per finding.
    pub async fn evidence(&self, finding_ids: &[i64]) -> Result<Vec<Evidence>, Error> {
        if finding_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are integers of ours: inline them.
        let list = finding_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows = sqlx::query(&format!(
            "SELECT id, finding_id, captured_at, frame_path, annotated_path, details, missing \
             FROM evidence WHERE finding_id IN ({list}) ORDER BY finding_id, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing evidence"))?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(Evidence {
                    id: r.try_get("id")?,
                    finding_id: r.try_get("finding_id")?,
                    captured_at: r.try_get("captured_at")?,
                    frame_path: r.try_get("frame_path")?,
                    annotated_path: r.try_get("annotated_path")?,
                    detections: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    missing: r.try_get("missing")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading evidence"))
    }

    /// The statement saving a device: a new one (nothing when the id exists), or, with
    /// `replace`, its fields updated (configuration devices follow the file).
    pub fn save_device(d: &DeviceRow, replace: bool) -> Stmt {
        let on_conflict = if replace {
            "DO UPDATE SET site_id = excluded.site_id, kind = excluded.kind, \
             name = excluded.name, secret_hash = excluded.secret_hash, source = excluded.source"
        } else {
            "DO NOTHING"
        };
        Stmt::new(
            format!(
                "INSERT INTO devices (id, site_id, kind, name, secret_hash, source, created_at, \
                 online) VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT (id) {on_conflict}"
            ),
            vec![
                Bind::Text(d.id.clone()),
                Bind::Text(d.site_id.clone()),
                Bind::Text(d.kind.clone()),
                Bind::Text(d.name.clone()),
                Bind::Text(d.secret_hash.clone()),
                Bind::Text(d.source.clone()),
                Bind::Int(d.created_at),
            ],
        )
    }

    pub fn remove_device(id: &str) -> Stmt {
        Stmt::new("DELETE FROM devices WHERE id = $1", vec![Bind::Text(id.into())])
    }

    /// The statement saving a camera: a new one (nothing when the id exists) or a change.
    pub fn save_camera(c: &CameraRow, replace: bool) -> Stmt {
        let sql = if replace {
            "INSERT INTO cameras (id, site_id, spec, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, spec = excluded.spec, \
             source = excluded.source, updated_at = excluded.updated_at"
        } else {
            "INSERT INTO cameras (id, site_id, spec, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
        };
        Stmt::new(
            sql,
            vec![
                Bind::Text(c.id.clone()),
                Bind::Text(c.site_id.clone()),
                Bind::Text(c.spec.clone()),
                Bind::Text(c.source.clone()),
                Bind::Int(c.created_at),
                Bind::Int(c.updated_at),
            ],
        )
    }

    pub fn remove_camera(id: &str) -> Stmt {
        Stmt::new("DELETE FROM cameras WHERE id = $1", vec![Bind::Text(id.into())])
    }

    /// Inserts or replaces a camera; returns false when `replace` is off and it exists.
    pub async fn upsert_camera(&self, c: &CameraRow, replace: bool) -> Result<bool, Error> {
        Ok(self.exec(&Self::save_camera(c, replace), "saving a camera").await? == 1)
    }

    pub async fn delete_camera(&self, id: &str) -> Result<bool, Error> {
        Ok(self.exec(&Self::remove_camera(id), "deleting a camera").await? == 1)
    }

    pub async fn cameras(&self) -> Result<Vec<CameraRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, site_id, spec, source, created_at, updated_at FROM cameras ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing cameras"))?;
        rows.iter()
            .map(|r| {
                Ok(CameraRow {
                    id: r.try_get("id")?,
                    site_id: r.try_get("site_id")?,
                    spec: r.try_get("spec")?,
                    source: r.try_get("source")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading cameras"))
    }

    /// One finding, `None` when it does not exist or lies outside `scope` (the same answer).
    pub async fn finding(&self, id: i64, scope: &Scope) -> Result<Option<Finding>, Error> {
        let mut binds = vec![Bind::Int(id)];
        let cond = scope.sql("site_id", &mut binds);
        let sql = format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1 AND {cond}");
        let row = bind_all(sqlx::query(&sql), &binds)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a finding"))?;
        row.as_ref().map(finding_from_row).transpose().map_err(db("reading a finding"))
    }

    /// Moves a finding within `scope` to `to` when the transition is allowed (active →
    /// acknowledged, active/acknowledged → cleared), with its audit row in the same
    /// transaction. Returns the finding after the change, or the error explaining why not
    /// (404 outside the scope, as for an id that does not exist).
    pub async fn transition(
        &self,
        id: i64,
        to: FindingState,
        now: UnixMs,
        scope: &Scope,
        audit: &AuditEntry,
    ) -> Result<Finding, Error> {
        let sql = match to {
            FindingState::Acknowledged => {
                "UPDATE findings SET state = 'acknowledged', acknowledged_at = $1, updated_at = $1 \
                 WHERE id = $2 AND state = 'active'"
            }
            FindingState::Cleared => {
                "UPDATE findings SET state = 'cleared', cleared_at = $1, updated_at = $1 \
                 WHERE id = $2 AND state <> 'cleared'"
            }
            FindingState::Active => {
                return Err(Error::InvalidArgument(
                    "a finding cannot be set back to active".into(),
                ));
            }
        };
        let before = self.finding_in(id, scope).await?;
        let mut audit = audit.clone();
        audit.before = Some(serde_json::json!({"state": before.state}));
        audit.after = Some(serde_json::json!({"state": to.as_str()}));
        let stmt = Stmt::new(sql, vec![Bind::Int(now), Bind::Int(id)]);
        self.change_finding(id, scope, stmt, &audit, now, |f| {
            format!("finding {id} is {}; it cannot become {}", f.state, to.as_str())
        })
        .await
    }

    /// A finding within `scope`, or 404 (also outside it).
    async fn finding_in(&self, id: i64, scope: &Scope) -> Result<Finding, Error> {
        self.finding(id, scope).await?.ok_or(Error::NotFound(format!("finding {id}")))
    }

    /// Applies `stmt`, a change of finding `id` that changes nothing when the finding cannot
    /// take it, with its audit row in one transaction; returns the finding after, or 409 with
    /// `conflict`'s explanation.
    async fn change_finding(
        &self,
        id: i64,
        scope: &Scope,
        stmt: Stmt,
        audit: &AuditEntry,
        now: UnixMs,
        conflict: impl FnOnce(&Finding) -> String,
    ) -> Result<Finding, Error> {
        let applied = self.apply_if(&[stmt], audit, now).await?;
        let f = self.finding_in(id, scope).await?;
        if applied.is_none() {
            return Err(Error::Conflict(conflict(&f)));
        }
        Ok(f)
    }

    /// Gives a finding within `scope` its verdict (once: a finding already verified or
    /// dismissed answers 409 naming its verdict), with its audit row in the same transaction.
    /// Verifying acknowledges an active finding; dismissing clears it.
    pub async fn give_verdict(
        &self,
        id: i64,
        verdict: &GivenVerdict,
        now: UnixMs,
        scope: &Scope,
        audit: &AuditEntry,
        then_record: Option<&records::NewRecord>,
    ) -> Result<Finding, Error> {
        let before = self.finding_in(id, scope).await?;
        let (name, reason, note, set_state, state_after) = match verdict {
            GivenVerdict::Verified { note } => (
                "verified",
                None,
                note.clone(),
                "state = CASE WHEN state = 'active' THEN 'acknowledged' ELSE state END, \
                 acknowledged_at = CASE WHEN state = 'active' THEN $1 ELSE acknowledged_at END",
                if before.state == "active" { "acknowledged" } else { before.state.as_str() },
            ),
            GivenVerdict::Dismissed { reason, note } => (
                "dismissed",
                Some(reason.as_str().to_owned()),
                note.clone(),
                "state = 'cleared', \
                 cleared_at = CASE WHEN state = 'cleared' THEN cleared_at ELSE $1 END",
                "cleared",
            ),
        };
        let sql = format!(
            "UPDATE findings SET verdict = $2, verdict_reason = $3, verdict_note = $4, \
             verdict_by = $5, verdict_at = $1, updated_at = $1, {set_state} \
             WHERE id = $6 AND verdict = 'unverified'"
        );
        let mut audit = audit.clone();
        audit.before = Some(serde_json::json!({"state": before.state, "verdict": before.verdict}));
        audit.after = Some(serde_json::json!({
            "verdict": name, "reason": reason, "note": note, "state": state_after,
        }));
        let stmt = Stmt::new(
            &sql,
            vec![
                Bind::Int(now),
                Bind::Text(name.into()),
                Bind::OptText(reason),
                Bind::OptText(note),
                Bind::Text(audit.actor.clone()),
                Bind::Int(id),
            ],
        );
        let conflict = |f: &Finding| {
            format!(
                "finding {id} is already {} (by {}); a verdict is given once",
                f.verdict,
                f.verdict_by.as_deref().unwrap_or("someone")
            )
        };
        match then_record {
            None => self.change_finding(id, scope, stmt, &audit, now, conflict).await,
            Some(plan) => {
                // Verified and made a record of, in one transaction.
                let record_audit = AuditEntry { before: None, after: None, ..audit.clone() };
                let made = self
                    .verify_and_record(&stmt, &audit, &before, plan, &record_audit, now)
                    .await?;
                let f = self.finding_in(id, scope).await?;
                if made.is_none() {
                    return Err(Error::Conflict(conflict(&f)));
                }
                Ok(f)
            }
        }
    }

    /// A device's readings, newest first (at most `limit`).
    pub async fn readings(
        &self,
        device: &str,
        since: Option<UnixMs>,
        until: Option<UnixMs>,
        limit: i64,
    ) -> Result<Vec<Reading>, Error> {
        Ok(self.readings_page(device, since, until, None, limit, &Scope::All).await?.0)
    }

    /// One page of a device's readings, newest first (ties in arrival order), starting where
    /// `after` (the previous page's cursor) says; returns the cursor of the next page, `None` at
    /// the end.
    pub async fn readings_page(
        &self,
        device: &str,
        since: Option<UnixMs>,
        until: Option<UnixMs>,
        after: Option<ReadingsCursor>,
        limit: i64,
        scope: &Scope,
    ) -> Result<(Vec<Reading>, Option<ReadingsCursor>), Error> {
        let limit = limit.clamp(1, 10_000);
        // Readings belong to the device's site.
        let mut binds = vec![
            Bind::Text(device.to_owned()),
            Bind::Int(since.unwrap_or(i64::MIN)),
            Bind::Int(until.unwrap_or(i64::MAX)),
            Bind::Int(after.map_or(i64::MAX, |c| c.ts)),
        ];
        let in_scope = if scope.is_all() {
            "1 = 1".to_owned()
        } else {
            let cond = scope.sql("site_id", &mut binds);
            format!("device_id IN (SELECT id FROM devices WHERE {cond})")
        };
        // One more than the page, to know whether another page follows.
        let sql = format!(
            "SELECT ts, received_at, vals FROM readings WHERE device_id = $1 AND ts >= $2 \
             AND ts < $3 AND ts <= $4 AND {in_scope} ORDER BY ts DESC, received_at ASC, vals ASC \
             LIMIT {} OFFSET {}",
            limit + 1,
            after.map_or(0, |c| c.skip.max(0))
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing readings"))?;
        let mut items = rows
            .iter()
            .map(|r| {
                let vals: String = r.try_get("vals")?;
                Ok(Reading {
                    ts: r.try_get("ts")?,
                    received_at: r.try_get("received_at")?,
                    values: serde_json::from_str(&vals).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db("reading readings"))?;
        if items.len() as i64 <= limit {
            return Ok((items, None));
        }
        items.truncate(limit as usize);
        let ts = items.last().map_or(i64::MIN, |r| r.ts);
        let on_page = items.iter().rev().take_while(|r| r.ts == ts).count() as i64;
        // A page that starts and ends at the cursor's timestamp follows the ones before it.
        let before = after.filter(|c| c.ts == ts).map_or(0, |c| c.skip);
        Ok((items, Some(ReadingsCursor { ts, skip: before + on_page })))
    }

    pub async fn count_readings(&self) -> Result<i64, Error> {
        let r = sqlx::query("SELECT COUNT(*) AS n FROM readings")
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting readings"))?;
        r.try_get("n").map_err(db("counting readings"))
    }

    /// Deletes readings received before `cutoff`; returns how many.
    /// Deletes up to `chunk` readings received before `cutoff`; returns how many. The caller
    /// repeats until fewer than `chunk` go, so retention never holds the write lock (SQLite) or
    /// a huge transaction (PostgreSQL) for long.
    pub async fn delete_readings_before(&self, cutoff: UnixMs, chunk: i64) -> Result<u64, Error> {
        // Both backends have a row identity usable for a bounded delete: SQLite's rowid,
        // PostgreSQL's ctid.
        let sql = match self.backend {
            Backend::Sqlite => {
                "DELETE FROM readings WHERE rowid IN \
                 (SELECT rowid FROM readings WHERE received_at < $1 LIMIT $2)"
            }
            Backend::Postgres => {
                "DELETE FROM readings WHERE ctid IN \
                 (SELECT ctid FROM readings WHERE received_at < $1 LIMIT $2)"
            }
        };
        let r = sqlx::query(sql)
            .bind(cutoff)
            .bind(chunk)
            .execute(&self.pool)
            .await
            .map_err(db("applying readings retention"))?;
        Ok(r.rows_affected())
    }

    /// Deletes evidence rows captured before `cutoff`; returns their files (relative to
    /// `data_dir/evidence`) for the caller to remove.
    pub async fn delete_evidence_before(&self, cutoff: UnixMs) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "DELETE FROM evidence WHERE captured_at < $1 RETURNING frame_path, annotated_path",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(db("applying evidence retention"))?;
        let mut files = Vec::with_capacity(rows.len() * 2);
        for r in &rows {
            for col in ["frame_path", "annotated_path"] {
                files.push(r.try_get::<String, _>(col).map_err(db("applying evidence retention"))?);
            }
        }
        Ok(files)
    }

    /// Clears the open finding with `dedup_key`, replacing its details (e.g. a camera outage's
    /// duration once the camera is back). Returns false when no finding with that key is open
    /// (not stored yet, or already cleared).
    pub async fn clear_open_finding(
        &self,
        dedup_key: &str,
        details: &str,
        now: UnixMs,
    ) -> Result<bool, Error> {
        let r = sqlx::query(
            "UPDATE findings SET state = 'cleared', cleared_at = $1, updated_at = $1, \
             details = $2 WHERE dedup_key = $3 AND state <> 'cleared'",
        )
        .bind(now)
        .bind(details)
        .bind(dedup_key)
        .execute(&self.pool)
        .await
        .map_err(db("clearing a finding"))?;
        Ok(r.rows_affected() > 0)
    }

    /// The stored devices among `ids` (at most [`DEVICES_BY_ID_MAX`] per call), in one query:
    /// another hub on the same database may have registered them since this one started.
    pub async fn devices_by_id(&self, ids: &[&str]) -> Result<Vec<DeviceRow>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = &ids[..ids.len().min(DEVICES_BY_ID_MAX)];
        let mut sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id IN (");
        for i in 1..=ids.len() {
            let _ = write!(sql, "{}${i}", if i == 1 { "" } else { "," });
        }
        sql.push(')');
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db("looking devices up by id"))?;
        rows.iter()
            .map(device_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading devices"))
    }
}

/// Most ids [`Store::devices_by_id`] looks up at once (bind parameters per statement are
/// limited: SQLite allows 32766, PostgreSQL 65535).
pub const DEVICES_BY_ID_MAX: usize = 512;

async fn upsert_finding(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    f: &FindingHit,
    now: UnixMs,
) -> Result<FindingChange, Error> {
    // The partial unique index admits one open finding per key; the conflict clause makes a
    // repeat an atomic update of it, so concurrent writers never duplicate a finding.
    let row = sqlx::query(
        "INSERT INTO findings (dedup_key, site_id, device_id, camera_id, rule, kind, severity, \
         state, item_code, region, summary, first_seen, last_seen, count, last_value, details, \
         updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (dedup_key) WHERE state <> 'cleared' DO UPDATE SET \
         count = findings.count + excluded.count, \
         first_seen = CASE WHEN excluded.first_seen < findings.first_seen \
             THEN excluded.first_seen ELSE findings.first_seen END, \
         last_seen = CASE WHEN excluded.last_seen > findings.last_seen \
             THEN excluded.last_seen ELSE findings.last_seen END, \
         last_value = excluded.last_value, details = excluded.details, \
         updated_at = excluded.updated_at \
         RETURNING id, count",
    )
    .bind(&f.dedup_key)
    .bind(&f.site_id)
    .bind(f.device_id.as_deref())
    .bind(f.camera_id.as_deref())
    .bind(&f.rule)
    .bind(&f.kind)
    .bind(f.severity.as_str())
    .bind(f.item_code.as_deref())
    .bind(f.region.as_deref())
    .bind(&f.summary)
    .bind(f.first_seen)
    .bind(f.last_seen)
    .bind(f.count)
    .bind(f.last_value)
    .bind(&f.details)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db("storing a finding"))?;
    let id: i64 = row.try_get("id").map_err(db("storing a finding"))?;
    let count: i64 = row.try_get("count").map_err(db("storing a finding"))?;
    Ok(FindingChange { id, opened: count == f.count, count })
}
