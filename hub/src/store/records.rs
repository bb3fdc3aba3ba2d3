//! Supervision records, their transitions (the events), subscriptions and the delivery outbox
//! (docs/records.md).
//!
//! Every change of a record runs in one transaction that also writes its transition (with the
//! CloudEvent), one delivery row per matching subscription, the audit row, and, as its last
//! statement, takes the next number of the `records` sequence. That row lock is held until the
//! commit, so numbers are handed out in commit order on both backends: the pull cursor never
//! skips a change that commits later with a smaller number.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use common::{Industry, RecordAction, RecordState, Severity, Transport, UnixMs};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{AuditEntry, Backend, Bind, Finding, Scope, Store, bind_all, db};
use crate::auth::scope::SiteFacts;
use crate::error::Error;
use crate::records::import::{Entity, Item};
use crate::records::lifecycle::{self, Actor, Holder};
use crate::records::{AttachmentRow, RecordRow, TransitionRow, cloud_event, record_json};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

const RECORD_SELECT: &str = "SELECT r.id, r.dedup_key, r.state, r.item_code, r.item_name, \
    r.severity, r.industry, r.region, r.site_id, s.name AS site_name, r.entity_name, \
    r.entity_uscc, e.address AS entity_address, e.risk_grade AS entity_risk_grade, r.summary, \
    r.first_seen, r.last_seen, r.occurrences, r.evidence, r.candidates, r.returned_by, \
    r.department_id, r.assignee, r.result, r.feedback, r.claim_due_at, r.close_due_at, \
    r.escalation_level, r.escalated_at, r.escalated_to, r.escalation_reason, r.created_at, \
    r.created_by, r.updated_at, r.closed_at, r.seq \
    FROM records r LEFT JOIN sites s ON s.id = r.site_id LEFT JOIN entities e ON e.uscc = r.entity_uscc";

const TRANSITION_COLUMNS: &str =
    "id, record_id, seq, action, from_state, to_state, actor, at, note, data, event_type";

fn list(s: &str) -> Vec<String> {
    s.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

fn json_opt(s: Option<String>) -> Option<Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

fn record_from_row(r: &AnyRow) -> Result<RecordRow, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(RecordRow {
        id: r.try_get("id")?,
        dedup_key: r.try_get("dedup_key")?,
        state: state.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        item_code: r.try_get("item_code")?,
        item_name: r.try_get("item_name")?,
        severity: r.try_get("severity")?,
        industry: r.try_get("industry")?,
        region: r.try_get("region")?,
        site_id: r.try_get("site_id")?,
        site_name: r.try_get("site_name")?,
        entity_name: r.try_get("entity_name")?,
        entity_uscc: r.try_get("entity_uscc")?,
        entity_address: r.try_get("entity_address")?,
        entity_risk_grade: r.try_get("entity_risk_grade")?,
        summary: r.try_get("summary")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        occurrences: r.try_get("occurrences")?,
        evidence: json_opt(r.try_get("evidence")?).unwrap_or(Value::Null),
        candidates: list(&r.try_get::<String, _>("candidates")?),
        returned_by: list(&r.try_get::<String, _>("returned_by")?),
        department_id: r.try_get("department_id")?,
        assignee: r.try_get("assignee")?,
        result: json_opt(r.try_get("result")?),
        feedback: json_opt(r.try_get("feedback")?),
        claim_due_at: r.try_get("claim_due_at")?,
        close_due_at: r.try_get("close_due_at")?,
        escalation_level: r.try_get("escalation_level")?,
        escalated_at: r.try_get("escalated_at")?,
        escalated_to: r.try_get("escalated_to")?,
        escalation_reason: r.try_get("escalation_reason")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        closed_at: r.try_get("closed_at")?,
        seq: r.try_get("seq")?,
        finding_ids: Vec::new(),
    })
}

fn transition_from_row(r: &AnyRow) -> Result<TransitionRow, sqlx::Error> {
    Ok(TransitionRow {
        id: r.try_get("id")?,
        record_id: r.try_get("record_id")?,
        seq: r.try_get("seq")?,
        action: r.try_get("action")?,
        from: r.try_get("from_state")?,
        to: r.try_get("to_state")?,
        actor: r.try_get("actor")?,
        at: r.try_get("at")?,
        note: r.try_get("note")?,
        data: json_opt(r.try_get("data")?),
        event_type: r.try_get("event_type")?,
    })
}

fn attachment_from_row(r: &AnyRow) -> Result<AttachmentRow, sqlx::Error> {
    Ok(AttachmentRow {
        id: r.try_get("id")?,
        record_id: r.try_get("record_id")?,
        transition_id: r.try_get("transition_id")?,
        name: r.try_get("name")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        uploaded_by: r.try_get("uploaded_by")?,
        at: r.try_get("at")?,
    })
}

/// A catalogue entry as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemRow {
    pub code: String,
    pub name: String,
    pub departments: Vec<String>,
    pub industry: String,
    pub severity: String,
    pub claim_within_ms: Option<i64>,
    pub close_within_ms: Option<i64>,
    pub updated_at: UnixMs,
}

/// A regulated entity as stored, with the sites that name it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntityRow {
    pub uscc: String,
    pub name: String,
    pub region: String,
    pub industry: String,
    pub address: String,
    pub risk_grade: String,
    pub updated_at: UnixMs,
    pub sites: Vec<String>,
}

/// How records are made: deadlines and which verified findings become records at once.
#[derive(Debug, Clone)]
pub struct Policy {
    pub deadlines: config::Deadlines,
    pub auto_severities: Vec<Severity>,
    pub auto_items: Vec<String>,
}

impl Policy {
    pub fn of(c: &config::Records) -> Self {
        Self {
            deadlines: c.deadlines.clone(),
            auto_severities: c.auto_severities.clone(),
            auto_items: c.auto_items.clone(),
        }
    }

    /// Whether a verified finding becomes a record at once.
    pub fn auto(&self, f: &Finding) -> bool {
        f.severity.parse::<Severity>().is_ok_and(|s| self.auto_severities.contains(&s))
            || f.item_code.as_ref().is_some_and(|c| self.auto_items.contains(c))
    }
}

/// A record about to be created.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub finding_id: i64,
    pub dedup_key: String,
    pub item_code: String,
    pub item_name: String,
    pub severity: String,
    pub industry: String,
    pub region: String,
    pub site_id: String,
    pub entity_name: String,
    pub entity_uscc: String,
    pub summary: String,
    pub first_seen: UnixMs,
    pub last_seen: UnixMs,
    pub occurrences: i64,
    pub evidence: Value,
    pub candidates: Vec<String>,
    pub claim_within: i64,
    pub close_within: i64,
}

/// What a person does to a record, with the action's fields (validated by the API).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub note: Option<String>,
    /// distribute: the departments to send it to.
    pub departments: Vec<String>,
    /// assign: the person.
    pub assignee: Option<String>,
    /// result / feedback: what is stored on the record and the transition.
    pub content: Option<Value>,
    /// result / feedback: attachments (ids of this record's uploads).
    pub attachments: Vec<i64>,
}

/// A subscription's filters: an empty list matches everything.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    /// Region codes (a record's region matches by prefix, as scope: `610000` covers the province).
    #[schemars(length(max = 64), inner(regex(pattern = r"^[0-9]{6}$")))]
    pub regions: Vec<String>,
    #[schemars(length(max = 8))]
    pub industries: Vec<Industry>,
    #[schemars(length(max = 256), inner(regex(pattern = r"^[0-9]{14}$")))]
    pub item_codes: Vec<String>,
    #[schemars(length(max = 8))]
    pub severities: Vec<Severity>,
    /// Event types (`record.claimed`, …).
    #[schemars(length(max = 16), inner(regex(pattern = r"^record\.[a-z_]{1,32}$")))]
    pub event_types: Vec<String>,
}

impl Filters {
    pub fn matches(&self, r: &RecordRow, event_type: &str) -> bool {
        let any = |v: &[String], f: &dyn Fn(&str) -> bool| v.is_empty() || v.iter().any(|x| f(x));
        any(&self.regions, &|p| r.region.starts_with(crate::auth::scope::region_prefix(p)))
            && (self.industries.is_empty()
                || self.industries.iter().any(|i| i.as_str() == r.industry))
            && any(&self.item_codes, &|c| c == r.item_code)
            && (self.severities.is_empty()
                || self.severities.iter().any(|s| s.as_str() == r.severity))
            && any(&self.event_types, &|t| t == event_type)
    }
}

