//! Supervision records (docs/records.md): the case a verified finding becomes, its lifecycle,
//! its events, the catalogue and entities it names. Storage is in `store::records`; delivery
//! of the events in `crate::delivery`.

pub mod import;
pub mod lifecycle;

use common::{RecordState, UnixMs};
use serde_json::{Value, json};

use crate::api::rfc3339;

/// A stored record with what it names (site name, entity details).
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub id: i64,
    pub dedup_key: String,
    pub state: RecordState,
    pub item_code: String,
    pub item_name: String,
    pub severity: String,
    pub industry: String,
    pub region: String,
    pub site_id: String,
    pub site_name: Option<String>,
    pub entity_name: String,
    pub entity_uscc: String,
    pub entity_address: Option<String>,
    pub entity_risk_grade: Option<String>,
    pub summary: String,
    pub first_seen: UnixMs,
    pub last_seen: UnixMs,
    pub occurrences: i64,
    pub evidence: Value,
    pub candidates: Vec<String>,
    pub returned_by: Vec<String>,
    pub department_id: Option<String>,
    pub assignee: Option<String>,
    pub result: Option<Value>,
    pub feedback: Option<Value>,
    pub claim_due_at: UnixMs,
    pub close_due_at: UnixMs,
    pub escalation_level: i64,
    pub escalated_at: Option<UnixMs>,
    pub escalated_to: Option<String>,
    pub escalation_reason: Option<String>,
    pub created_at: UnixMs,
    pub created_by: String,
    pub updated_at: UnixMs,
    pub closed_at: Option<UnixMs>,
    pub seq: i64,
    pub finding_ids: Vec<i64>,
}

/// A stored transition.
#[derive(Debug, Clone)]
pub struct TransitionRow {
    pub id: i64,
    pub record_id: i64,
    pub seq: i64,
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    pub actor: String,
    pub at: UnixMs,
    pub note: Option<String>,
    pub data: Option<Value>,
    pub event_type: String,
}

/// A stored attachment.
#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub id: i64,
    pub record_id: i64,
    pub transition_id: Option<i64>,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub at: UnixMs,
}

/// The record's human-readable number: `SR-<creation date UTC>-<id, 6 digits>`.
pub fn number(id: i64, created_at: UnixMs) -> String {
    let day = chrono::DateTime::from_timestamp_millis(created_at)
        .map(|t| t.format("%Y%m%d").to_string())
        .unwrap_or_default();
    format!("SR-{day}-{id:06}")
}

/// Where the record stands against its deadlines.
pub fn deadline(r: &RecordRow, now: UnixMs) -> &'static str {
    match (r.state, r.closed_at) {
        (RecordState::Closed, Some(at)) if at <= r.close_due_at => "met",
        (RecordState::Closed, _) => "late",
        _ if now > r.close_due_at => "close_overdue",
        (RecordState::New | RecordState::Distributed | RecordState::Returned, _)
            if now > r.claim_due_at =>
        {
            "claim_overdue"
        }
        _ => "ok",
    }
}

/// A cursor as the API shows it.
pub fn cursor(seq: i64) -> String {
    seq.to_string()
}

/// The record as JSON (the API's and the events' `data.record`).
pub fn record_json(r: &RecordRow, now: UnixMs) -> Value {
    json!({
        "id": r.id,
        "number": number(r.id, r.created_at),
        "state": r.state,
        "item_code": r.item_code,
        "item_name": r.item_name,
        "severity": r.severity,
        "industry": r.industry,
        "region": r.region,
        "site_id": r.site_id,
        "site_name": r.site_name,
        "entity": {
            "name": r.entity_name,
            "uscc": r.entity_uscc,
            "address": r.entity_address,
            "risk_grade": r.entity_risk_grade,
        },
        "summary": r.summary,
        "finding_ids": r.finding_ids,
        "occurrences": r.occurrences,
        "first_seen": rfc3339(r.first_seen),
        "last_seen": rfc3339(r.last_seen),
        "evidence": r.evidence,
        "candidates": r.candidates,
        "department_id": r.department_id,
        "assignee": r.assignee,
        "result": r.result,
        "feedback": r.feedback,
        "claim_due_at": rfc3339(r.claim_due_at),
        "close_due_at": rfc3339(r.close_due_at),
        "deadline": deadline(r, now),
        "escalation": (r.escalation_level > 0).then(|| json!({
            "level": r.escalation_level,
            "at": r.escalated_at.map(rfc3339),
            "to": r.escalated_to,
            "reason": r.escalation_reason,
        })),
        "created_at": rfc3339(r.created_at),
        "created_by": r.created_by,
        "updated_at": rfc3339(r.updated_at),
        "closed_at": r.closed_at.map(rfc3339),
        "cursor": cursor(r.seq),
    })
}

pub fn attachment_json(a: &AttachmentRow) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "uploaded_by": a.uploaded_by,
        "at": rfc3339(a.at),
        "transition_id": a.transition_id,
        "url": format!("/api/v1/records/{}/attachments/{}", a.record_id, a.id),
    })
}

pub fn transition_json(t: &TransitionRow) -> Value {
    json!({
        "id": t.id,
        "action": t.action,
        "from": t.from,
        "to": t.to,
        "actor": t.actor,
        "at": rfc3339(t.at),
        "note": t.note,
        "data": t.data,
    })
}

/// The CloudEvents source attribute of every record event.
pub const EVENT_SOURCE: &str = "/supervision-hub/records";

/// The event id of a transition: the `webhook-id` of its deliveries.
pub fn event_id(transition_id: i64) -> String {
    format!("evt_{transition_id}")
}

/// The transition's CloudEvent (structured mode JSON). `sequence` is the CloudEvents
/// sequence extension: the commit order, zero-padded so that it also sorts as text.
pub fn cloud_event(t: &TransitionRow, record: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": event_id(t.id),
        "source": EVENT_SOURCE,
        "type": t.event_type,
        "subject": format!("records/{}", t.record_id),
        "time": rfc3339(t.at),
        "datacontenttype": "application/json",
        "sequence": format!("{:020}", t.seq),
        "data": {"transition": transition_json(t), "record": record},
    })
}

/// Escalates overdue records every `every` until `shutdown` (docs/records.md, "Deadlines").
/// Several hubs may run it: an escalation is a conditional update, taken once.
pub async fn deadline_monitor(
    store: crate::store::Store,
    clock: std::sync::Arc<dyn common::Clock>,
    waker: crate::delivery::Waker,
    every: std::time::Duration,
    shutdown: common::Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match store.escalate_overdue(clock.now_ms()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(records = ?ids, "overdue records escalated");
                waker.wake();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for overdue records failed"),
        }
    }
}
