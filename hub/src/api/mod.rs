//! The HTTP API (axum). [`router`] builds the whole app; tests drive it with `oneshot` and over a
//! real socket.

mod admin;
mod cameras;
mod events;
mod live;
mod openapi;
pub mod records;
mod session;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::cameras::CameraManager;
use crate::store::Evidence;
use axum::{Json, Router};
use common::{Clock, DeviceId, FindingState, Severity, UnixMs, Verdict};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::registry::{self, Device, Registry};
use crate::store::{DeviceRow, Finding, FindingFilter, GivenVerdict, Store};

pub use openapi::document as openapi_document;

use crate::auth::{self, Access, Caller, Role};

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
    /// Which supervised tasks are down (`/healthz`).
    pub supervisor: Arc<crate::supervise::Supervisor>,
    /// Whether the writer's batches get through (`/healthz`).
    pub writer: Arc<crate::pipeline::WriterStatus>,
    /// External mode with Mosquitto's dynamic security: keeps devices' broker accounts in step
    /// with registrations and removals. None otherwise.
    pub provisioner: Option<Arc<dyn ingest::dynsec::Provisioner>>,
    /// The OpenAPI document's bytes, made once (`openapi::serve`).
    pub openapi: Arc<std::sync::OnceLock<bytes::Bytes>>,
    /// Access settings, the login throttle and the routes' rules.
    pub auth: Arc<auth::Auth>,
    /// Where cameras added through the API may point.
    pub camera_networks: Arc<Vec<ipnet::IpNet>>,
    /// Finding events as they are stored (JSON of `outputs::FindingEvent`), for the live
    /// stream.
    pub events: tokio::sync::broadcast::Sender<bytes::Bytes>,
    /// Ends the endless answers (event streams) at shutdown, so that the server's graceful
    /// shutdown does not wait for them.
    pub shutdown: common::Shutdown,
    /// Supervision records and their delivery.
    pub records: Arc<records::RecordsCtx>,
}

pub fn router(state: AppState) -> Router {
    let limit = state.auth.max_body_bytes;
    routes()
        .router
        // One guard for every route: authentication, the route's rule, CSRF, origin.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        // Outside the API: the embedded web UI (static files, no data; the API checks each
        // request the app makes).
        .fallback(|method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
            if crate::ui::wants(&method, &uri) {
                crate::ui::serve(&uri, &headers)
            } else {
                Error::NotFound("no such endpoint; see /api/v1/openapi.json".into()).into_response()
            }
        })
        .with_state(state)
}

/// The routes whose body is a file (uploads, imports), not JSON.
pub fn file_routes() -> Vec<&'static str> {
    routes().files
}

/// Every route with its access rule: (method, path, rule), as the router serves them.
pub fn route_table() -> Vec<(&'static str, &'static str, Access)> {
    routes().table
}

use Role::{Department as Dept, DutyOperator as Duty, Integrator as Integ};

/// Findings, evidence and their live stream: the duty room and departments.
const FINDING_READERS: Access = Access::Roles(&[Duty, Dept]);
/// Acting on findings: the duty room.
const OPERATORS: Access = Access::Roles(&[Duty]);
/// Cameras, devices, readings, sites: everyone within their scope.
const VIEWERS: Access = Access::Roles(&[Duty, Dept, Integ]);
/// Registering devices, adding cameras: integrators (of their sites).
const INTEGRATORS: Access = Access::Roles(&[Integ]);
/// Acting on records as the department holding them; subscriptions.
const DEPARTMENTS: Access = Access::Roles(&[Dept]);
/// Departments, users, tokens, the audit log, reloading the configuration.
const ADMINS: Access = Access::Roles(&[]);