/// A signing key of a subscription.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub id: i64,
    /// `whsec_…`
    pub secret: String,
    pub created_at: UnixMs,
    /// When it stops signing (set on rotation for the old key).
    pub expires_at: Option<UnixMs>,
}

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    pub id: i64,
    pub department_id: String,
    pub name: String,
    pub url: String,
    pub transport: Transport,
    pub filters: Filters,
    pub keys: Vec<Key>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<UnixMs>,
    pub failing_since: Option<UnixMs>,
    pub last_success_at: Option<UnixMs>,
    pub created_at: UnixMs,
    pub created_by: String,
}

impl SubscriptionRow {
    /// A new, enabled webhook subscription with one signing key (`secret`).
    pub fn new(
        department: &str,
        name: &str,
        url: &str,
        secret: String,
        filters: Filters,
        now: UnixMs,
        created_by: &str,
    ) -> Self {
        Self {
            id: 0,
            department_id: department.into(),
            name: name.into(),
            url: url.into(),
            transport: Transport::Webhook,
            filters,
            keys: vec![Key { id: 1, secret, created_at: now, expires_at: None }],
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            last_success_at: None,
            created_at: now,
            created_by: created_by.into(),
        }
    }

    /// Where its events go, for notices and logs: the URL, or the department's MQTT subscriber.
    pub fn destination(&self) -> String {
        match self.transport {
            Transport::Webhook => self.url.clone(),
            Transport::Mqtt => format!("the MQTT subscriber of {}", self.department_id),
        }
    }

    /// The keys that sign at `now`.
    pub fn signing_keys(&self, now: UnixMs) -> Vec<&Key> {
        self.keys.iter().filter(|k| k.expires_at.is_none_or(|e| e > now)).collect()
    }
}

const SUBSCRIPTION_COLUMNS: &str = "id, department_id, name, url, transport, filters, keys, \
    enabled, disabled_reason, disabled_at, failing_since, last_success_at, created_at, created_by";

fn subscription_from_row(r: &AnyRow) -> Result<SubscriptionRow, sqlx::Error> {
    let filters: String = r.try_get("filters")?;
    let keys: String = r.try_get("keys")?;
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        department_id: r.try_get("department_id")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        transport: r
            .try_get::<String, _>("transport")?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        filters: serde_json::from_str(&filters).unwrap_or_default(),
        keys: serde_json::from_str(&keys).unwrap_or_default(),
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: r.try_get("disabled_reason")?,
        disabled_at: r.try_get("disabled_at")?,
        failing_since: r.try_get("failing_since")?,
        last_success_at: r.try_get("last_success_at")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

/// Delivery counts of a subscription.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// A delivery claimed by a worker: what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub subscription: SubscriptionRow,
    pub transition_id: i64,
    pub record_id: i64,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the delivery was queued (its transition's commit).
    pub created_at: UnixMs,
    /// The CloudEvent, exactly as signed and sent.
    pub event: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The HTTP status, or `None` for an MQTT subscriber's PUBACK.
    Delivered { status: Option<i64> },
    /// 410 Gone: the endpoint is disabled.
    Gone { status: i64 },
    /// Failed; tried again at `retry_at`, or given up when `None`.
    Failed { status: Option<i64>, error: String, retry_at: Option<UnixMs> },
}

/// A finished attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub claimed: Claimed,
    pub outcome: Outcome,
    pub latency_ms: i64,
}

/// A delivery with its attempts, for the delivery log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub subscription_id: i64,
    pub transition_id: i64,
    pub event_type: String,
    pub record_id: i64,
    pub state: String,
    pub attempts: i64,
    pub next_at: UnixMs,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: UnixMs,
    pub delivered_at: Option<UnixMs>,
    pub log: Vec<AttemptRow>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub at: UnixMs,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A notice to a department (or to the duty room when `department_id` is none).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticeRow {
    pub id: i64,
    pub at: UnixMs,
    pub department_id: Option<String>,
    pub kind: String,
    pub record_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub message: String,
}

/// Filters of the records list.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub states: Vec<RecordState>,
    pub site: Option<String>,
    pub item_code: Option<String>,
    pub department: Option<String>,
    /// Overdue ones only: `claim_overdue`, `close_overdue`.
    pub deadline: Option<String>,
    /// Newest first, below this cursor.
    pub before: Option<i64>,
    /// Commit order, after this cursor (the pull).
    pub after: Option<i64>,
    pub limit: i64,
    /// The hub's clock, for the deadline filters.
    pub now: UnixMs,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.message().contains("UNIQUE")
                || d.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// The scope's condition on a records query (records belong to their site).
fn scoped(scope: &Scope, binds: &mut Vec<Bind>) -> String {
    scope.sql("r.site_id", binds)
}

impl Store {
    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and writes later fails with
    /// "database is locked" without waiting when another connection wrote in between (its
    /// snapshot is stale), instead of waiting its turn.
    async fn begin_write(&self) -> Result<Tx<'static>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    // ----- catalogue and entities -----

    /// Replaces the catalogue entries of `items` (by code) in one transaction with its audit row.
    pub async fn import_catalogue(
        &self,
        items: &[Item],
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<(), Error> {
        let mut stmts = Vec::with_capacity(items.len() * 2);
        for i in items {
            stmts.push(super::Stmt::new(
                "DELETE FROM catalogue_items WHERE code = $1",
                vec![Bind::Text(i.code.to_string())],
            ));
            stmts.push(super::Stmt::new(
                "INSERT INTO catalogue_items (code, name, departments, industry, severity, \
                 claim_within, close_within, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    Bind::Text(i.code.to_string()),
                    Bind::Text(i.name.clone()),
                    Bind::Text(i.departments.join(",")),
                    Bind::Text(i.industry.as_str().into()),
                    Bind::Text(i.severity.as_str().into()),
                    Bind::OptInt(i.claim_within.map(|d| d.as_millis() as i64)),
                    Bind::OptInt(i.close_within.map(|d| d.as_millis() as i64)),
                    Bind::Int(now),
                ],
            ));
        }
        self.apply(&stmts, audit, now).await.map(|_| ())
    }

