//! Departments' subscriptions (docs/records.md, "Push"): endpoints, filters, secrets and their
//! rotation, the delivery log and replay.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::records::actor;
use super::{AppState, body_error, parse_time, rfc3339};
use common::Transport;

use crate::auth::Caller;
use crate::delivery::mqtt;
use crate::error::Error;
use crate::store::records::{Filters, Key, SubscriptionRow};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSubscription {
    /// The department it serves: a department's own by default; admins name one.
    #[schemars(length(min = 1, max = 64))]
    department_id: Option<String>,
    #[schemars(length(min = 1, max = 100))]
    name: String,
    /// The endpoint (http or https), within delivery.networks: required for `webhook`, not
    /// given for `mqtt`.
    #[schemars(length(min = 1, max = 2000))]
    url: Option<String>,
    #[serde(default)]
    filters: Filters,
    /// How events are delivered: `webhook` (default; signed POSTs to `url`) or `mqtt` (QoS 1
    /// publications to the department's subscriber on the hub's MQTT gateway).
    transport: Option<Transport>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriptionChange {
    #[schemars(length(min = 1, max = 100))]
    name: Option<String>,
    #[schemars(length(min = 1, max = 2000))]
    url: Option<String>,
    filters: Option<Filters>,
    /// `true` enables a disabled subscription again (its held deliveries resume); `false`
    /// pauses it.
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryQuery {
    record_id: Option<i64>,
    #[schemars(regex(pattern = r"^(pending|delivered|failed)$"))]
    state: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    /// One event (`evt_…`).
    #[schemars(regex(pattern = r"^evt_[0-9]{1,18}$"))]
    event_id: Option<String>,
    /// Or the events of `[from, to)`.
    #[schemars(schema_with = "super::openapi::time_schema")]
    from: Option<String>,
    #[schemars(schema_with = "super::openapi::time_schema")]
    to: Option<String>,
}

fn sub_id(id: Result<Path<i64>, axum::extract::rejection::PathRejection>) -> Result<i64, Error> {
    id.map(|Path(i)| i)
        .map_err(|e| Error::InvalidArgument(format!("subscription id: {}", e.body_text())))
}

/// The caller's department filter: a department's own; none (all) for admins.
fn owner(c: &Caller) -> Result<Option<String>, Error> {
    if c.has(crate::auth::Role::Admin) {
        return Ok(None);
    }
    actor(c).department.map(Some).ok_or_else(|| {
        Error::PermissionDenied(
            "subscriptions belong to departments; this principal has none".into(),
        )
    })
}

async fn json_of(s: &AppState, sub: &SubscriptionRow) -> Result<Value, Error> {
    let counts = s.store.delivery_counts(sub.id).await?;
    let mqtt = (sub.transport == Transport::Mqtt).then(|| {
        json!({"username": format!("{}{}", mqtt::USER_PREFIX, sub.department_id),
            "topic": mqtt::topic(&sub.department_id, sub.id)})
    });
    Ok(json!({
        "mqtt": mqtt,
        "id": sub.id,
        "department_id": sub.department_id,
        "name": sub.name,
        "url": sub.url,
        "transport": sub.transport,
        "filters": sub.filters,
        "enabled": sub.enabled,
        "disabled_reason": sub.disabled_reason,
        "disabled_at": sub.disabled_at.map(rfc3339),
        "failing_since": sub.failing_since.map(rfc3339),
        "last_success_at": sub.last_success_at.map(rfc3339),
        "pending": counts.pending,
        "delivered": counts.delivered,
        "failed": counts.failed,
        "created_at": rfc3339(sub.created_at),
        "created_by": sub.created_by,
        "keys": sub.keys.iter().map(|k| json!({"id": k.id, "created_at": rfc3339(k.created_at),
            "expires_at": k.expires_at.map(rfc3339)})).collect::<Vec<_>>(),
    }))
}

fn check_filters(f: &Filters) -> Result<(), Error> {
    for r in &f.regions {
        common::RegionCode::new(r)
            .map_err(|e| Error::InvalidArgument(format!("filters.regions: {r:?}: {e}")))?;
    }
    for c in &f.item_codes {
        common::ItemCode::new(c)
            .map_err(|e| Error::InvalidArgument(format!("filters.item_codes: {c:?}: {e}")))?;
    }
    let known = crate::records::lifecycle::event_types();
    if let Some(t) = f.event_types.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "filters.event_types: {t:?} is not one of {}",
            known.join(", ")
        )));
    }
    Ok(())
}

async fn check_url(s: &AppState, url: &str) -> Result<(), Error> {
    crate::delivery::check_destination(url, &s.records.networks)
        .await
        .map(|_| ())
        .map_err(|e| Error::InvalidArgument(format!("url: {e}")))
}