/// Every route, with its access rule: the router, the guard's table, the OpenAPI document and
/// the route × role test all come from here, so a route cannot exist without a rule.
fn routes() -> openapi::Routes {
    openapi::Routes::default()
        .get("/healthz", Access::Public, healthz)
        .get("/metrics", Access::Public, metrics)
        .get("/api/v1/openapi.json", Access::Authenticated, openapi::serve)
        .post("/api/v1/session", Access::Public, session::login)
        .get("/api/v1/session", Access::Authenticated, session::whoami)
        .delete("/api/v1/session", Access::Authenticated, session::logout)
        .post("/api/v1/session/password", Access::Authenticated, session::change_password)
        .get("/api/v1/findings", FINDING_READERS, list_findings)
        .get("/api/v1/findings/stream", FINDING_READERS, events::findings)
        .get("/api/v1/findings/{id}", FINDING_READERS, get_finding)
        .post("/api/v1/findings/{id}/acknowledge", OPERATORS, acknowledge)
        .post("/api/v1/findings/{id}/clear", OPERATORS, clear)
        .post("/api/v1/findings/{id}/verify", OPERATORS, verify)
        .post("/api/v1/findings/{id}/dismiss", OPERATORS, dismiss)
        .get("/api/v1/findings/{id}/evidence", FINDING_READERS, evidence_file)
        .get("/api/v1/cameras", VIEWERS, cameras::list)
        .post("/api/v1/cameras", INTEGRATORS, cameras::create)
        .get("/api/v1/cameras/{id}", VIEWERS, cameras::get_one)
        .patch("/api/v1/cameras/{id}", INTEGRATORS, cameras::update)
        .delete("/api/v1/cameras/{id}", INTEGRATORS, cameras::delete)
        .get("/api/v1/cameras/{id}/snapshot", VIEWERS, cameras::snapshot)
        .get("/api/v1/cameras/{id}/live", VIEWERS, live::live)
        .post("/api/v1/config/reload", ADMINS, cameras::reload)
        .get("/api/v1/devices", VIEWERS, list_devices)
        .post("/api/v1/devices", INTEGRATORS, register_device)
        .get("/api/v1/devices/{id}", VIEWERS, get_device)
        .delete("/api/v1/devices/{id}", INTEGRATORS, remove_device)
        .get("/api/v1/devices/{id}/readings", VIEWERS, readings)
        .get("/api/v1/sites", VIEWERS, list_sites)
        .get("/api/v1/models", VIEWERS, list_models)
        .get("/api/v1/departments", ADMINS, admin::list_departments)
        .post("/api/v1/departments", ADMINS, admin::create_department)
        .get("/api/v1/users", ADMINS, admin::list_users)
        .post("/api/v1/users", ADMINS, admin::create_user)
        .patch("/api/v1/users/{id}", ADMINS, admin::update_user)
        .get("/api/v1/tokens", ADMINS, admin::list_tokens)
        .post("/api/v1/tokens", ADMINS, admin::create_token)
        .delete("/api/v1/tokens/{id}", ADMINS, admin::revoke_token)
        .get("/api/v1/audit", ADMINS, admin::audit)
        .get("/api/v1/catalogue", FINDING_READERS, records::catalogue)
        .post_file("/api/v1/catalogue", ADMINS, records::import_catalogue)
        .get("/api/v1/entities", FINDING_READERS, records::entities)
        .post_file("/api/v1/entities", ADMINS, records::import_entities)
        .post("/api/v1/findings/{id}/record", OPERATORS, records::from_finding)
        .get("/api/v1/records", FINDING_READERS, records::list_records)
        .get("/api/v1/records/events", FINDING_READERS, records::events)
        .get("/api/v1/records/export", FINDING_READERS, records::export)
        .get("/api/v1/records/{id}", FINDING_READERS, records::get_record)
        .post("/api/v1/records/{id}/distribute", OPERATORS, records::act)
        .post("/api/v1/records/{id}/claim", DEPARTMENTS, records::act)
        .post("/api/v1/records/{id}/assign", DEPARTMENTS, records::act)
        .post("/api/v1/records/{id}/result", DEPARTMENTS, records::act)
        .post("/api/v1/records/{id}/feedback", DEPARTMENTS, records::act)
        .post("/api/v1/records/{id}/close", FINDING_READERS, records::act)
        .post("/api/v1/records/{id}/reopen", FINDING_READERS, records::act)
        .post("/api/v1/records/{id}/return", DEPARTMENTS, records::act)
        .post_file("/api/v1/records/{id}/attachments", FINDING_READERS, records::upload)
        .get("/api/v1/records/{id}/attachments/{aid}", FINDING_READERS, records::download)
        .get("/api/v1/notices", FINDING_READERS, records::notices)
        .get("/api/v1/subscriptions", DEPARTMENTS, subscriptions::list)
        .post("/api/v1/subscriptions", DEPARTMENTS, subscriptions::create)
        .get("/api/v1/subscriptions/{id}", DEPARTMENTS, subscriptions::get_one)
        .patch("/api/v1/subscriptions/{id}", DEPARTMENTS, subscriptions::update)
        .delete("/api/v1/subscriptions/{id}", DEPARTMENTS, subscriptions::delete)
        .post("/api/v1/subscriptions/{id}/rotate", DEPARTMENTS, subscriptions::rotate)
        .get("/api/v1/subscriptions/{id}/deliveries", DEPARTMENTS, subscriptions::deliveries)
        .post("/api/v1/subscriptions/{id}/replay", DEPARTMENTS, subscriptions::replay)
}