    pub async fn catalogue(&self) -> Result<Vec<ItemRow>, Error> {
        let rows = sqlx::query(
            "SELECT code, name, departments, industry, severity, claim_within, close_within, \
             updated_at FROM catalogue_items ORDER BY code",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the catalogue"))?;
        rows.iter()
            .map(item_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading the catalogue"))
    }

    async fn catalogue_item(&self, code: &str) -> Result<Option<ItemRow>, Error> {
        let row = sqlx::query(
            "SELECT code, name, departments, industry, severity, claim_within, close_within, \
             updated_at FROM catalogue_items WHERE code = $1",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a catalogue item"))?;
        row.as_ref().map(item_from_row).transpose().map_err(db("reading a catalogue item"))
    }

    /// Replaces the entities of `list` (by USCC) in one transaction with its audit row.
    pub async fn import_entities(
        &self,
        list: &[Entity],
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<(), Error> {
        let mut stmts = Vec::with_capacity(list.len() * 2);
        for e in list {
            stmts.push(super::Stmt::new(
                "DELETE FROM entities WHERE uscc = $1",
                vec![Bind::Text(e.uscc.to_string())],
            ));
            stmts.push(super::Stmt::new(
                "INSERT INTO entities (uscc, name, region, industry, address, risk_grade, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    Bind::Text(e.uscc.to_string()),
                    Bind::Text(e.name.clone()),
                    Bind::Text(e.region.to_string()),
                    Bind::Text(e.industry.as_str().into()),
                    Bind::Text(e.address.clone()),
                    Bind::Text(e.risk_grade.as_str().into()),
                    Bind::Int(now),
                ],
            ));
        }
        self.apply(&stmts, audit, now).await.map(|_| ())
    }

    /// Entities within `scope`: those with a site in it (all for `Scope::All`).
    pub async fn entities(&self, scope: &Scope) -> Result<Vec<EntityRow>, Error> {
        let rows = sqlx::query(
            "SELECT uscc, name, region, industry, address, risk_grade, updated_at FROM entities \
             ORDER BY uscc",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading entities"))?;
        let mut binds = Vec::new();
        let cond = scope.sql("id", &mut binds);
        let sql = format!("SELECT id, uscc FROM sites WHERE {cond}");
        let sites = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading sites"))?;
        let mut out = Vec::new();
        for r in &rows {
            let uscc: String = r.try_get("uscc").map_err(db("reading entities"))?;
            let of: Vec<String> = sites
                .iter()
                .filter(|s| s.try_get::<String, _>("uscc").is_ok_and(|u| u == uscc))
                .filter_map(|s| s.try_get("id").ok())
                .collect();
            if of.is_empty() && !scope.is_all() {
                continue;
            }
            let get = |c: &str| r.try_get::<String, _>(c).unwrap_or_default();
            out.push(EntityRow {
                name: get("name"),
                region: get("region"),
                industry: get("industry"),
                address: get("address"),
                risk_grade: get("risk_grade"),
                updated_at: r.try_get("updated_at").unwrap_or_default(),
                uscc,
                sites: of,
            });
        }
        Ok(out)
    }

    // ----- making records -----

    /// What a record made from `f` would hold: the item (given or the finding's), the site's
    /// entity, the candidate departments, deadlines and evidence references.
    pub async fn plan_record(
        &self,
        f: &Finding,
        item_code: Option<&str>,
        policy: &Policy,
    ) -> Result<NewRecord, Error> {
        let code = item_code.or(f.item_code.as_deref()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "finding {} names no supervision item; pass item_code (14 digits)",
                f.id
            ))
        })?;
        common::ItemCode::new(code)
            .map_err(|e| Error::InvalidArgument(format!("item_code {code:?}: {e}")))?;
        let item = self.catalogue_item(code).await?;
        let site =
            sqlx::query("SELECT region, industry, entity_name, uscc FROM sites WHERE id = $1")
                .bind(&f.site_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a site"))?
                .ok_or_else(|| Error::NotFound(format!("site {}", f.site_id)))?;
        let get = |c: &str| site.try_get::<String, _>(c).unwrap_or_default();
        let (region, industry) = (get("region"), get("industry"));
        let severity: Severity = f.severity.parse().unwrap_or(Severity::Major);
        let deadline = policy.deadlines.of(severity);
        let claim_within = item
            .as_ref()
            .and_then(|i| i.claim_within_ms)
            .unwrap_or(deadline.claim.as_millis() as i64);
        let close_within = item
            .as_ref()
            .and_then(|i| i.close_within_ms)
            .unwrap_or(deadline.close.as_millis() as i64);
        let candidates = match &item {
            Some(i) => self.departments_admitting(&i.departments, &region, &industry).await?,
            None => Vec::new(),
        };
        let evidence = self.evidence(&[f.id]).await?;
        let images: Vec<Value> = evidence
            .iter()
            .filter(|e| e.missing.is_none())
            .map(|e| {
                json!({"url": format!("/api/v1/findings/{}/evidence?item={}", f.id, e.id),
                       "captured_at": crate::api::rfc3339(e.captured_at)})
            })
            .collect();
        const HALF_HOUR: i64 = 30 * 60_000;
        let readings = f.device_id.as_ref().map(|d| {
            let (from, to) = (f.first_seen - HALF_HOUR, f.last_seen + HALF_HOUR);
            json!({"device_id": d, "from": crate::api::rfc3339(from), "to": crate::api::rfc3339(to),
                   "url": format!("/api/v1/devices/{d}/readings?since={from}&until={to}")})
        });
        let clip = f.camera_id.as_ref().map(|c| {
            json!({"camera_id": c, "from": crate::api::rfc3339(f.first_seen - 10_000),
                   "to": crate::api::rfc3339(f.last_seen + 10_000)})
        });
        Ok(NewRecord {
            finding_id: f.id,
            dedup_key: f.dedup_key.clone(),
            item_code: code.to_owned(),
            item_name: item.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            severity: f.severity.clone(),
            industry,
            region,
            site_id: f.site_id.clone(),
            entity_name: get("entity_name"),
            entity_uscc: get("uscc"),
            summary: f.summary.clone(),
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            occurrences: f.count,
            evidence: json!({"images": images, "readings": readings, "clip": clip}),
            candidates,
            claim_within,
            close_within,
        })
    }

    /// Of `ids`, the departments whose scope contains a site of this region and industry.
    async fn departments_admitting(
        &self,
        ids: &[String],
        region: &str,
        industry: &str,
    ) -> Result<Vec<String>, Error> {
        let Ok(industry) = industry.parse::<Industry>() else { return Ok(Vec::new()) };
        let site = SiteFacts { region, industry, integrator: None };
        let mut out = Vec::new();
        for d in self.departments().await? {
            if ids.contains(&d.id)
                && Scope::department(
                    &d.region,
                    d.industries.split(',').filter_map(|i| i.parse().ok()),
                )
                .admits(site)
            {
                out.push(d.id);
            }
        }
        Ok(out)
    }

    /// Makes a record of finding `f` (verified), or attaches `f` to the open record of its
    /// key. Returns the record and whether it is new.
    pub async fn record_finding(
        &self,
        f: &Finding,
        plan: &NewRecord,
        note: Option<&str>,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<(RecordRow, bool), Error> {
        // A concurrent creation for the same key loses the unique index race: the second
        // attempt then finds the record and attaches.
        for _ in 0..2 {
            let mut tx = self.begin_write().await.map_err(db("starting a record"))?;
            match self.record_finding_in(&mut tx, f, plan, note, audit, now).await {
                Ok((id, created)) => {
                    tx.commit().await.map_err(db("committing a record"))?;
                    let r = self
                        .record(id, &Scope::All)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("record {id}")))?;
                    return Ok((r, created));
                }
                Err(Error::Database { source, .. }) if is_unique_violation(&source) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("finding {}'s record is being made concurrently; retry", f.id)))
    }

    /// Verifies finding `f` (the verdict statement `verdict`, conditional) and makes its
    /// record in the same transaction, with both audit rows.
    pub async fn verify_and_record(
        &self,
        verdict: &super::Stmt,
        verdict_audit: &AuditEntry,
        f: &Finding,
        plan: &NewRecord,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<Option<i64>, Error> {
        for _ in 0..2 {
            let mut tx = self.begin_write().await.map_err(db("starting a verification"))?;
            let r = bind_all(sqlx::query(&verdict.sql), &verdict.binds)
                .execute(&mut *tx)
                .await
                .map_err(db("verifying a finding"))?;
            if r.rows_affected() == 0 {
                tx.rollback().await.map_err(db("rolling back a verification"))?;
                return Ok(None);
            }
            Self::audit_in(&mut tx, verdict_audit, now).await?;
            match self.record_finding_in(&mut tx, f, plan, None, audit, now).await {
                Ok((id, _)) => {
                    tx.commit().await.map_err(db("committing a verification and its record"))?;
                    return Ok(Some(id));
                }
                Err(Error::Database { source, .. }) if is_unique_violation(&source) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("finding {}'s record is being made concurrently; retry", f.id)))
    }

    async fn record_finding_in(
        &self,
        tx: &mut Tx<'_>,
        f: &Finding,
        plan: &NewRecord,
        note: Option<&str>,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<(i64, bool), Error> {
        let open: Option<i64> =
            sqlx::query_scalar("SELECT id FROM records WHERE dedup_key = $1 AND state <> 'closed'")
                .bind(&plan.dedup_key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db("looking for an open record"))?;
        let mut audit = audit.clone();
        if let Some(id) = open {
            sqlx::query("UPDATE findings SET record_id = $1 WHERE id = $2")
                .bind(id)
                .bind(f.id)
                .execute(&mut **tx)
                .await
                .map_err(db("attaching a finding"))?;
            sqlx::query(
                "UPDATE records SET occurrences = occurrences + $1, last_seen = CASE WHEN \
                 last_seen > $2 THEN last_seen ELSE $2 END, updated_at = $3 WHERE id = $4",
            )
            .bind(f.count)
            .bind(f.last_seen)
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db("attaching a finding"))?;
            let state = self.state_in(tx, id).await?;
            let data = json!({"finding_id": f.id});
            self.commit_change(
                tx,
                id,
                RecordAction::Attach,
                Some(state),
                state,
                &audit.actor,
                note,
                Some(data),
                now,
            )
            .await?;
            audit.action = "record.attach".into();
            audit.target = format!("record:{id}");
            audit.after = Some(json!({"finding_id": f.id}));
            Self::audit_in(tx, &audit, now).await?;
            return Ok((id, false));
        }
        let state =
            if plan.candidates.is_empty() { RecordState::New } else { RecordState::Distributed };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO records (dedup_key, state, item_code, item_name, severity, industry, \
             region, site_id, entity_name, entity_uscc, summary, first_seen, last_seen, \
             occurrences, evidence, candidates, returned_by, claim_due_at, close_due_at, \
             created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, '', $17, $18, $19, $20, $19) RETURNING id",
        )
        .bind(&plan.dedup_key)
        .bind(state.as_str())
        .bind(&plan.item_code)
        .bind(&plan.item_name)
        .bind(&plan.severity)
        .bind(&plan.industry)
        .bind(&plan.region)
        .bind(&plan.site_id)
        .bind(&plan.entity_name)
        .bind(&plan.entity_uscc)
        .bind(&plan.summary)
        .bind(plan.first_seen)
        .bind(plan.last_seen)
        .bind(plan.occurrences)
        .bind(plan.evidence.to_string())
        .bind(plan.candidates.join(","))
        .bind(now + plan.claim_within)
        .bind(now + plan.close_within)
        .bind(now)
        .bind(&audit.actor)
        .fetch_one(&mut **tx)
        .await
        .map_err(db("creating a record"))?;
        sqlx::query("UPDATE findings SET record_id = $1 WHERE id = $2")
            .bind(id)
            .bind(f.id)
            .execute(&mut **tx)
            .await
            .map_err(db("linking a finding to its record"))?;
        let data = json!({"finding_id": f.id, "candidates": plan.candidates});
        self.commit_change(
            tx,
            id,
            RecordAction::Create,
            None,
            state,
            &audit.actor,
            note,
            Some(data),
            now,
        )
        .await?;
        audit.action = "record.create".into();
        audit.target = format!("record:{id}");
        audit.after =
            Some(json!({"state": state, "finding_id": f.id, "candidates": plan.candidates}));
        Self::audit_in(tx, &audit, now).await?;
        Ok((id, true))
    }

    async fn state_in(&self, tx: &mut Tx<'_>, id: i64) -> Result<RecordState, Error> {
        let s: String = sqlx::query_scalar("SELECT state FROM records WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db("reading a record's state"))?;
        s.parse().map_err(Error::InvalidArgument)
    }

    /// Writes a transition of record `id` (already changed in `tx`): the transition, its
    /// deliveries, then the commit sequence number, last.
    #[allow(clippy::too_many_arguments)]
    async fn commit_change(
        &self,
        tx: &mut Tx<'_>,
        id: i64,
        action: RecordAction,
        from: Option<RecordState>,
        to: RecordState,
        actor: &str,
        note: Option<&str>,
        data: Option<Value>,
        now: UnixMs,
    ) -> Result<TransitionRow, Error> {
        let event_type = lifecycle::event_type(action);
        let tid: i64 = sqlx::query_scalar(
            "INSERT INTO record_transitions (record_id, action, from_state, to_state, actor, at, \
             note, data, event_type, event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '') \
             RETURNING id",
        )
        .bind(id)
        .bind(action.as_str())
        .bind(from.map(|s| s.as_str()))
        .bind(to.as_str())
        .bind(actor)
        .bind(now)
        .bind(note)
        .bind(data.as_ref().map(Value::to_string))
        .bind(event_type)
        .fetch_one(&mut **tx)
        .await
        .map_err(db("storing a record transition"))?;
        let sql = format!("{RECORD_SELECT} WHERE r.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db("reading a record"))?;
        let mut record = record_from_row(&row).map_err(db("reading a record"))?;
        record.finding_ids =
            sqlx::query_scalar("SELECT id FROM findings WHERE record_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut **tx)
                .await
                .map_err(db("reading a record's findings"))?;
        // The outbox: one delivery per subscription whose department sees the record and
        // whose filters take the event.
        let subs = sqlx::query(
            "SELECT s.id, s.filters, d.region, d.industries FROM subscriptions s \
             JOIN departments d ON d.id = s.department_id",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(db("reading subscriptions"))?;
        let industry = record.industry.parse::<Industry>().ok();
        for s in &subs {
            let get = |c: &str| s.try_get::<String, _>(c).unwrap_or_default();
            let filters: Filters = serde_json::from_str(&get("filters")).unwrap_or_default();
            let scope = Scope::department(
                &get("region"),
                get("industries").split(',').filter_map(|i| i.parse().ok()),
            );
            let sees = industry.is_some_and(|industry| {
                scope.admits(SiteFacts { region: &record.region, industry, integrator: None })
            });
            if sees && filters.matches(&record, event_type) {
                let sid: i64 = s.try_get("id").map_err(db("reading subscriptions"))?;
                sqlx::query(
                    "INSERT INTO deliveries (subscription_id, transition_id, record_id, state, \
                     attempts, next_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
                )
                .bind(sid)
                .bind(tid)
                .bind(id)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db("queueing a delivery"))?;
            }
        }
        // Last: the commit sequence (held until the commit).
        let seq: i64 = sqlx::query_scalar(
            "UPDATE sequences SET value = value + 1 WHERE name = 'records' RETURNING value",
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(db("numbering a record change"))?;
        record.seq = seq;
        let t = TransitionRow {
            id: tid,
            record_id: id,
            seq,
            action: action.as_str().into(),
            from: from.map(|s| s.as_str().into()),
            to: to.as_str().into(),
            actor: actor.into(),
            at: now,
            note: note.map(str::to_owned),
            data,
            event_type: event_type.into(),
        };
        let event = cloud_event(&t, record_json(&record, now)).to_string();
        sqlx::query("UPDATE record_transitions SET seq = $1, event = $2 WHERE id = $3")
            .bind(seq)
            .bind(event)
            .bind(tid)
            .execute(&mut **tx)
            .await
            .map_err(db("numbering a record change"))?;
        sqlx::query("UPDATE records SET seq = $1 WHERE id = $2")
            .bind(seq)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db("numbering a record change"))?;
        Ok(t)
    }

    // ----- reading records -----

    /// A record within `scope`, with its findings' ids.
    pub async fn record(&self, id: i64, scope: &Scope) -> Result<Option<RecordRow>, Error> {
        let mut binds = vec![Bind::Int(id)];
        let cond = scoped(scope, &mut binds);
        let sql = format!("{RECORD_SELECT} WHERE r.id = $1 AND {cond}");
        let row = bind_all(sqlx::query(&sql), &binds)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a record"))?;
        let Some(row) = row else { return Ok(None) };
        let mut r = record_from_row(&row).map_err(db("reading a record"))?;
        self.attach_finding_ids(std::slice::from_mut(&mut r)).await?;
        Ok(Some(r))
    }

    async fn attach_finding_ids(&self, records: &mut [RecordRow]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
        let sql = format!(
            "SELECT id, record_id FROM findings WHERE record_id IN ({}) ORDER BY id",
            ids.join(",")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading records' findings"))?;
        for row in rows {
            let (fid, rid): (i64, i64) = (
                row.try_get("id").map_err(db("reading records' findings"))?,
                row.try_get("record_id").map_err(db("reading records' findings"))?,
            );
            if let Some(r) = records.iter_mut().find(|r| r.id == rid) {
                r.finding_ids.push(fid);
            }
        }
        Ok(())
    }

    /// Records within `scope`: newest change first, or in commit order after `f.after`.
    pub async fn records(&self, f: &RecordFilter, scope: &Scope) -> Result<Vec<RecordRow>, Error> {
        let mut binds = Vec::new();
        let mut conds = vec![scoped(scope, &mut binds)];
        if !f.states.is_empty() {
            let states: Vec<String> =
                f.states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            conds.push(format!("r.state IN ({})", states.join(",")));
        }
        let mut text = |col: &str, v: &Option<String>, binds: &mut Vec<Bind>| {
            if let Some(v) = v {
                binds.push(Bind::Text(v.clone()));
                conds.push(format!("{col} = ${}", binds.len()));
            }
        };
        text("r.site_id", &f.site, &mut binds);
        text("r.item_code", &f.item_code, &mut binds);
        text("r.department_id", &f.department, &mut binds);
        let now = f.now;
        match f.deadline.as_deref() {
            Some("claim_overdue") => {
                binds.push(Bind::Int(now));
                conds.push(format!(
                    "r.state IN ('new','distributed','returned') AND r.claim_due_at < ${0} AND r.close_due_at >= ${0}",
                    binds.len()
                ));
            }
            Some("close_overdue") => {
                binds.push(Bind::Int(now));
                conds.push(format!("r.state <> 'closed' AND r.close_due_at < ${}", binds.len()));
            }
            Some("escalated") => conds.push("r.escalation_level > 0".into()),
            _ => {}
        }
        let order = if let Some(a) = f.after {
            binds.push(Bind::Int(a));
            conds.push(format!("r.seq > ${}", binds.len()));
            "r.seq ASC"
        } else {
            if let Some(b) = f.before {
                binds.push(Bind::Int(b));
                conds.push(format!("r.seq < ${}", binds.len()));
            }
            "r.seq DESC"
        };
        binds.push(Bind::Int(f.limit));
        let sql = format!(
            "{RECORD_SELECT} WHERE {} ORDER BY {order} LIMIT ${}",
            conds.join(" AND "),
            binds.len()
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing records"))?;
        let mut out: Vec<RecordRow> = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("listing records"))?;
        self.attach_finding_ids(&mut out).await?;
        Ok(out)
    }

    /// Each record's first commit sequence (its creation's).
    pub async fn first_seqs(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT record_id, MIN(seq) AS first FROM record_transitions WHERE record_id IN ({}) \
             GROUP BY record_id",
            list.join(",")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading records' first changes"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("record_id")?, r.try_get("first")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading records' first changes"))
    }

    pub async fn timeline(&self, id: i64) -> Result<Vec<TransitionRow>, Error> {
        let sql = format!(
            "SELECT {TRANSITION_COLUMNS} FROM record_transitions WHERE record_id = $1 ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading a record's timeline"))?;
        rows.iter()
            .map(transition_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading a record's timeline"))
    }

    /// Events (CloudEvent JSON) within `scope` in commit order after `after`: (seq, event).
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
        scope: &Scope,
    ) -> Result<Vec<(i64, String)>, Error> {
        let mut binds = vec![Bind::Int(after), Bind::Int(limit)];
        let cond = scoped(scope, &mut binds);
        let sql = format!(
            "SELECT t.seq, t.event FROM record_transitions t JOIN records r ON r.id = t.record_id \
             WHERE t.seq > $1 AND {cond} ORDER BY t.seq LIMIT $2"
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading record events"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("event")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading record events"))
    }

    // ----- acting on records -----

    /// Takes `action` on record `id` within `scope` for `actor`: 404 outside the scope, 403
    /// when the actor may not, 409 when the state does not allow it. The transition, its
    /// events and the audit row commit together.
    #[allow(clippy::too_many_arguments)]
    pub async fn act(
        &self,
        id: i64,
        action: RecordAction,
        change: &Change,
        actor: &Actor,
        scope: &Scope,
        policy: &Policy,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<(RecordRow, TransitionRow), Error> {
        for _ in 0..3 {
            let r = self.record(id, scope).await?.ok_or(Error::NotFound(format!("record {id}")))?;
            let holder =
                Holder { candidates: &r.candidates, department: r.department_id.as_deref() };
            let mine = actor.department.clone().unwrap_or_default();
            let others: Vec<String> =
                r.candidates.iter().filter(|c| **c != mine).cloned().collect();
            let to = lifecycle::next(id, r.state, action, !others.is_empty())
                .map_err(Error::Conflict)?;
            // The state first (409 says what is allowed now), then who may (403).
            lifecycle::may(action, actor, &holder).map_err(Error::PermissionDenied)?;
            let mut sets: Vec<String> = vec!["state = $1".into(), "updated_at = $2".into()];
            let mut binds = vec![Bind::Text(to.as_str().into()), Bind::Int(now)];
            let mut set = |col: &str, b: Bind, sets: &mut Vec<String>| {
                binds.push(b);
                sets.push(format!("{col} = ${}", binds.len()));
            };
            let mut data = change.content.clone();
            match action {
                RecordAction::Distribute => {
                    let candidates = self
                        .departments_admitting(&change.departments, &r.region, &r.industry)
                        .await?;
                    if let Some(d) = change.departments.iter().find(|d| !candidates.contains(d)) {
                        return Err(Error::InvalidArgument(format!(
                            "department {d:?} does not exist or does not supervise site {} \
                             (region {}, {})",
                            r.site_id, r.region, r.industry
                        )));
                    }
                    let claim_within = self.claim_within(&r, policy).await?;
                    set("candidates", Bind::Text(candidates.join(",")), &mut sets);
                    set("department_id", Bind::OptText(None), &mut sets);
                    set("claim_due_at", Bind::Int(now + claim_within), &mut sets);
                    data = Some(json!({"departments": candidates}));
                }
                RecordAction::Claim => set("department_id", Bind::Text(mine.clone()), &mut sets),
                RecordAction::Assign => {
                    set("assignee", Bind::OptText(change.assignee.clone()), &mut sets);
                    data = Some(json!({"assignee": change.assignee}));
                }
                RecordAction::Result | RecordAction::Feedback => {
                    let mut content = change.content.clone().unwrap_or(json!({}));
                    content["attachments"] = json!(change.attachments);
                    content["by"] = json!(audit.actor);
                    content["at"] = json!(crate::api::rfc3339(now));
                    let col = if action == RecordAction::Result { "result" } else { "feedback" };
                    set(col, Bind::Text(content.to_string()), &mut sets);
                    data = Some(content);
                }
                RecordAction::Close => set("closed_at", Bind::Int(now), &mut sets),
                RecordAction::Reopen => set("closed_at", Bind::OptInt(None), &mut sets),
                RecordAction::Return => {
                    let mut returned = r.returned_by.clone();
                    returned.push(mine.clone());
                    set("candidates", Bind::Text(others.join(",")), &mut sets);
                    set("returned_by", Bind::Text(returned.join(",")), &mut sets);
                    set("department_id", Bind::OptText(None), &mut sets);
                    set("assignee", Bind::OptText(None), &mut sets);
                    data = Some(json!({"returned_by": mine, "candidates": others}));
                }
                RecordAction::Create | RecordAction::Escalate | RecordAction::Attach => {
                    return Err(Error::InvalidArgument(format!(
                        "{action} is the hub's own action"
                    )));
                }
            }
            binds.push(Bind::Int(id));
            let id_param = binds.len();
            binds.push(Bind::Int(r.seq));
            let sql = format!(
                "UPDATE records SET {} WHERE id = ${id_param} AND seq = ${}",
                sets.join(", "),
                binds.len()
            );
            let mut tx = self.begin_write().await.map_err(db("starting a record change"))?;
            let changed = match bind_all(sqlx::query(&sql), &binds).execute(&mut *tx).await {
                Ok(c) => c.rows_affected(),
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::Conflict(format!(
                        "record {id} cannot be reopened: another open record holds its finding's key"
                    )));
                }
                Err(e) => return Err(db("changing a record")(e)),
            };
            if changed == 0 {
                // Changed meanwhile: decide again on what it is now.
                tx.rollback().await.map_err(db("rolling back a record change"))?;
                continue;
            }
            if !change.attachments.is_empty() {
                let ids: Vec<String> = change.attachments.iter().map(i64::to_string).collect();
                let n = sqlx::query(&format!(
                    "UPDATE record_attachments SET transition_id = -1 WHERE record_id = $1 \
                     AND transition_id IS NULL AND id IN ({})",
                    ids.join(",")
                ))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("linking attachments"))?;
                if n.rows_affected() != change.attachments.len() as u64 {
                    tx.rollback().await.map_err(db("rolling back a record change"))?;
                    return Err(Error::InvalidArgument(format!(
                        "attachments {:?}: each must be an upload to record {id} not yet used by a step",
                        change.attachments
                    )));
                }
            }
            let t = self
                .commit_change(
                    &mut tx,
                    id,
                    action,
                    Some(r.state),
                    to,
                    &audit.actor,
                    change.note.as_deref(),
                    data.clone(),
                    now,
                )
                .await?;
            if !change.attachments.is_empty() {
                sqlx::query("UPDATE record_attachments SET transition_id = $1 WHERE record_id = $2 AND transition_id = -1")
                    .bind(t.id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("linking attachments"))?;
            }
            let mut audit = audit.clone();
            audit.before = Some(json!({"state": r.state}));
            audit.after = Some(json!({"state": to, "note": change.note, "data": data}));
            Self::audit_in(&mut tx, &audit, now).await?;
            tx.commit().await.map_err(db("committing a record change"))?;
            let after = self
                .record(id, &Scope::All)
                .await?
                .ok_or(Error::NotFound(format!("record {id}")))?;
            return Ok((after, t));
        }
        Err(Error::Conflict(format!("record {id} keeps changing; retry")))
    }

    async fn claim_within(&self, r: &RecordRow, policy: &Policy) -> Result<i64, Error> {
        let item = self.catalogue_item(&r.item_code).await?;
        let severity: Severity = r.severity.parse().unwrap_or(Severity::Major);
        Ok(item
            .and_then(|i| i.claim_within_ms)
            .unwrap_or(policy.deadlines.of(severity).claim.as_millis() as i64))
    }

    /// Escalates records past a deadline: not claimed by `claim_due_at` (level 1), not closed by
    /// `close_due_at` (level 2), to the departments one administrative level up that
    /// supervise the industry, with a notice to each. Returns the escalated records' ids.
    pub async fn escalate_overdue(&self, now: UnixMs) -> Result<Vec<i64>, Error> {
        let rows = sqlx::query(
            "SELECT id FROM records WHERE state <> 'closed' AND ((escalation_level < 2 AND \
             close_due_at < $1) OR (escalation_level < 1 AND claim_due_at < $1 AND state IN \
             ('new','distributed','returned'))) ORDER BY id LIMIT 200",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db("looking for overdue records"))?;
        let departments = self.departments().await?;
        let mut done = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("id").map_err(db("looking for overdue records"))?;
            let Some(r) = self.record(id, &Scope::All).await? else { continue };
            let (level, reason) = if r.close_due_at < now {
                (2, format!("not closed by its deadline {}", crate::api::rfc3339(r.close_due_at)))
            } else {
                (1, format!("not claimed by its deadline {}", crate::api::rfc3339(r.claim_due_at)))
            };
            // The handling department's level, else the record's region; one level up.
            let base = r
                .department_id
                .as_ref()
                .or(r.candidates.first())
                .and_then(|d| departments.iter().find(|x| &x.id == d))
                .map_or(r.region.clone(), |d| d.region.clone());
            let to = supervisors(&base, &r.industry, &departments);
            let mut tx = self.begin_write().await.map_err(db("starting an escalation"))?;
            let n = sqlx::query(
                "UPDATE records SET escalation_level = $1, escalated_at = $2, escalated_to = $3, \
                 escalation_reason = $4, updated_at = $2 WHERE id = $5 AND escalation_level < $1",
            )
            .bind(level)
            .bind(now)
            .bind(to.join(","))
            .bind(&reason)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("escalating a record"))?;
            if n.rows_affected() == 0 {
                continue;
            }
            let data = json!({"level": level, "to": to, "reason": reason});
            self.commit_change(
                &mut tx,
                id,
                RecordAction::Escalate,
                Some(r.state),
                r.state,
                "hub:deadline",
                Some(&reason),
                Some(data.clone()),
                now,
            )
            .await?;
            let number = crate::records::number(r.id, r.created_at);
            let targets: Vec<Option<&str>> = if to.is_empty() {
                vec![None]
            } else {
                to.iter().map(|d| Some(d.as_str())).collect()
            };
            for d in targets {
                sqlx::query(
                    "INSERT INTO notices (at, department_id, kind, record_id, message) VALUES \
                     ($1, $2, 'escalation', $3, $4)",
                )
                .bind(now)
                .bind(d)
                .bind(id)
                .bind(format!("督办 record {number} ({}, {}): {reason}", r.item_name, r.site_id))
                .execute(&mut *tx)
                .await
                .map_err(db("writing a notice"))?;
            }
            let audit = AuditEntry {
                actor: "hub:deadline".into(),
                address: "-".into(),
                action: "record.escalate".into(),
                target: format!("record:{id}"),
                before: Some(json!({"escalation_level": r.escalation_level})),
                after: Some(data),
            };
            Self::audit_in(&mut tx, &audit, now).await?;
            tx.commit().await.map_err(db("committing an escalation"))?;
            done.push(id);
        }
        Ok(done)
    }

    // ----- attachments -----

    pub async fn add_attachment(
        &self,
        a: &AttachmentRow,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<i64, Error> {
        let mut tx = self.begin_write().await.map_err(db("starting an upload"))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO record_attachments (record_id, name, content_type, size, sha256, \
             uploaded_by, at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(a.record_id)
        .bind(&a.name)
        .bind(&a.content_type)
        .bind(a.size)
        .bind(&a.sha256)
        .bind(&a.uploaded_by)
        .bind(a.at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("storing an attachment"))?;
        let mut audit = audit.clone();
        audit.after = Some(json!({"attachment": id, "name": a.name, "size": a.size}));
        Self::audit_in(&mut tx, &audit, now).await?;
        tx.commit().await.map_err(db("committing an attachment"))?;
        Ok(id)
    }

    pub async fn attachments(&self, record_id: i64) -> Result<Vec<AttachmentRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, record_id, transition_id, name, content_type, size, sha256, uploaded_by, \
             at FROM record_attachments WHERE record_id = $1 ORDER BY id",
        )
        .bind(record_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading attachments"))?;
        rows.iter()
            .map(attachment_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading attachments"))
    }

    // ----- subscriptions -----

    pub async fn insert_subscription(
        &self,
        s: &SubscriptionRow,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<i64, Error> {
        let mut tx = self.begin_write().await.map_err(db("starting a subscription"))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO subscriptions (department_id, name, url, transport, filters, keys, \
             enabled, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) RETURNING id",
        )
        .bind(&s.department_id)
        .bind(&s.name)
        .bind(&s.url)
        .bind(s.transport.as_str())
        .bind(serde_json::to_string(&s.filters).unwrap_or_default())
        .bind(serde_json::to_string(&s.keys).unwrap_or_default())
        .bind(s.created_at)
        .bind(&s.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("creating a subscription"))?;
        let mut audit = audit.clone();
        audit.target = format!("subscription:{id}");
        Self::audit_in(&mut tx, &audit, now).await?;
        tx.commit().await.map_err(db("committing a subscription"))?;
        Ok(id)
    }

    /// Subscriptions of `department` (all when none).
    pub async fn subscriptions(
        &self,
        department: Option<&str>,
    ) -> Result<Vec<SubscriptionRow>, Error> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE $1 IS NULL OR department_id = $1 \
             ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(department)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading subscriptions"))?;
        rows.iter()
            .map(subscription_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading subscriptions"))
    }

    pub async fn subscription(
        &self,
        id: i64,
        department: Option<&str>,
    ) -> Result<Option<SubscriptionRow>, Error> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1 AND ($2 IS NULL OR department_id = $2)"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(department)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a subscription"))?;
        row.as_ref().map(subscription_from_row).transpose().map_err(db("reading a subscription"))
    }

    /// Saves a subscription's editable fields (name, url, filters, keys, enabled).
    pub fn save_subscription(s: &SubscriptionRow) -> super::Stmt {
        super::Stmt::new(
            "UPDATE subscriptions SET name = $1, url = $2, filters = $3, keys = $4, enabled = $5, \
             disabled_reason = $6, disabled_at = $7, failing_since = $8 WHERE id = $9",
            vec![
                Bind::Text(s.name.clone()),
                Bind::Text(s.url.clone()),
                Bind::Text(serde_json::to_string(&s.filters).unwrap_or_default()),
                Bind::Text(serde_json::to_string(&s.keys).unwrap_or_default()),
                Bind::Int(s.enabled as i64),
                Bind::OptText(s.disabled_reason.clone()),
                Bind::OptInt(s.disabled_at),
                Bind::OptInt(s.failing_since),
                Bind::Int(s.id),
            ],
        )
    }

    pub fn delete_subscription(id: i64) -> Vec<super::Stmt> {
        vec![
            super::Stmt::new(
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE subscription_id = $1)",
                vec![Bind::Int(id)],
            ),
            super::Stmt::new(
                "DELETE FROM deliveries WHERE subscription_id = $1",
                vec![Bind::Int(id)],
            ),
            super::Stmt::new("DELETE FROM subscriptions WHERE id = $1", vec![Bind::Int(id)]),
        ]
    }

    pub async fn delivery_counts(&self, subscription: i64) -> Result<DeliveryCounts, Error> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM deliveries WHERE subscription_id = $1 GROUP BY state",
        )
        .bind(subscription)
        .fetch_all(&self.pool)
        .await
        .map_err(db("counting deliveries"))?;
        let mut c = DeliveryCounts::default();
        for r in rows {
            let state: String = r.try_get("state").map_err(db("counting deliveries"))?;
            let n: i64 = r.try_get("n").map_err(db("counting deliveries"))?;
            match state.as_str() {
                "pending" => c.pending = n,
                "delivered" => c.delivered = n,
                _ => c.failed += n,
            }
        }
        Ok(c)
    }

    /// A subscription's deliveries, newest first, with their attempts.
    pub async fn deliveries(
        &self,
        subscription: i64,
        record: Option<i64>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, Error> {
        let rows = sqlx::query(
            "SELECT d.id, d.subscription_id, d.transition_id, t.event_type, d.record_id, d.state, \
             d.attempts, d.next_at, d.last_status, d.last_error, d.created_at, d.delivered_at \
             FROM deliveries d JOIN record_transitions t ON t.id = d.transition_id \
             WHERE d.subscription_id = $1 AND ($2 IS NULL OR d.record_id = $2) AND \
             ($3 IS NULL OR d.state = $3) ORDER BY d.id DESC LIMIT $4",
        )
        .bind(subscription)
        .bind(record)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading deliveries"))?;
        let mut out = Vec::new();
        for r in &rows {
            let d = (|| -> Result<DeliveryRow, sqlx::Error> {
                Ok(DeliveryRow {
                    id: r.try_get("id")?,
                    subscription_id: r.try_get("subscription_id")?,
                    transition_id: r.try_get("transition_id")?,
                    event_type: r.try_get("event_type")?,
                    record_id: r.try_get("record_id")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    next_at: r.try_get("next_at")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                    delivered_at: r.try_get("delivered_at")?,
                    log: Vec::new(),
                })
            })()
            .map_err(db("reading deliveries"))?;
            out.push(d);
        }
        if !out.is_empty() {
            let ids: Vec<String> = out.iter().map(|d| d.id.to_string()).collect();
            let sql = format!(
                "SELECT delivery_id, attempt, at, status, latency_ms, error FROM delivery_attempts \
                 WHERE delivery_id IN ({}) ORDER BY attempt",
                ids.join(",")
            );
            let attempts = sqlx::query(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading delivery attempts"))?;
            for a in attempts {
                let did: i64 = a.try_get("delivery_id").map_err(db("reading delivery attempts"))?;
                let row = AttemptRow {
                    attempt: a.try_get("attempt").map_err(db("reading delivery attempts"))?,
                    at: a.try_get("at").map_err(db("reading delivery attempts"))?,
                    status: a.try_get("status").map_err(db("reading delivery attempts"))?,
                    latency_ms: a.try_get("latency_ms").map_err(db("reading delivery attempts"))?,
                    error: a.try_get("error").map_err(db("reading delivery attempts"))?,
                };
                if let Some(d) = out.iter_mut().find(|d| d.id == did) {
                    d.log.push(row);
                }
            }
        }
        Ok(out)
    }

    /// Queues the events of the subscription's records again: one event (`event`: a
    /// transition id) or those of `[from, to)`, that the subscription's scope and filters
    /// take. Returns how many.
    pub async fn replay(
        &self,
        s: &SubscriptionRow,
        event: Option<i64>,
        range: Option<(UnixMs, UnixMs)>,
        audit: &AuditEntry,
        now: UnixMs,
    ) -> Result<i64, Error> {
        let dept = self
            .department(&s.department_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("department {}", s.department_id)))?;
        let scope = Scope::department(
            &dept.region,
            dept.industries.split(',').filter_map(|i| i.parse().ok()),
        );
        let mut binds = vec![
            Bind::OptInt(event),
            Bind::OptInt(range.map(|r| r.0)),
            Bind::OptInt(range.map(|r| r.1)),
        ];
        let cond = scoped(&scope, &mut binds);
        let sql = format!(
            "SELECT t.id, t.record_id, t.event_type FROM record_transitions t JOIN records r ON \
             r.id = t.record_id WHERE ($1 IS NULL OR t.id = $1) AND ($2 IS NULL OR t.at >= $2) \
             AND ($3 IS NULL OR t.at < $3) AND {cond} ORDER BY t.seq LIMIT 100000"
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await
            .map_err(db("finding events to replay"))?;
        let mut stmts = Vec::new();
        for r in &rows {
            let tid: i64 = r.try_get("id").map_err(db("finding events to replay"))?;
            let rid: i64 = r.try_get("record_id").map_err(db("finding events to replay"))?;
            let et: String = r.try_get("event_type").map_err(db("finding events to replay"))?;
            if !s.filters.event_types.is_empty() && !s.filters.event_types.contains(&et) {
                continue;
            }
            stmts.push(super::Stmt::new(
                "INSERT INTO deliveries (subscription_id, transition_id, record_id, state, \
                 attempts, next_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
                vec![Bind::Int(s.id), Bind::Int(tid), Bind::Int(rid), Bind::Int(now)],
            ));
        }
        let n = stmts.len() as i64;
        let mut audit = audit.clone();
        audit.after = Some(
            json!({"event": event.map(crate::records::event_id), "range": range, "queued": n}),
        );
        self.apply(&stmts, &audit, now).await?;
        Ok(n)
    }

    // ----- the outbox -----

    /// Makes the pending, unleased deliveries of the department's enabled MQTT subscriptions
    /// due now (its subscriber has just subscribed: no need to wait for the next retry).
    /// Returns how many.
    pub async fn offer_mqtt_now(&self, department: &str, now: UnixMs) -> Result<u64, Error> {
        let r = sqlx::query(
            "UPDATE deliveries SET next_at = $1 WHERE state = 'pending' AND next_at > $1 AND \
             (lease_until IS NULL OR lease_until < $1) AND subscription_id IN (SELECT id FROM \
             subscriptions WHERE department_id = $2 AND transport = 'mqtt' AND enabled = 1)",
        )
        .bind(now)
        .bind(department)
        .execute(&self.pool)
        .await
        .map_err(db("offering MQTT deliveries"))?;
        Ok(r.rows_affected())
    }

    /// Claims up to `limit` due deliveries for `owner` until `now + lease_ms`: pending, due,
    /// not leased (or the lease expired: a crashed worker), of an enabled subscription, and
    /// the oldest pending one of its (subscription, record).
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: UnixMs,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, Error> {
        let lock =
            if self.backend == Backend::Postgres { "FOR UPDATE OF d SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.state = 'pending' AND d.next_at <= $3 AND (d.lease_until IS NULL OR \
             d.lease_until < $3) AND s.enabled = 1 AND NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.subscription_id = d.subscription_id AND e.record_id = d.record_id AND \
             e.state = 'pending' AND e.id < d.id) ORDER BY d.next_at, d.id LIMIT $4 {lock}) \
             AND (lease_until IS NULL OR lease_until < $3) AND state = 'pending' \
             RETURNING id, subscription_id, transition_id, record_id, attempts, created_at"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db("claiming deliveries"))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(rows.len());
        let mut tids = BTreeSet::new();
        let mut sids = BTreeSet::new();
        for r in &rows {
            let g = |c: &str| r.try_get::<i64, _>(c);
            let (id, sid, tid, rid, attempts, created_at) = (|| {
                Ok::<_, sqlx::Error>((
                    g("id")?,
                    g("subscription_id")?,
                    g("transition_id")?,
                    g("record_id")?,
                    g("attempts")?,
                    g("created_at")?,
                ))
            })()
            .map_err(db("claiming deliveries"))?;
            tids.insert(tid);
            sids.insert(sid);
            claimed.push((id, sid, tid, rid, attempts, created_at));
        }
        let join = |s: &BTreeSet<i64>| s.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let events = sqlx::query(&format!(
            "SELECT id, event FROM record_transitions WHERE id IN ({})",
            join(&tids)
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading events to deliver"))?;
        let subs = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id IN ({})",
            join(&sids)
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading subscriptions to deliver to"))?;
        let subs: Vec<SubscriptionRow> = subs
            .iter()
            .map(subscription_from_row)
            .collect::<Result<_, _>>()
            .map_err(db("reading subscriptions to deliver to"))?;
        let mut out = Vec::with_capacity(claimed.len());
        for (id, sid, tid, rid, attempts, created_at) in claimed {
            let event = events
                .iter()
                .find(|e| e.try_get::<i64, _>("id").is_ok_and(|x| x == tid))
                .and_then(|e| e.try_get::<String, _>("event").ok())
                .unwrap_or_default();
            let Some(sub) = subs.iter().find(|s| s.id == sid) else { continue };
            out.push(Claimed {
                id,
                subscription: sub.clone(),
                transition_id: tid,
                record_id: rid,
                attempts,
                created_at,
                event,
            });
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Stores finished attempts in one transaction: the log rows, the deliveries' new state
    /// (only where `owner` still holds the lease), the subscriptions' health; disables a
    /// subscription on 410 or after `disable_after_ms` of only failures, with a notice.
    pub async fn finish_deliveries(
        &self,
        owner: &str,
        done: &[Attempt],
        now: UnixMs,
        disable_after_ms: i64,
    ) -> Result<(), Error> {
        let mut tx = self.begin_write().await.map_err(db("starting to store attempts"))?;
        // The common case, delivered, in a few statements for the whole batch.
        let delivered: Vec<&Attempt> =
            done.iter().filter(|a| matches!(a.outcome, Outcome::Delivered { .. })).collect();
        if !delivered.is_empty() {
            finish_delivered(&mut tx, owner, &delivered, now).await?;
        }
        for a in done.iter().filter(|a| !matches!(a.outcome, Outcome::Delivered { .. })) {
            let c = &a.claimed;
            let attempt = c.attempts + 1;
            let (status, error) = match &a.outcome {
                Outcome::Delivered { status } => (*status, None),
                Outcome::Gone { status } => (Some(*status), None),
                Outcome::Failed { status, error, .. } => (*status, Some(error.clone())),
            };
            let (state, next_at) = match &a.outcome {
                Outcome::Delivered { .. } => ("delivered", now),
                // Held: tried again when the subscription is enabled again.
                Outcome::Gone { .. } => ("pending", now),
                Outcome::Failed { retry_at: Some(t), .. } => ("pending", *t),
                Outcome::Failed { retry_at: None, .. } => ("failed", now),
            };
            let n = sqlx::query(
                "UPDATE deliveries SET state = $1, attempts = $2, next_at = $3, last_status = $4, \
                 last_error = $5, lease_owner = NULL, lease_until = NULL, delivered_at = CASE WHEN \
                 $1 = 'delivered' THEN $6 ELSE delivered_at END WHERE id = $7 AND lease_owner = $8",
            )
            .bind(state)
            .bind(attempt)
            .bind(next_at)
            .bind(status)
            .bind(error.as_deref())
            .bind(now)
            .bind(c.id)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db("storing a delivery's outcome"))?;
            if n.rows_affected() == 0 {
                // The lease was lost (this worker was too slow): the new holder records it.
                continue;
            }
            sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms, error) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(c.id)
            .bind(attempt)
            .bind(now)
            .bind(status)
            .bind(a.latency_ms)
            .bind(error.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db("logging a delivery attempt"))?;
            let sid = c.subscription.id;
            let event = crate::records::event_id(c.transition_id);
            match &a.outcome {
                // Stored above, with the batch's others.
                Outcome::Delivered { .. } => {}
                Outcome::Gone { status } => {
                    let why = format!("the endpoint answered {status} Gone to {event}");
                    disable_in(&mut tx, &c.subscription, &why, now).await?;
                }
                Outcome::Failed { retry_at, error, .. } => {
                    sqlx::query(
                        "UPDATE subscriptions SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
                    )
                    .bind(now)
                    .bind(sid)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("updating a subscription"))?;
                    if retry_at.is_none() {
                        notice_in(
                            &mut tx,
                            &c.subscription,
                            "delivery_failed",
                            Some(c.record_id),
                            &format!(
                                "{event} to {} given up after {attempt} attempts: {error}",
                                c.subscription.destination()
                            ),
                            now,
                        )
                        .await?;
                    }
                    let since: Option<i64> =
                        sqlx::query_scalar("SELECT failing_since FROM subscriptions WHERE id = $1")
                            .bind(sid)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(db("reading a subscription"))?;
                    if since.is_some_and(|s| now - s >= disable_after_ms) {
                        let why = format!(
                            "only failures since {} (last: {error})",
                            crate::api::rfc3339(since.unwrap_or(now))
                        );
                        disable_in(&mut tx, &c.subscription, &why, now).await?;
                    }
                }
            }
        }
        tx.commit().await.map_err(db("storing delivery attempts"))?;
        Ok(())
    }

    /// Notices for `department` (all when none), newest first.
    pub async fn notices(
        &self,
        department: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NoticeRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, at, department_id, kind, record_id, subscription_id, message FROM notices \
             WHERE $1 IS NULL OR department_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(department)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading notices"))?;
        rows.iter()
            .map(|r| {
                Ok(NoticeRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    department_id: r.try_get("department_id")?,
                    kind: r.try_get("kind")?,
                    record_id: r.try_get("record_id")?,
                    subscription_id: r.try_get("subscription_id")?,
                    message: r.try_get("message")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading notices"))
    }
}

/// Stores delivered attempts: the deliveries still leased by `owner` marked delivered (one
/// statement per answer status), their log rows in one insert, their subscriptions' health.
async fn finish_delivered(
    tx: &mut Tx<'_>,
    owner: &str,
    done: &[&Attempt],
    now: UnixMs,
) -> Result<(), Error> {
    let mut statuses: Vec<Option<i64>> = done
        .iter()
        .filter_map(|a| match a.outcome {
            Outcome::Delivered { status } => Some(status),
            _ => None,
        })
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut kept = BTreeSet::new();
    for status in statuses {
        let ids: Vec<String> = done
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Delivered { status: s } if s == status))
            .map(|a| a.claimed.id.to_string())
            .collect();
        let sql = format!(
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, next_at = $1, \
             last_status = $2, last_error = NULL, lease_owner = NULL, lease_until = NULL, \
             delivered_at = $1 WHERE lease_owner = $3 AND id IN ({}) RETURNING id",
            ids.join(",")
        );
        let rows = sqlx::query_scalar::<_, i64>(&sql)
            .bind(now)
            .bind(status)
            .bind(owner)
            .fetch_all(&mut **tx)
            .await
            .map_err(db("storing deliveries"))?;
        kept.extend(rows);
    }
    // Only those this worker still held (a lost lease is the new holder's to record).
    let kept: Vec<&&Attempt> = done.iter().filter(|a| kept.contains(&a.claimed.id)).collect();
    for chunk in kept.chunks(200) {
        let mut sql = String::from(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency_ms, error) VALUES ",
        );
        let mut binds = Vec::new();
        for (i, a) in chunk.iter().enumerate() {
            let status = match a.outcome {
                Outcome::Delivered { status } => status,
                _ => None,
            };
            let b = i * 5;
            let _ = write!(
                sql,
                "{}(${}, ${}, ${}, ${}, ${}, NULL)",
                if i == 0 { "" } else { ", " },
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            );
            binds.extend([
                Bind::Int(a.claimed.id),
                Bind::Int(a.claimed.attempts + 1),
                Bind::Int(now),
                Bind::OptInt(status),
                Bind::Int(a.latency_ms),
            ]);
        }
        bind_all(sqlx::query(&sql), &binds)
            .execute(&mut **tx)
            .await
            .map_err(db("logging delivery attempts"))?;
    }
    let subs: BTreeSet<i64> = kept.iter().map(|a| a.claimed.subscription.id).collect();
    if !subs.is_empty() {
        let ids: Vec<String> = subs.iter().map(i64::to_string).collect();
        sqlx::query(&format!(
            "UPDATE subscriptions SET last_success_at = $1, failing_since = NULL WHERE id IN ({})",
            ids.join(",")
        ))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db("updating subscriptions"))?;
    }
    Ok(())
}

async fn disable_in(
    tx: &mut Tx<'_>,
    s: &SubscriptionRow,
    why: &str,
    now: UnixMs,
) -> Result<(), Error> {
    let n = sqlx::query(
        "UPDATE subscriptions SET enabled = 0, disabled_reason = $1, disabled_at = $2 WHERE id = $3 AND enabled = 1",
    )
    .bind(why)
    .bind(now)
    .bind(s.id)
    .execute(&mut **tx)
    .await
    .map_err(db("disabling a subscription"))?;
    if n.rows_affected() > 0 {
        tracing::warn!(subscription = s.id, url = %s.url, why, "subscription disabled");
        notice_in(
            tx,
            s,
            "subscription_disabled",
            None,
            &format!("subscription {} ({}) disabled: {why}", s.id, s.destination()),
            now,
        )
        .await?;
    }
    Ok(())
}

async fn notice_in(
    tx: &mut Tx<'_>,
    s: &SubscriptionRow,
    kind: &str,
    record: Option<i64>,
    message: &str,
    now: UnixMs,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO notices (at, department_id, kind, record_id, subscription_id, message) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now)
    .bind(&s.department_id)
    .bind(kind)
    .bind(record)
    .bind(s.id)
    .bind(message)
    .execute(&mut **tx)
    .await
    .map_err(db("writing a notice"))?;
    Ok(())
}

fn item_from_row(r: &AnyRow) -> Result<ItemRow, sqlx::Error> {
    Ok(ItemRow {
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        departments: list(&r.try_get::<String, _>("departments")?),
        industry: r.try_get("industry")?,
        severity: r.try_get("severity")?,
        claim_within_ms: r.try_get("claim_within")?,
        close_within_ms: r.try_get("close_within")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The departments one administrative level above `region` (county → city → province, the
/// next level that has any) that supervise `industry`.
fn supervisors(region: &str, industry: &str, departments: &[super::DepartmentRow]) -> Vec<String> {
    let mut prefix = crate::auth::scope::region_prefix(region).to_owned();
    while prefix.len() > 2 {
        prefix.truncate(prefix.len() - 2);
        let code = format!("{prefix:0<6}");
        let found: Vec<String> = departments
            .iter()
            .filter(|d| d.region == code && d.industries.split(',').any(|i| i == industry))
            .map(|d| d.id.clone())
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}
