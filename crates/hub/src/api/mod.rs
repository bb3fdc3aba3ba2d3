//! The HTTP API (axum). [`router`] builds the whole app; tests drive it with `oneshot` and over a
//! real socket.

mod cameras;
mod openapi;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cameras::CameraManager;
use crate::store::Evidence;
use axum::{Json, Router};
use common::{Clock, DeviceId, FindingState, Severity, UnixMs};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::registry::{self, Device, Registry};
use crate::store::{DeviceRow, Finding, FindingFilter, Store};

pub use openapi::{ROUTES, document as openapi_document};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: common::metrics::Registry,
    pub clock: Arc<dyn Clock>,
    /// The MQTT source is connected and subscribed.
    pub mqtt_ready: Arc<std::sync::atomic::AtomicBool>,
    pub cameras: CameraManager,
    /// `data_dir/evidence`.
    pub evidence_dir: std::path::PathBuf,
    /// The configuration file, when the hub was started from one (for reload).
    pub config_path: Option<std::path::PathBuf>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/findings/{id}", get(get_finding))
        .route("/api/v1/findings/{id}/acknowledge", post(acknowledge))
        .route("/api/v1/findings/{id}/clear", post(clear))
        .route("/api/v1/findings/{id}/evidence", get(evidence_file))
        .route("/api/v1/cameras", get(cameras::list).post(cameras::create))
        .route(
            "/api/v1/cameras/{id}",
            get(cameras::get_one).patch(cameras::update).delete(cameras::delete),
        )
        .route("/api/v1/cameras/{id}/snapshot", get(cameras::snapshot))
        .route("/api/v1/config/reload", post(cameras::reload))
        .route("/api/v1/devices", get(list_devices).post(register_device))
        .route("/api/v1/devices/{id}", get(get_device))
        .route("/api/v1/devices/{id}/readings", get(readings))
        .route("/api/v1/sites", get(list_sites))
        .route("/api/v1/models", get(list_models))
        .fallback(|| async { Error::NotFound("no such endpoint; see /api/v1/openapi.json".into()) })
        .with_state(state)
}

/// RFC 3339 (UTC, milliseconds) for API output.
pub fn rfc3339(ms: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Accepts unix milliseconds or RFC 3339.
fn parse_time(name: &str, s: &str) -> Result<UnixMs, Error> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{name}={s:?} is neither unix milliseconds nor RFC 3339 (2026-01-31T08:00:00Z)"
        ))
    })
}

fn list<T: std::str::FromStr<Err = String>>(
    name: &str,
    s: &Option<String>,
) -> Result<Vec<T>, Error> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse::<T>().map_err(|e| Error::InvalidArgument(format!("{name}: {e}"))))
        .collect()
}

fn evidence_json(e: &Evidence) -> Value {
    let url = format!("/api/v1/findings/{}/evidence?item={}", e.finding_id, e.id);
    json!({
        "id": e.id,
        "captured_at": rfc3339(e.captured_at),
        "annotated_url": url,
        "frame_url": format!("{url}&variant=frame"),
        "detections": e.detections,
    })
}

/// Findings as JSON with their evidence (one query for all of them).
async fn findings_json(store: &Store, items: &[Finding]) -> Result<Vec<Value>, Error> {
    let ids: Vec<i64> = items.iter().filter(|f| f.camera_id.is_some()).map(|f| f.id).collect();
    let evidence = store.evidence(&ids).await?;
    Ok(items
        .iter()
        .map(|f| {
            let mut v = finding_json(f);
            let ev: Vec<Value> =
                evidence.iter().filter(|e| e.finding_id == f.id).map(evidence_json).collect();
            v["evidence"] = Value::Array(ev);
            v
        })
        .collect())
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "id": f.id,
        "site_id": f.site_id,
        "device_id": f.device_id,
        "camera_id": f.camera_id,
        "rule": f.rule,
        "kind": f.kind,
        "severity": f.severity,
        "state": f.state,
        "item_code": f.item_code,
        "region": f.region,
        "summary": f.summary,
        "first_seen": rfc3339(f.first_seen),
        "last_seen": rfc3339(f.last_seen),
        "count": f.count,
        "last_value": f.last_value,
        "details": f.details,
        "acknowledged_at": f.acknowledged_at.map(rfc3339),
        "cleared_at": f.cleared_at.map(rfc3339),
    })
}