/// A JSON body's rejection as the API's error: too large 413, not JSON 415, else 400.
pub(crate) fn body_error(e: axum::extract::rejection::JsonRejection) -> Error {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            Error::TooLarge(format!("request body: {} (see http.max_body_bytes)", e.body_text()))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(format!(
            "request body: {} (send Content-Type: application/json)",
            e.body_text()
        )),
        _ => Error::InvalidArgument(format!("request body: {}", e.body_text())),
    }
}

/// RFC 3339 (UTC, milliseconds) for API output.
pub fn rfc3339(ms: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Accepts unix milliseconds or RFC 3339.
/// What `parse_time` accepts, as the OpenAPI document declares it: unix milliseconds, or RFC
/// 3339 with `T`, seconds, optional fraction and `Z` or an offset.
pub(crate) const TIME_PATTERN: &str = "^(-?[0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\
    T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$";

/// True when `s` has the shape of [`TIME_PATTERN`]'s RFC 3339 branch (chrono alone also takes
/// `t`, `z` and a space, which the document does not promise).
fn rfc3339_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest.bytes().enumerate().all(|(i, c)| i == 0 || i == 3 || c.is_ascii_digit()))
}

fn parse_time(name: &str, s: &str) -> Result<UnixMs, Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{name}={s:?} is neither unix milliseconds nor RFC 3339 (2026-01-31T08:00:00Z)"
        ))
    };
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    if !rfc3339_shape(s) {
        return Err(bad());
    }
    // Computed from the fields, not by chrono: every string the document's pattern allows is
    // taken (a 31st of a 30-day month counts on into the next day, as `timegm` does).
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap_or(0);
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let (h, mi, sec) = (n(11..13), n(14..16), n(17..19));
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let k = frac.bytes().take_while(u8::is_ascii_digit).count();
        ms = format!("{:0<3}", &frac[..k.min(3)]).parse::<i64>().unwrap_or(0);
        rest = &frac[k..];
    }
    let offset_min = match rest.as_bytes().first() {
        Some(b'+') | Some(b'-') => {
            let part = |r: std::ops::Range<usize>| rest[r].parse::<i64>().unwrap_or(0);
            let v = part(1..3) * 60 + part(4..6);
            if rest.starts_with('-') { -v } else { v }
        }
        _ => 0,
    };
    if !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 59 || offset_min.abs() > 23 * 60 + 59 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); `d` may run
/// past the month's end.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn list<T: std::str::FromStr<Err = String>>(
    name: &str,
    s: &Option<String>,
) -> Result<Vec<T>, Error> {
    let Some(s) = s else { return Ok(Vec::new()) };
    // Exactly `a,b,c` (the document's pattern): no empty or padded items.
    s.split(',')
        .map(|p| p.parse::<T>().map_err(|e| Error::InvalidArgument(format!("{name}: {e}"))))
        .collect()
}

