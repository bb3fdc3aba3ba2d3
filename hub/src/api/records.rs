//! Supervision records over HTTP (docs/records.md): the catalogue and entities, making a
//! record of a verified finding, the lifecycle's actions, attachments, the pull cursor, the
//! event feed, exports and notices.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::{FeedbackKind, RecordAction, RecordState};
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::{AppState, body_error, list, parse_time, rfc3339};
use crate::auth::{Caller, Role};
use crate::error::Error;
use crate::records::import::{self, Format, Problem};
use crate::records::lifecycle::Actor;
use crate::records::{self, AttachmentRow, RecordRow};
use crate::store::records::{Change, Policy, RecordFilter};

/// What the records routes share.
pub struct RecordsCtx {
    pub policy: Policy,
    pub waker: crate::delivery::Waker,
    pub networks: Arc<Vec<IpNet>>,
    /// `data_dir/attachments`.
    pub attachments_dir: PathBuf,
    pub attachment_max_bytes: usize,
    pub rotation_overlap_ms: i64,
    /// Whether departments may subscribe over MQTT (the embedded gateway serves them).
    pub mqtt_feeds: bool,
}

/// Longest note on a step, in characters.
pub const NOTE_MAX: usize = 2000;
/// Longest result or outcome text, in characters.
pub const TEXT_MAX: usize = 4000;
/// Most records per page.
pub const LIMIT_MAX: i64 = 1000;

/// Attachment types accepted.
pub const ATTACHMENT_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "application/pdf"];

pub(super) fn actor(c: &Caller) -> Actor {
    Actor {
        department: c.department.as_ref().filter(|_| c.has(Role::Department)).map(|d| d.id.clone()),
        duty: c.has(Role::DutyOperator) || c.has(Role::Admin),
    }
}

fn record_id(id: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Result<i64, Error> {
    id.map(|Path(i)| i).map_err(|e| Error::InvalidArgument(format!("record id: {}", e.body_text())))
}

fn text(
    name: &str,
    v: Option<String>,
    max: usize,
    required: bool,
) -> Result<Option<String>, Error> {
    let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    match &v {
        None if required => Err(Error::InvalidArgument(format!("{name}: required"))),
        Some(s) if s.chars().count() > max => Err(Error::InvalidArgument(format!(
            "{name}: {} characters, at most {max}",
            s.chars().count()
        ))),
        _ => Ok(v),
    }
}

/// An import's refusal: 400 with every problem.
fn import_refused(what: &str, problems: Vec<Problem>) -> Response {
    let n = problems.len();
    let body = json!({
        "error": {"status": 400, "message": format!(
            "{what}: {n} problem{} found, nothing imported (each is listed in problems with its line and field)",
            if n == 1 { "" } else { "s" })},
        "problems": problems,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn format_of(headers: &HeaderMap) -> Result<Format, Error> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    Format::guess(ct).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: send the file as text/csv or application/json"
        ))
    })
}

fn utf8(body: &Bytes) -> Result<&str, Error> {
    std::str::from_utf8(body)
        .map_err(|e| Error::InvalidArgument(format!("the file is not UTF-8: {e}")))
}

// ----- catalogue and entities -----

pub(super) async fn catalogue(State(s): State<AppState>) -> Result<Json<Value>, Error> {
    let items = s.store.catalogue().await?;
    Ok(Json(json!({"items": items})))
}

pub(super) async fn import_catalogue(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let format = format_of(&headers)?;
    let departments = s.store.departments().await?.into_iter().map(|d| d.id).collect();
    let items = match import::catalogue(utf8(&body)?, format, &departments) {
        Ok(i) => i,
        Err(p) => return Ok(import_refused("catalogue", p)),
    };
    let mut audit = caller.audit("catalogue.import", "catalogue".into());
    audit.after =
        Some(json!({"items": items.iter().map(|i| i.code.to_string()).collect::<Vec<_>>()}));
    s.store.import_catalogue(&items, &audit, s.clock.now_ms()).await?;
    Ok(Json(json!({"imported": items.len()})).into_response())
}