async fn healthz(State(s): State<AppState>) -> Response {
    let mqtt =
        if s.mqtt_ready.load(std::sync::atomic::Ordering::Relaxed) { "ok" } else { "connecting" };
    match s.store.ping().await {
        Ok(()) if mqtt == "ok" => {
            Json(json!({"status": "ok", "database": "ok", "mqtt": mqtt})).into_response()
        }
        r => {
            let database = r.err().map_or("ok".to_owned(), |e| e.to_string());
            let body = json!({"status": "degraded", "database": database, "mqtt": mqtt});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingQuery {
    site: Option<String>,
    device: Option<String>,
    camera: Option<String>,
    rule: Option<String>,
    state: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_findings(
    State(s): State<AppState>,
    q: Result<Query<FindingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::InvalidArgument(format!("limit={limit} must be within 1..=1000")));
    }
    let before_id = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            Error::InvalidArgument(format!("cursor={c:?} is not a cursor returned as `next`"))
        })?),
    };
    let filter = FindingFilter {
        site: q.site,
        device: q.device,
        camera: q.camera,
        rule: q.rule,
        states: list::<FindingState>("state", &q.state)?,
        severities: list::<Severity>("severity", &q.severity)?,
        since: q.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        before_id,
        limit: limit + 1,
    };
    let mut items = s.store.findings(&filter).await?;
    let next = (items.len() as i64 > limit).then(|| {
        items.truncate(limit as usize);
        items.last().map(|f| f.id.to_string())
    });
    Ok(Json(json!({
        "items": findings_json(&s.store, &items).await?,
        "next": next.flatten(),
    })))
}

fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse().map_err(|_| Error::InvalidArgument(format!("finding id {id:?} is not a number")))
}