fn evidence_json(e: &Evidence) -> Value {
    let url = format!("/api/v1/findings/{}/evidence?item={}", e.finding_id, e.id);
    // Evidence whose images could not be written has no URLs, and says why.
    let have = e.missing.is_none();
    json!({
        "id": e.id,
        "captured_at": rfc3339(e.captured_at),
        "annotated_url": have.then(|| url.clone()),
        "frame_url": have.then(|| format!("{url}&variant=frame")),
        "detections": e.detections,
        "missing": e.missing,
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
        "updated_at": rfc3339(f.updated_at),
        "verdict": f.verdict,
        "verdict_reason": f.verdict_reason,
        "verdict_note": f.verdict_note,
        "verdict_by": f.verdict_by,
        "verdict_at": f.verdict_at.map(rfc3339),
        "record_id": f.record_id,
    })
}

/// How long `/healthz` waits for the database before calling it unavailable; and how long a
/// write may wait before it counts as stalled.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_millis(700);
const HEALTH_WRITE_STALL: Duration = Duration::from_secs(2);

/// 200 when the database answers and takes writes, the MQTT source is connected and every
/// supervised task runs; 503 naming what is not, within a second whatever the database does.
async fn healthz(State(s): State<AppState>) -> Response {
    let mqtt =
        if s.mqtt_ready.load(std::sync::atomic::Ordering::Relaxed) { "ok" } else { "connecting" };
    let database = match tokio::time::timeout(HEALTH_DB_TIMEOUT, s.store.ping()).await {
        Err(_) => format!("no answer within {} ms", HEALTH_DB_TIMEOUT.as_millis()),
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => s.writer.problem(HEALTH_WRITE_STALL).unwrap_or_else(|| "ok".into()),
    };
    let down = s.supervisor.down();
    let ok = database == "ok" && mqtt == "ok" && down.is_empty();
    let tasks: serde_json::Map<String, serde_json::Value> =
        down.into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": database,
        "mqtt": mqtt,
        "tasks_down": tasks,
    });
    if ok {
        Json(body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

/// Page sizes of the list endpoints (the document states them as the parameters' ranges).
pub(crate) const FINDINGS_LIMIT_MAX: i64 = 1000;
pub(crate) const READINGS_LIMIT_MAX: i64 = 10_000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FindingQuery {
    /// Site id.
    site: Option<String>,
    /// Device id.
    device: Option<String>,
    /// Camera id.
    camera: Option<String>,
    /// Rule id.
    rule: Option<String>,
    #[schemars(schema_with = "openapi::states_schema")]
    state: Option<String>,
    #[schemars(schema_with = "openapi::severities_schema")]
    severity: Option<String>,
    #[schemars(schema_with = "openapi::verdicts_schema")]
    verdict: Option<String>,
    /// `last_seen` at or after.
    #[schemars(schema_with = "openapi::time_schema")]
    since: Option<String>,
    /// `last_seen` before.
    #[schemars(schema_with = "openapi::time_schema")]
    until: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<i64>,
    /// Page size, default 100.
    #[schemars(range(min = 1, max = FINDINGS_LIMIT_MAX))]
    limit: Option<i64>,
}

async fn list_findings(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<FindingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=FINDINGS_LIMIT_MAX).contains(&limit) {
        return Err(Error::InvalidArgument(format!(
            "limit={limit} must be within 1..={FINDINGS_LIMIT_MAX}"
        )));
    }
    let before_id = q.cursor;
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
        verdicts: list::<Verdict>("verdict", &q.verdict)?,
        updated_since: None,
        limit: limit + 1,
    };
    let mut items = s.store.findings(&filter, &caller.scope()).await?;
    let next = (items.len() as i64 > limit).then(|| {
        items.truncate(limit as usize);
        items.last().map(|f| f.id.to_string())
    });
    Ok(Json(json!({
        "items": findings_json(&s.store, &items).await?,
        "next": next.flatten(),
    })))
}