pub(super) async fn entities(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Error> {
    let list = s.store.entities(&caller.scope()).await?;
    Ok(Json(json!({"items": list})))
}

pub(super) async fn import_entities(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let format = format_of(&headers)?;
    let list = match import::entities(utf8(&body)?, format) {
        Ok(l) => l,
        Err(p) => return Ok(import_refused("entities", p)),
    };
    let mut audit = caller.audit("entity.import", "entities".into());
    audit.after =
        Some(json!({"entities": list.iter().map(|e| e.uscc.to_string()).collect::<Vec<_>>()}));
    s.store.import_entities(&list, &audit, s.clock.now_ms()).await?;
    Ok(Json(json!({"imported": list.len()})).into_response())
}

// ----- making records -----

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordFromFinding {
    /// The supervision item (14 digits); the finding's by default.
    #[schemars(regex(pattern = r"^[0-9]{14}$"))]
    item_code: Option<String>,
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

/// `POST /api/v1/findings/{id}/record`: 201 with a new record, 200 with the open record of
/// the finding's key it was attached to (or already belongs to).
pub(super) async fn from_finding(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<RecordFromFinding>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Error> {
    let id = super::finding_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    let note = text("note", b.note, NOTE_MAX, false)?;
    let scope = caller.scope();
    let f = s.store.finding(id, &scope).await?.ok_or(Error::NotFound(format!("finding {id}")))?;
    if f.verdict != "verified" {
        return Err(Error::Conflict(format!(
            "finding {id} is {}; only a verified finding becomes a record (POST /api/v1/findings/{id}/verify)",
            f.verdict
        )));
    }
    let now = s.clock.now_ms();
    if let Some(rid) = f.record_id
        && let Some(r) = s.store.record(rid, &scope).await?
    {
        return Ok((StatusCode::OK, Json(records::record_json(&r, now))).into_response());
    }
    let plan = s.store.plan_record(&f, b.item_code.as_deref(), &s.records.policy).await?;
    let audit = caller.audit("record.create", format!("finding:{id}"));
    let (r, created) = s.store.record_finding(&f, &plan, note.as_deref(), &audit, now).await?;
    s.records.waker.wake();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(records::record_json(&r, now))).into_response())
}

// ----- reading -----

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordQuery {
    /// Comma list of states.
    #[schemars(schema_with = "super::openapi::record_states_schema")]
    state: Option<String>,
    /// Only records past a deadline: `claim_overdue`, `close_overdue`, or `escalated`.
    #[schemars(regex(pattern = r"^(claim_overdue|close_overdue|escalated)$"))]
    deadline: Option<String>,
    #[schemars(regex(pattern = r"^[0-9]{14}$"))]
    item_code: Option<String>,
    #[schemars(length(min = 1, max = 64))]
    site: Option<String>,
    /// The claiming department.
    #[schemars(length(min = 1, max = 64))]
    department: Option<String>,
    /// The pull: records changed after this cursor, in commit order. Not with `cursor`.
    #[schemars(regex(pattern = r"^[0-9]{1,18}$"))]
    after: Option<String>,
    /// Newest first: the `next` of the previous page. Not with `after`.
    #[schemars(regex(pattern = r"^[0-9]{1,18}$"))]
    cursor: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
}

fn cursor_param(name: &str, v: &Option<String>) -> Result<Option<i64>, Error> {
    v.as_ref()
        .map(|c| {
            c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{name}={c:?} is not a cursor (the `next` of a page)"
                ))
            })
        })
        .transpose()
}

fn limit_param(limit: Option<i64>) -> Result<i64, Error> {
    let l = limit.unwrap_or(100);
    if !(1..=LIMIT_MAX).contains(&l) {
        return Err(Error::InvalidArgument(format!("limit={l} must be within 1..={LIMIT_MAX}")));
    }
    Ok(l)
}