async fn get_finding(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let id = parse_id(&id)?;
    let f = s.store.finding(id).await?.ok_or(Error::NotFound(format!("finding {id}")))?;
    Ok(Json(findings_json(&s.store, std::slice::from_ref(&f)).await?.remove(0)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceQuery {
    /// Evidence id (from the finding's `evidence` list); default: the latest.
    item: Option<i64>,
    /// `annotated` (default) or `frame`.
    variant: Option<String>,
}

/// One evidence image of a finding as JPEG.
async fn evidence_file(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let id = parse_id(&id)?;
    s.store.finding(id).await?.ok_or(Error::NotFound(format!("finding {id}")))?;
    let all = s.store.evidence(&[id]).await?;
    let e = match q.item {
        Some(item) => all.iter().find(|e| e.id == item).ok_or_else(|| {
            Error::NotFound(format!("evidence {item} of finding {id} (see the finding's evidence)"))
        })?,
        None => all.last().ok_or_else(|| {
            Error::NotFound(format!("evidence of finding {id} (only video findings have images)"))
        })?,
    };
    let rel = match q.variant.as_deref().unwrap_or("annotated") {
        "annotated" => &e.annotated_path,
        "frame" => &e.frame_path,
        other => {
            return Err(Error::InvalidArgument(format!(
                "variant={other:?}: use annotated (boxes drawn) or frame (clean)"
            )));
        }
    };
    // Stored paths are ours, but never leave the evidence folder.
    if rel.contains("..") || rel.starts_with('/') {
        return Err(Error::InvalidArgument(format!("evidence path {rel:?} is not relative")));
    }
    let path = s.evidence_dir.join(rel);
    let bytes = tokio::fs::read(&path).await.map_err(|source| Error::Io {
        context: format!("reading evidence {}", path.display()),
        source,
    })?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
}

async fn acknowledge(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let f =
        s.store.transition(parse_id(&id)?, FindingState::Acknowledged, s.clock.now_ms()).await?;
    Ok(Json(findings_json(&s.store, std::slice::from_ref(&f)).await?.remove(0)))
}

async fn clear(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Error> {
    let f = s.store.transition(parse_id(&id)?, FindingState::Cleared, s.clock.now_ms()).await?;
    Ok(Json(findings_json(&s.store, std::slice::from_ref(&f)).await?.remove(0)))
}

fn device_json(d: &Device) -> Value {
    json!({
        "id": d.id,
        "site_id": d.site,
        "kind": d.kind,
        "name": d.name,
        "online": d.is_online(),
        "last_seen": d.last_seen().map(rfc3339),
        "source": d.source,
        "created_at": rfc3339(d.created_at),
        "telemetry_topic": ingest::topic::device_prefix(d.site.as_str(), &d.id) + "telemetry",
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    site: Option<String>,
    kind: Option<String>,
    online: Option<bool>,
}

async fn list_devices(
    State(s): State<AppState>,
    q: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let items: Vec<Value> = s
        .registry
        .all()
        .iter()
        .filter(|d| q.site.as_ref().is_none_or(|x| d.site.as_str() == x))
        .filter(|d| q.kind.as_ref().is_none_or(|x| &d.kind == x))
        .filter(|d| q.online.is_none_or(|x| d.is_online() == x))
        .map(|d| device_json(d))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn get_device(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let d = s.registry.get(&id).ok_or(Error::NotFound(format!("device {id:?}")))?;
    Ok(Json(device_json(&d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    id: String,
    site_id: String,
    kind: String,
    #[serde(default)]
    name: String,
}

async fn register_device(
    State(s): State<AppState>,
    body: Result<Json<NewDevice>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(n) =
        body.map_err(|e| Error::InvalidArgument(format!("request body: {}", e.body_text())))?;
    let id =
        DeviceId::new(&n.id).map_err(|e| Error::InvalidArgument(format!("id {:?}: {e}", n.id)))?;
    if !s.registry.sites.contains_key(&n.site_id) {
        let known: Vec<&String> = s.registry.sites.keys().collect();
        return Err(Error::InvalidArgument(format!(
            "site_id {:?} is not a configured site; known: {known:?}",
            n.site_id
        )));
    }
    if !s.registry.kinds.contains_key(&n.kind) {
        let known: Vec<&String> = s.registry.kinds.keys().collect();
        return Err(Error::InvalidArgument(format!(
            "kind {:?} is not a configured device kind; known: {known:?}",
            n.kind
        )));
    }
    let secret = registry::new_secret();
    let hash = tokio::task::spawn_blocking({
        let secret = secret.clone();
        move || registry::hash_secret(&secret)
    })
    .await
    .map_err(|e| Error::InvalidArgument(format!("hashing failed: {e}")))?;
    let row = DeviceRow {
        id: id.to_string(),
        site_id: n.site_id.clone(),
        kind: n.kind.clone(),
        name: n.name.clone(),
        secret_hash: hash,
        source: "api".into(),
        created_at: s.clock.now_ms(),
        last_seen: None,
        online: false,
    };
    if s.registry.get(id.as_str()).is_some() || !s.store.upsert_device(&row, false).await? {
        return Err(Error::Conflict(format!("device {:?} already exists", n.id)));
    }
    let d = Device::from_row(row).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let d = s.registry.insert(d);
    let mut body = device_json(&d);
    body["secret"] = json!(secret);
    body["mqtt_username"] = json!(d.id);
    body["status_topic"] = json!(ingest::topic::device_prefix(d.site.as_str(), &d.id) + "status");
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

async fn readings(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ReadingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    if s.registry.get(&id).is_none() {
        return Err(Error::NotFound(format!("device {id:?}")));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(Error::InvalidArgument(format!("limit={limit} must be within 1..=10000")));
    }
    let since = q.since.as_deref().map(|v| parse_time("since", v)).transpose()?;
    let until = q.until.as_deref().map(|v| parse_time("until", v)).transpose()?;
    let items = s.store.readings(&id, since, until, limit).await?;
    // Newest first; the next page is everything before the oldest returned.
    let next =
        (items.len() as i64 == limit).then(|| items.last().map(|r| r.ts.to_string())).flatten();
    let items: Vec<Value> = items
        .iter()
        .map(|r| json!({"ts": rfc3339(r.ts), "ts_ms": r.ts, "received_at": rfc3339(r.received_at), "values": r.values}))
        .collect();
    Ok(Json(json!({ "items": items, "next_until": next })))
}

async fn list_sites(State(s): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = s
        .registry
        .sites
        .values()
        .map(|x| {
            json!({"id": x.id, "name": x.name, "region": x.region, "industry": x.industry,
                   "entity_name": x.entity_name, "uscc": x.uscc})
        })
        .collect();
    Json(json!({ "items": items }))
}

async fn list_models(State(s): State<AppState>) -> Json<Value> {
    let lib = s.cameras.library();
    Json(json!({ "items": lib.report.loaded, "failed": lib.report.failed }))
}