/// A finding id from the path (an integer, as the document says).
fn finding_id(p: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Result<i64, Error> {
    p.map(|Path(id)| id)
        .map_err(|e| Error::InvalidArgument(format!("finding id: {} (an integer)", e.body_text())))
}

async fn get_finding(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    let id = finding_id(id)?;
    let f = s
        .store
        .finding(id, &caller.scope())
        .await?
        .ok_or(Error::NotFound(format!("finding {id}")))?;
    Ok(Json(findings_json(&s.store, std::slice::from_ref(&f)).await?.remove(0)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EvidenceQuery {
    /// Evidence id (from the finding's `evidence` list); default: the latest.
    item: Option<i64>,
    /// `annotated` (default, boxes drawn) or `frame` (clean).
    variant: Option<EvidenceVariant>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum EvidenceVariant {
    #[default]
    Annotated,
    Frame,
}

/// One evidence image of a finding as JPEG.
async fn evidence_file(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<EvidenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let id = finding_id(id)?;
    s.store.finding(id, &caller.scope()).await?.ok_or(Error::NotFound(format!("finding {id}")))?;
    let all = s.store.evidence(&[id]).await?;
    let e = match q.item {
        Some(item) => all.iter().find(|e| e.id == item).ok_or_else(|| {
            Error::NotFound(format!("evidence {item} of finding {id} (see the finding's evidence)"))
        })?,
        None => all.last().ok_or_else(|| {
            Error::NotFound(format!("evidence of finding {id} (only video findings have images)"))
        })?,
    };
    if let Some(why) = &e.missing {
        return Err(Error::NotFound(format!(
            "the images of evidence {} of finding {id} (they could not be written: {why})",
            e.id
        )));
    }
    let rel = match q.variant.unwrap_or_default() {
        EvidenceVariant::Annotated => &e.annotated_path,
        EvidenceVariant::Frame => &e.frame_path,
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
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    transition(&s, &caller, finding_id(id)?, FindingState::Acknowledged).await
}

async fn clear(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    transition(&s, &caller, finding_id(id)?, FindingState::Cleared).await
}

async fn transition(
    s: &AppState,
    caller: &Caller,
    id: i64,
    to: FindingState,
) -> Result<Json<Value>, Error> {
    let action = match to {
        FindingState::Acknowledged => "finding.acknowledge",
        _ => "finding.clear",
    };
    let audit = caller.audit(action, format!("finding:{id}"));
    let f = s.store.transition(id, to, s.clock.now_ms(), &caller.scope(), &audit).await?;
    changed(s, &f, to.as_str()).await
}

/// A verdict's request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    /// What the operator saw (at most 2,000 characters).
    note: Option<String>,
}

/// A dismissal's request body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DismissBody {
    reason: common::DismissReason,
    /// Free text (required for `other`; at most 2,000 characters).
    note: Option<String>,
}

fn verdict_note(note: Option<String>) -> Result<Option<String>, Error> {
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    match &note {
        Some(n) if n.chars().count() > crate::store::VERDICT_NOTE_MAX => {
            Err(Error::InvalidArgument(format!(
                "note: {} characters; at most {} (shorten it)",
                n.chars().count(),
                crate::store::VERDICT_NOTE_MAX
            )))
        }
        _ => Ok(note),
    }
}

async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<VerifyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let id = finding_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    let verdict = GivenVerdict::Verified { note: verdict_note(b.note)? };
    give_verdict(&s, &caller, id, verdict).await
}

async fn dismiss(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<DismissBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let id = finding_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    let note = verdict_note(b.note)?;
    if b.reason == common::DismissReason::Other && note.is_none() {
        return Err(Error::InvalidArgument(
            "note: required when reason is \"other\" (say why the finding is false)".into(),
        ));
    }
    give_verdict(&s, &caller, id, GivenVerdict::Dismissed { reason: b.reason, note }).await
}

/// Stores a verdict with its audit row and announces it.
async fn give_verdict(
    s: &AppState,
    caller: &Caller,
    id: i64,
    verdict: GivenVerdict,
) -> Result<Json<Value>, Error> {
    let (action, change) = match verdict {
        GivenVerdict::Verified { .. } => ("finding.verify", "verified"),
        GivenVerdict::Dismissed { .. } => ("finding.dismiss", "dismissed"),
    };
    let audit = caller.audit(action, format!("finding:{id}"));
    let scope = caller.scope();
    // A finding the policy makes a record of at once: made in the verdict's transaction.
    let mut plan = None;
    if let GivenVerdict::Verified { .. } = verdict
        && let Some(f) = s.store.finding(id, &scope).await?
        && f.verdict == "unverified"
        && f.record_id.is_none()
        && f.item_code.is_some()
        && s.records.policy.auto(&f)
    {
        plan = Some(s.store.plan_record(&f, None, &s.records.policy).await?);
    }
    let f =
        s.store.give_verdict(id, &verdict, s.clock.now_ms(), &scope, &audit, plan.as_ref()).await?;
    if plan.is_some() {
        s.records.waker.wake();
    }
    changed(s, &f, change).await
}

/// Announces a person's change of a finding to the event streams (the duty room's other
/// screens) and answers with the finding.
fn changed_event(f: &Finding, change: &str) -> bytes::Bytes {
    bytes::Bytes::from(json!({"id": f.id, "change": change, "site_id": f.site_id}).to_string())
}

async fn changed(s: &AppState, f: &Finding, change: &str) -> Result<Json<Value>, Error> {
    // No subscriber is not an error.
    let _ = s.events.send(changed_event(f, change));
    Ok(Json(findings_json(&s.store, std::slice::from_ref(f)).await?.remove(0)))
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    /// Site id.
    site: Option<String>,
    /// Device kind.
    kind: Option<String>,
    /// Only devices online (true) or offline (false).
    online: Option<bool>,
}

async fn list_devices(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let items: Vec<Value> = s
        .registry
        .devices_in(&caller.scope())
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
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let d = s
        .registry
        .device_in(&id, &caller.scope())
        .ok_or(Error::NotFound(format!("device {id:?}")))?;
    Ok(Json(device_json(&d)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    /// The device id, also its MQTT username.
    #[schemars(with = "DeviceId")]
    id: String,
    /// A configured site (the document lists them).
    site_id: String,
    /// A configured device kind (the document lists them).
    kind: String,
    #[serde(default)]
    name: String,
}

async fn register_device(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewDevice>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(n) = body.map_err(body_error)?;
    let id =
        DeviceId::new(&n.id).map_err(|e| Error::InvalidArgument(format!("id {:?}: {e}", n.id)))?;
    let scope = caller.scope();
    if !s.registry.sites.contains_key(&n.site_id) || !s.registry.site_in_scope(&n.site_id, &scope) {
        let known: Vec<&str> = s.registry.sites_in(&scope).iter().map(|x| x.id.as_str()).collect();
        return Err(Error::InvalidArgument(format!(
            "site_id {:?} is not a site you may manage; yours: {known:?}",
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
    let mut audit = caller.audit("device.register", format!("device:{id}"));
    audit.after = Some(json!({"site_id": row.site_id, "kind": row.kind, "name": row.name}));
    if s.registry.get(id.as_str()).is_some()
        || s.store
            .apply_if(&[Store::save_device(&row, false)], &audit, row.created_at)
            .await?
            .is_none()
    {
        return Err(Error::Conflict(format!("device {:?} already exists", n.id)));
    }
    // The broker account is made here, the only place the plaintext secret exists. When the
    // broker cannot take it, the registration is undone: a device that cannot log in would
    // only look registered.
    if let Some(p) = &s.provisioner
        && let Err(e) = p.provision(id.as_str(), &n.site_id, &secret).await
    {
        let mut undo = caller.audit("device.remove", format!("device:{id}"));
        undo.before = Some(json!({"reason": "the broker refused the account"}));
        if let Err(undo) =
            s.store.apply(&[Store::remove_device(id.as_str())], &undo, s.clock.now_ms()).await
        {
            tracing::error!(device = %id, error = %undo, "undoing a registration the broker refused");
        }
        return Err(e.into());
    }
    let d = Device::from_row(row).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let d = s.registry.insert(d);
    let mut body = device_json(&d);
    body["secret"] = json!(secret);
    body["mqtt_username"] = json!(d.id);
    body["status_topic"] = json!(ingest::topic::device_prefix(d.site.as_str(), &d.id) + "status");
    Ok((StatusCode::CREATED, Json(body)))
}

/// Removes a device registered through the API: its broker account first (external mode with
/// dynamic security; the broker disconnects it), then its row and registry entry. Its readings
/// and findings stay. Devices of the configuration file come back at every start: 409.
async fn remove_device(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let d = s
        .registry
        .device_in(&id, &caller.scope())
        .ok_or(Error::NotFound(format!("device {id:?}")))?;
    if d.source == "config" {
        return Err(Error::Conflict(format!(
            "device {id:?} is defined in the configuration file; remove it there and restart"
        )));
    }
    if let Some(p) = &s.provisioner {
        p.remove(&d.id, d.site.as_str()).await?;
    }
    let mut audit = caller.audit("device.remove", format!("device:{}", d.id));
    audit.before = Some(json!({"site_id": d.site, "kind": d.kind, "name": d.name}));
    s.store.apply(&[Store::remove_device(&d.id)], &audit, s.clock.now_ms()).await?;
    s.registry.remove(&d.id);
    tracing::info!(device = %d.id, site = %d.site, "device removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadingQuery {
    /// `ts` at or after.
    #[schemars(schema_with = "openapi::time_schema")]
    since: Option<String>,
    /// `ts` before.
    #[schemars(schema_with = "openapi::time_schema")]
    until: Option<String>,
    /// The `next` of the previous page (opaque to clients; see `store::ReadingsCursor`).
    #[schemars(regex(pattern = r"^-?[0-9]{1,18}_[0-9]{1,18}$"))]
    cursor: Option<String>,
    /// Page size, default 100.
    #[schemars(range(min = 1, max = READINGS_LIMIT_MAX))]
    limit: Option<i64>,
}

async fn readings(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ReadingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let scope = caller.scope();
    if s.registry.device_in(&id, &scope).is_none() {
        return Err(Error::NotFound(format!("device {id:?}")));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=READINGS_LIMIT_MAX).contains(&limit) {
        return Err(Error::InvalidArgument(format!(
            "limit={limit} must be within 1..={READINGS_LIMIT_MAX}"
        )));
    }
    let since = q.since.as_deref().map(|v| parse_time("since", v)).transpose()?;
    let until = q.until.as_deref().map(|v| parse_time("until", v)).transpose()?;
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<crate::store::ReadingsCursor>().map_err(|()| {
            Error::InvalidArgument(format!("cursor={c:?} is not a cursor returned as `next`"))
        })?),
    };
    // Newest first; readings that share a timestamp are never split or lost between pages.
    let (items, next) = s.store.readings_page(&id, since, until, after, limit, &scope).await?;
    let items: Vec<Value> = items
        .iter()
        .map(|r| json!({"ts": rfc3339(r.ts), "ts_ms": r.ts, "received_at": rfc3339(r.received_at), "values": r.values}))
        .collect();
    Ok(Json(json!({ "items": items, "next": next.map(|c| c.to_string()) })))
}

async fn list_sites(State(s): State<AppState>, caller: Caller) -> Json<Value> {
    let items: Vec<Value> = s
        .registry
        .sites_in(&caller.scope())
        .into_iter()
        .map(|x| {
            json!({"id": x.id, "name": x.name, "region": x.region, "industry": x.industry,
                   "entity_name": x.entity_name, "uscc": x.uscc, "integrator": x.integrator})
        })
        .collect();
    Json(json!({ "items": items }))
}

async fn list_models(State(s): State<AppState>) -> Json<Value> {
    let lib = s.cameras.library();
    Json(json!({ "items": lib.report.loaded, "failed": lib.report.failed }))
}

#[cfg(test)]
mod time_tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_the_document_says() {
        for t in [
            "2026-01-31T08:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "2024-02-29T12:30:00.123456+08:00",
            "0001-01-01T00:00:00-05:30",
            "9999-12-31T23:59:59.999Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis();
            assert_eq!(parse_time("since", t).unwrap(), want, "{t}");
        }
        assert_eq!(parse_time("since", "-5").unwrap(), -5);
        // Past the month's end counts on, as the pattern allows it.
        assert_eq!(
            parse_time("since", "2026-11-31T00:00:00Z").unwrap(),
            parse_time("since", "2026-12-01T00:00:00Z").unwrap()
        );
        for bad in
            ["", "+5", "2026-01-31t08:00:00z", "2026-01-31 08:00:00Z", "2026-13-01T00:00:00Z", "x"]
        {
            assert!(parse_time("since", bad).is_err(), "{bad:?}");
        }
    }
}