pub(super) async fn list_records(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let after = cursor_param("after", &q.after)?;
    let before = cursor_param("cursor", &q.cursor)?;
    if after.is_some() && before.is_some() {
        return Err(Error::InvalidArgument(
            "after (the pull, oldest change first) and cursor (newest first) exclude each other"
                .into(),
        ));
    }
    let limit = limit_param(q.limit)?;
    let f = RecordFilter {
        states: list::<RecordState>("state", &q.state)?,
        site: q.site,
        item_code: q.item_code,
        department: q.department,
        deadline: q.deadline,
        before,
        after,
        limit,
        now: s.clock.now_ms(),
    };
    let items = s.store.records(&f, &caller.scope()).await?;
    let now = s.clock.now_ms();
    let last = items.last().map(|r| r.seq);
    let next = match after {
        // The pull always gets a cursor to come back with.
        Some(a) => Some(records::cursor(last.unwrap_or(a))),
        None => last.filter(|_| items.len() as i64 == limit).map(records::cursor),
    };
    let items: Vec<Value> = items.iter().map(|r| records::record_json(r, now)).collect();
    Ok(Json(json!({"items": items, "next": next})))
}

pub(super) async fn get_record(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    let id = record_id(id)?;
    let r = s
        .store
        .record(id, &caller.scope())
        .await?
        .ok_or(Error::NotFound(format!("record {id}")))?;
    Ok(Json(detail_json(&s, &r).await?))
}

async fn detail_json(s: &AppState, r: &RecordRow) -> Result<Value, Error> {
    let timeline = s.store.timeline(r.id).await?;
    let attachments = s.store.attachments(r.id).await?;
    let mut v = records::record_json(r, s.clock.now_ms());
    v["timeline"] = timeline
        .iter()
        .map(|t| {
            let mut j = records::transition_json(t);
            j["attachments"] = attachments
                .iter()
                .filter(|a| a.transition_id == Some(t.id))
                .map(records::attachment_json)
                .collect();
            j
        })
        .collect();
    v["attachments"] = attachments.iter().map(records::attachment_json).collect();
    v["allowed"] = records::lifecycle::allowed(r.state).iter().map(|a| a.as_str()).collect();
    Ok(v)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventQuery {
    /// Events after this cursor (0: from the start).
    #[schemars(regex(pattern = r"^[0-9]{1,18}$"))]
    after: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
}

/// `GET /api/v1/records/events?after=`: the CloudEvents in commit order.
pub(super) async fn events(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let after = cursor_param("after", &q.after)?.unwrap_or(0);
    let limit = limit_param(q.limit)?;
    let rows = s.store.events_after(after, limit, &caller.scope()).await?;
    let next = rows.last().map_or(after, |r| r.0);
    let items: Vec<Value> = rows.iter().filter_map(|(_, e)| serde_json::from_str(e).ok()).collect();
    Ok(Json(json!({"items": items, "next": records::cursor(next)})))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    /// `csv` (the records' fields) or `exchange` (with the control columns).
    #[schemars(regex(pattern = r"^(csv|exchange)$"))]
    format: Option<String>,
    #[schemars(regex(pattern = r"^[0-9]{1,18}$"))]
    after: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
}

const EXPORT_COLUMNS: &[&str] = &[
    "number",
    "id",
    "state",
    "item_code",
    "item_name",
    "severity",
    "industry",
    "region",
    "site_id",
    "entity_name",
    "entity_uscc",
    "summary",
    "first_seen",
    "last_seen",
    "department_id",
    "assignee",
    "claim_due_at",
    "close_due_at",
    "deadline",
    "escalation_level",
    "created_at",
    "closed_at",
    "cursor",
];
const CONTROL_COLUMNS: &[&str] =
    &["ctl_id", "ctl_time", "ctl_source", "ctl_batch", "ctl_operation"];

/// `GET /api/v1/records/export`: records changed after the cursor as CSV; the next cursor in
/// `x-next-cursor`.
pub(super) async fn export(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let exchange = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("exchange") => true,
        Some(f) => return Err(Error::InvalidArgument(format!("format={f:?}: csv or exchange"))),
    };
    let after = cursor_param("after", &q.after)?.unwrap_or(0);
    let limit = limit_param(q.limit)?;
    let f = RecordFilter {
        after: Some(after),
        limit,
        now: s.clock.now_ms(),
        ..RecordFilter::default()
    };
    let rows = s.store.records(&f, &caller.scope()).await?;
    let now = s.clock.now_ms();
    let first = s.store.first_seqs(&rows.iter().map(|r| r.id).collect::<Vec<_>>()).await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let batch = format!(
        "{}{:012}",
        chrono::DateTime::from_timestamp_millis(now)
            .map(|t| t.format("%Y%m%d").to_string())
            .unwrap_or_default(),
        next
    );
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = EXPORT_COLUMNS.to_vec();
    if exchange {
        header.extend(CONTROL_COLUMNS);
    }
    let csv_err =
        |e: csv::Error| Error::Io { context: "writing the export".into(), source: e.into() };
    w.write_record(&header).map_err(csv_err)?;
    for r in &rows {
        let j = records::record_json(r, now);
        let mut row: Vec<String> = EXPORT_COLUMNS
            .iter()
            .map(|c| match &j[*c] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect();
        if exchange {
            let created_here =
                first.iter().find(|(id, _)| *id == r.id).is_some_and(|(_, s)| *s > after);
            row.push(records::number(r.id, r.created_at));
            row.push(rfc3339(r.updated_at));
            row.push(format!(
                "{}{}",
                r.region,
                r.department_id.as_deref().map(|d| format!(":{d}")).unwrap_or_default()
            ));
            row.push(batch.clone());
            row.push(if created_here { "i" } else { "u" }.into());
        }
        w.write_record(&row).map_err(csv_err)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| Error::Io { context: "writing the export".into(), source: e.into_error() })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::HeaderName::from_static("x-next-cursor"), records::cursor(next)),
        ],
        body,
    )
        .into_response())
}