async fn load(s: &AppState, caller: &Caller, id: i64) -> Result<SubscriptionRow, Error> {
    let owner = owner(caller)?;
    s.store
        .subscription(id, owner.as_deref())
        .await?
        .ok_or(Error::NotFound(format!("subscription {id}")))
}

pub(super) async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let owner = owner(&caller)?;
    let mut items = Vec::new();
    for sub in s.store.subscriptions(owner.as_deref()).await? {
        items.push(json_of(&s, &sub).await?);
    }
    Ok(Json(json!({"items": items})))
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewSubscription>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Error> {
    let Json(b) = body.map_err(body_error)?;
    let department = match (owner(&caller)?, b.department_id) {
        (Some(own), None) => own,
        (Some(own), Some(d)) if d == own => own,
        (Some(own), Some(d)) => {
            return Err(Error::PermissionDenied(format!(
                "department {own} cannot subscribe for department {d}"
            )));
        }
        (None, Some(d)) => d,
        (None, None) => {
            return Err(Error::InvalidArgument(
                "department_id: an admin names the department".into(),
            ));
        }
    };
    if s.store.department(&department).await?.is_none() {
        return Err(Error::InvalidArgument(format!("department_id: no department {department:?}")));
    }
    let transport = b.transport.unwrap_or(Transport::Webhook);
    let url = match (transport, &b.url) {
        (Transport::Webhook, Some(u)) => u.clone(),
        (Transport::Webhook, None) => {
            return Err(Error::InvalidArgument("url: required for a webhook".into()));
        }
        (Transport::Mqtt, None) if s.records.mqtt_feeds => String::new(),
        (Transport::Mqtt, None) => {
            return Err(Error::InvalidArgument(
                "transport \"mqtt\" needs mqtt.mode = \"embedded\": department subscribers read \
                 record events from the hub's own MQTT gateway, and this hub uses an external \
                 broker; subscribe a webhook (or pull) instead"
                    .into(),
            ));
        }
        (Transport::Mqtt, Some(_)) => {
            return Err(Error::InvalidArgument(
                "url: not for transport \"mqtt\" (the department's subscriber connects to the \
                 hub's MQTT gateway; the answer names its username and topic)"
                    .into(),
            ));
        }
    };
    let name = b.name.trim().to_owned();
    if name.is_empty() {
        return Err(Error::InvalidArgument("name: required".into()));
    }
    check_filters(&b.filters)?;
    if transport == Transport::Webhook {
        check_url(&s, &url).await?;
    }
    let now = s.clock.now_ms();
    let secret = crate::delivery::new_secret();
    let mut sub = SubscriptionRow::new(
        &department,
        &name,
        &url,
        secret.clone(),
        b.filters,
        now,
        &caller.actor,
    );
    sub.transport = transport;
    let mut audit = caller.audit("subscription.create", String::new());
    audit.after = Some(json!({"department_id": sub.department_id, "url": sub.url,
        "transport": sub.transport, "filters": sub.filters}));
    sub.id = s.store.insert_subscription(&sub, &audit, now).await?;
    let mut v = json_of(&s, &sub).await?;
    if transport == Transport::Webhook {
        v["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    let sub = load(&s, &caller, sub_id(id)?).await?;
    Ok(Json(json_of(&s, &sub).await?))
}

pub(super) async fn update(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<SubscriptionChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let id = sub_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    let mut sub = load(&s, &caller, id).await?;
    let before =
        json!({"name": sub.name, "url": sub.url, "filters": sub.filters, "enabled": sub.enabled});
    if let Some(n) = b.name {
        let n = n.trim().to_owned();
        if n.is_empty() {
            return Err(Error::InvalidArgument("name: must not be empty".into()));
        }
        sub.name = n;
    }
    if let Some(u) = b.url {
        if sub.transport == Transport::Mqtt {
            return Err(Error::InvalidArgument(
                "url: an mqtt subscription has none (its subscriber connects to the hub)".into(),
            ));
        }
        check_url(&s, &u).await?;
        sub.url = u;
    }
    if let Some(f) = b.filters {
        check_filters(&f)?;
        sub.filters = f;
    }
    let now = s.clock.now_ms();
    match b.enabled {
        Some(true) if !sub.enabled => {
            sub.enabled = true;
            sub.disabled_reason = None;
            sub.disabled_at = None;
            sub.failing_since = None;
        }
        Some(false) if sub.enabled => {
            sub.enabled = false;
            sub.disabled_reason = Some(format!("paused by {}", caller.actor));
            sub.disabled_at = Some(now);
        }
        _ => {}
    }
    let mut audit = caller.audit("subscription.update", format!("subscription:{id}"));
    audit.before = Some(before);
    audit.after = Some(
        json!({"name": sub.name, "url": sub.url, "filters": sub.filters, "enabled": sub.enabled}),
    );
    s.store.apply(&[crate::store::Store::save_subscription(&sub)], &audit, now).await?;
    s.records.waker.wake();
    Ok(Json(json_of(&s, &sub).await?))
}

pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, Error> {
    let id = sub_id(id)?;
    let sub = load(&s, &caller, id).await?;
    let mut audit = caller.audit("subscription.delete", format!("subscription:{id}"));
    audit.before = Some(json!({"url": sub.url, "department_id": sub.department_id}));
    s.store.apply(&crate::store::Store::delete_subscription(id), &audit, s.clock.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret; the old ones keep signing for `delivery.rotation_overlap`.
pub(super) async fn rotate(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Error> {
    let id = sub_id(id)?;
    let mut sub = load(&s, &caller, id).await?;
    if sub.transport == Transport::Mqtt {
        return Err(Error::InvalidArgument(format!(
            "subscription {id} is delivered over MQTT: it has no signing secret (its subscriber \
             logs in with a department token)"
        )));
    }
    let now = s.clock.now_ms();
    let overlap_end = now + s.records.rotation_overlap_ms;
    sub.keys.retain(|k| k.expires_at.is_none_or(|e| e > now));
    for k in &mut sub.keys {
        k.expires_at = Some(k.expires_at.map_or(overlap_end, |e| e.min(overlap_end)));
    }
    let secret = crate::delivery::new_secret();
    let next = sub.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
    sub.keys.push(Key { id: next, secret: secret.clone(), created_at: now, expires_at: None });
    let mut audit = caller.audit("subscription.rotate", format!("subscription:{id}"));
    audit.after = Some(json!({"key": next, "old_keys_expire_at": rfc3339(overlap_end)}));
    s.store.apply(&[crate::store::Store::save_subscription(&sub)], &audit, now).await?;
    let mut v = json_of(&s, &sub).await?;
    v["secret"] = json!(secret);
    Ok(Json(v))
}

pub(super) async fn deliveries(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let id = sub_id(id)?;
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::InvalidArgument(format!("limit={limit} must be within 1..=1000")));
    }
    let sub = load(&s, &caller, id).await?;
    let rows = s.store.deliveries(sub.id, q.record_id, q.state.as_deref(), limit).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|d| {
            let state = if d.state == "pending" && !sub.enabled { "held" } else { d.state.as_str() };
            json!({
                "id": d.id, "event_id": crate::records::event_id(d.transition_id),
                "event_type": d.event_type, "record_id": d.record_id, "state": state,
                "attempts": d.attempts, "next_at": (d.state == "pending").then(|| rfc3339(d.next_at)),
                "last_status": d.last_status, "last_error": d.last_error,
                "created_at": rfc3339(d.created_at), "delivered_at": d.delivered_at.map(rfc3339),
                "log": d.log.iter().map(|a| json!({"attempt": a.attempt, "at": rfc3339(a.at),
                    "status": a.status, "latency_ms": a.latency_ms, "error": a.error})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

pub(super) async fn replay(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<ReplayBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let id = sub_id(id)?;
    let Json(b) = body.map_err(body_error)?;
    let sub = load(&s, &caller, id).await?;
    let event = b
        .event_id
        .as_deref()
        .map(|e| {
            e.strip_prefix("evt_").and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| {
                Error::InvalidArgument(format!("event_id {e:?} is not an event id (evt_…)"))
            })
        })
        .transpose()?;
    let range = match (b.from, b.to) {
        (Some(f), Some(t)) => {
            let (f, t) = (parse_time("from", &f)?, parse_time("to", &t)?);
            if t <= f {
                return Err(Error::InvalidArgument("to must be after from".into()));
            }
            Some((f, t))
        }
        (None, None) => None,
        _ => return Err(Error::InvalidArgument("from and to go together".into())),
    };
    if event.is_none() == range.is_none() {
        return Err(Error::InvalidArgument("name either event_id or from and to".into()));
    }
    let now = s.clock.now_ms();
    let audit = caller.audit("subscription.replay", format!("subscription:{id}"));
    let n = s.store.replay(&sub, event, range, &audit, now).await?;
    if event.is_some() && n == 0 {
        return Err(Error::NotFound(format!(
            "event {} for subscription {id} (not one of its department's records, or filtered out)",
            b.event_id.unwrap_or_default()
        )));
    }
    s.records.waker.wake();
    Ok(Json(json!({"queued": n})))
}