// ----- actions -----

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteBody {
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RequiredNoteBody {
    /// Why (required).
    #[schemars(length(min = 1, max = 2000))]
    note: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DistributeBody {
    /// Department ids; each must supervise the record's site.
    #[schemars(length(min = 1, max = 16))]
    departments: Vec<String>,
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    /// The person who handles it.
    #[schemars(length(min = 1, max = 100))]
    assignee: String,
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResultBody {
    /// What was found and done.
    #[schemars(length(min = 1, max = 4000))]
    result: String,
    /// Ids of uploads to this record (`POST /api/v1/records/{id}/attachments`).
    #[serde(default)]
    #[schemars(length(max = 20))]
    attachments: Vec<i64>,
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Inspector {
    #[schemars(length(min = 1, max = 100))]
    name: String,
    /// Law-enforcement certificate number.
    #[schemars(length(min = 1, max = 64))]
    certificate: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedbackBody {
    /// The record the feedback carries: an inspection, a penalty or a coercive measure.
    kind: FeedbackKind,
    /// Its result.
    #[schemars(length(min = 1, max = 4000))]
    outcome: String,
    /// When the inspection (or measure) took place.
    #[schemars(schema_with = "super::openapi::time_schema")]
    inspected_at: String,
    #[schemars(length(min = 1, max = 20))]
    inspectors: Vec<Inspector>,
    /// When it was reported (after `inspected_at`).
    #[schemars(schema_with = "super::openapi::time_schema")]
    reported_at: String,
    #[schemars(length(min = 1, max = 100))]
    reporter: String,
    #[serde(default)]
    #[schemars(length(max = 20))]
    attachments: Vec<i64>,
    #[schemars(length(max = 2000))]
    note: Option<String>,
}

/// One handler for every action: the action is the path's last segment, the body its own.
pub(super) async fn act(
    State(s): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, Error> {
    let id = record_id(id)?;
    let name = uri.path().rsplit('/').next().unwrap_or_default();
    let action: RecordAction = name.parse().map_err(Error::InvalidArgument)?;
    fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
        let b: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
        serde_json::from_slice(b).map_err(|e| Error::InvalidArgument(format!("request body: {e}")))
    }
    let mut change = Change::default();
    match action {
        RecordAction::Claim | RecordAction::Close => {
            let b: NoteBody = parse(&body)?;
            change.note = text("note", b.note, NOTE_MAX, false)?;
        }
        RecordAction::Reopen | RecordAction::Return => {
            let b: RequiredNoteBody = parse(&body)?;
            change.note = text("note", Some(b.note), NOTE_MAX, true)?;
        }
        RecordAction::Distribute => {
            let b: DistributeBody = parse(&body)?;
            if b.departments.is_empty() {
                return Err(Error::InvalidArgument("departments: name at least one".into()));
            }
            change.departments = b.departments;
            change.note = text("note", b.note, NOTE_MAX, false)?;
        }
        RecordAction::Assign => {
            let b: AssignBody = parse(&body)?;
            change.assignee = text("assignee", Some(b.assignee), 100, true)?;
            change.note = text("note", b.note, NOTE_MAX, false)?;
        }
        RecordAction::Result => {
            let b: ResultBody = parse(&body)?;
            let result = text("result", Some(b.result), TEXT_MAX, true)?;
            change.content = Some(json!({"result": result}));
            change.attachments = b.attachments;
            change.note = text("note", b.note, NOTE_MAX, false)?;
        }
        RecordAction::Feedback => {
            let b: FeedbackBody = parse(&body)?;
            let inspected = parse_time("inspected_at", &b.inspected_at)?;
            let reported = parse_time("reported_at", &b.reported_at)?;
            if reported <= inspected {
                return Err(Error::InvalidArgument(format!(
                    "reported_at ({}) must be after inspected_at ({})",
                    rfc3339(reported),
                    rfc3339(inspected)
                )));
            }
            let outcome = text("outcome", Some(b.outcome), TEXT_MAX, true)?;
            let reporter = text("reporter", Some(b.reporter), 100, true)?;
            let mut inspectors = Vec::new();
            for (i, p) in b.inspectors.into_iter().enumerate() {
                let name = text(&format!("inspectors[{i}].name"), Some(p.name), 100, true)?;
                let cert =
                    text(&format!("inspectors[{i}].certificate"), Some(p.certificate), 64, true)?;
                inspectors.push(json!({"name": name, "certificate": cert}));
            }
            if inspectors.is_empty() {
                return Err(Error::InvalidArgument("inspectors: name at least one".into()));
            }
            change.content = Some(json!({
                "kind": b.kind, "outcome": outcome, "inspected_at": rfc3339(inspected),
                "inspectors": inspectors, "reported_at": rfc3339(reported), "reporter": reporter,
            }));
            change.attachments = b.attachments;
            change.note = text("note", b.note, NOTE_MAX, false)?;
        }
        RecordAction::Create | RecordAction::Escalate | RecordAction::Attach => {
            return Err(Error::NotFound(format!("no action {name}")));
        }
    }
    let audit = caller.audit(&format!("record.{action}"), format!("record:{id}"));
    let now = s.clock.now_ms();
    let (r, _) = s
        .store
        .act(id, action, &change, &actor(&caller), &caller.scope(), &s.records.policy, &audit, now)
        .await?;
    s.records.waker.wake();
    Ok(Json(detail_json(&s, &r).await?))
}

// ----- attachments -----

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// The file's name, as shown.
    #[schemars(length(min = 1, max = 200))]
    name: String,
}

pub(super) async fn upload(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, Error> {
    let id = record_id(id)?;
    let r = s
        .store
        .record(id, &caller.scope())
        .await?
        .ok_or(Error::NotFound(format!("record {id}")))?;
    // Read here with the attachments' own limit (larger than http.max_body_bytes).
    let body = axum::body::to_bytes(body, s.records.attachment_max_bytes).await.map_err(|_| {
        Error::TooLarge(format!(
            "the file is larger than {} bytes (records.attachment_max_bytes)",
            s.records.attachment_max_bytes
        ))
    })?;
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let name = text("name", Some(q.name), 200, true)?.unwrap_or_default();
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "name {name:?}: no path separators or control characters"
        )));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !ATTACHMENT_TYPES.contains(&ct.as_str()) {
        return Err(Error::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: attachments are {}",
            ATTACHMENT_TYPES.join(", ")
        )));
    }
    if body.is_empty() {
        return Err(Error::InvalidArgument("the file is empty".into()));
    }
    if body.len() > s.records.attachment_max_bytes {
        return Err(Error::TooLarge(format!(
            "{} bytes, at most {} (records.attachment_max_bytes)",
            body.len(),
            s.records.attachment_max_bytes
        )));
    }
    // Those who may enter its result or close it may attach to it.
    let a = actor(&caller);
    let holder = records::lifecycle::Holder {
        candidates: &r.candidates,
        department: r.department_id.as_deref(),
    };
    records::lifecycle::may(RecordAction::Close, &a, &holder)
        .map_err(|e| Error::PermissionDenied(format!("attaching to record {id}: {e}")))?;
    let sha = hex::encode(sha2::Sha256::digest(&body));
    std::fs::create_dir_all(&s.records.attachments_dir).map_err(|source| Error::Io {
        context: format!("creating {}", s.records.attachments_dir.display()),
        source,
    })?;
    let path = s.records.attachments_dir.join(&sha);
    if !path.exists() {
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &body).and_then(|_| std::fs::rename(&tmp, &path)).map_err(
            |source| Error::Io { context: format!("writing {}", path.display()), source },
        )?;
    }
    let now = s.clock.now_ms();
    let mut row = AttachmentRow {
        id: 0,
        record_id: id,
        transition_id: None,
        name,
        content_type: ct,
        size: body.len() as i64,
        sha256: sha,
        uploaded_by: caller.actor.clone(),
        at: now,
    };
    let audit = caller.audit("record.attach_file", format!("record:{id}"));
    row.id = s.store.add_attachment(&row, &audit, now).await?;
    Ok((StatusCode::CREATED, Json(records::attachment_json(&row))).into_response())
}

pub(super) async fn download(
    State(s): State<AppState>,
    caller: Caller,
    ids: Result<Path<(i64, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, Error> {
    let Path((id, aid)) = ids.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    s.store.record(id, &caller.scope()).await?.ok_or(Error::NotFound(format!("record {id}")))?;
    let a = s
        .store
        .attachments(id)
        .await?
        .into_iter()
        .find(|a| a.id == aid)
        .ok_or(Error::NotFound(format!("attachment {aid} of record {id}")))?;
    let path = s.records.attachments_dir.join(&a.sha256);
    let bytes = std::fs::read(&path)
        .map_err(|source| Error::Io { context: format!("reading {}", path.display()), source })?;
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type.clone()),
            (header::CONTENT_DISPOSITION, format!("inline; filename=\"attachment-{aid}\"")),
            (header::HeaderName::from_static("x-content-type-options"), "nosniff".into()),
        ],
        bytes,
    )
        .into_response())
}

// ----- notices -----

pub(super) async fn notices(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Error> {
    // A department sees its own; the duty room and admins all.
    let mine = actor(&caller);
    let dept = if mine.duty { None } else { Some(mine.department.unwrap_or_default()) };
    let rows = s.store.notices(dept.as_deref(), 200).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|n| {
            json!({"id": n.id, "at": rfc3339(n.at), "department_id": n.department_id, "kind": n.kind,
                   "record_id": n.record_id, "subscription_id": n.subscription_id, "message": n.message})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}
