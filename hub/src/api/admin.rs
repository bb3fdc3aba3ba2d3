//! Administration: departments, users, API tokens and the audit log (admins only). The same
//! operations back the `hub department|user|token` commands ([`crate::accounts`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body_error, parse_time, rfc3339};
use crate::accounts::{self, NewDepartment, NewToken, NewUser, UserChange};
use crate::auth::Caller;
use crate::error::Error;
use crate::store::AuditFilter;

pub(super) fn department_json(d: &crate::store::DepartmentRow) -> Value {
    json!({"id": d.id, "name": d.name, "region": d.region,
           "industries": d.industries.split(',').collect::<Vec<_>>(), "uscc": d.uscc,
           "created_at": rfc3339(d.created_at)})
}

fn user_json(u: &crate::store::UserRow) -> Value {
    json!({"id": u.id, "username": u.username, "department": u.department_id,
           "roles": u.roles.split(',').collect::<Vec<_>>(), "disabled": u.disabled,
           "created_at": rfc3339(u.created_at),
           "password_changed_at": rfc3339(u.password_changed_at)})
}

fn token_json(t: &crate::store::TokenRow) -> Value {
    json!({"id": t.id, "name": t.name, "hint": t.hint, "department": t.department_id,
           "integrator": t.integrator, "roles": t.roles.split(',').collect::<Vec<_>>(),
           "created_at": rfc3339(t.created_at), "created_by": t.created_by,
           "expires_at": rfc3339(t.expires_at), "last_used_at": t.last_used_at.map(rfc3339),
           "revoked_at": t.revoked_at.map(rfc3339)})
}

pub(super) async fn list_departments(State(s): State<AppState>) -> Result<Json<Value>, Error> {
    let items: Vec<Value> = s.store.departments().await?.iter().map(department_json).collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_department(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewDepartment>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(n) = body.map_err(body_error)?;
    let audit = caller.audit("department.create", format!("department:{}", n.id));
    let d = accounts::create_department(&s.store, n, audit, s.clock.now_ms()).await?;
    Ok((StatusCode::CREATED, Json(department_json(&d))))
}

pub(super) async fn list_users(State(s): State<AppState>) -> Result<Json<Value>, Error> {
    let items: Vec<Value> = s.store.users().await?.iter().map(user_json).collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(n) = body.map_err(body_error)?;
    let audit = caller.audit("user.create", format!("user:{}", n.username));
    let u = accounts::create_user(&s.store, n, audit, s.clock.now_ms()).await?;
    Ok((StatusCode::CREATED, Json(user_json(&u))))
}

/// `PATCH /api/v1/users/{username}`: roles, department, disabled, password.
pub(super) async fn update_user(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    body: Result<Json<UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let Json(c) = body.map_err(body_error)?;
    let audit = caller.audit("user.update", format!("user:{username}"));
    let u = accounts::update_user(&s.store, &username, c, audit, s.clock.now_ms()).await?;
    s.auth.verified.clear();
    Ok(Json(user_json(&u)))
}

pub(super) async fn list_tokens(State(s): State<AppState>) -> Result<Json<Value>, Error> {
    let items: Vec<Value> = s.store.tokens().await?.iter().map(token_json).collect();
    Ok(Json(json!({ "items": items })))
}

/// `POST /api/v1/tokens`: the token itself is in the answer, and only there.
pub(super) async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(n) = body.map_err(body_error)?;
    let audit = caller.audit("token.create", format!("token:{}", n.name));
    let (row, token) =
        accounts::create_token(&s.store, n, &caller.actor, audit, s.clock.now_ms()).await?;
    let mut v = token_json(&row);
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)))
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    id: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, Error> {
    let Path(id) = id
        .map_err(|e| Error::InvalidArgument(format!("token id: {} (an integer)", e.body_text())))?;
    if matches!(caller.credential, crate::auth::Credential::Token { id: own } if own == id) {
        return Err(Error::Conflict(format!(
            "token {id} is the one making this request; revoke it with another credential"
        )));
    }
    let audit = caller.audit("token.revoke", format!("token:{id}"));
    accounts::revoke_token(&s.store, id, audit, s.clock.now_ms()).await?;
    s.auth.verified.clear();
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) const AUDIT_LIMIT_MAX: i64 = 1000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// `user:NAME`, `token:ID:NAME` or `cli:NAME`.
    actor: Option<String>,
    /// `finding.acknowledge`, `device.register`, …
    action: Option<String>,
    /// `finding:42`, `device:fridge-1`, …
    target: Option<String>,
    /// At or after.
    #[schemars(schema_with = "super::openapi::time_schema")]
    since: Option<String>,
    /// Before.
    #[schemars(schema_with = "super::openapi::time_schema")]
    until: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<i64>,
    /// Page size, default 100.
    #[schemars(range(min = 1, max = AUDIT_LIMIT_MAX))]
    limit: Option<i64>,
}

/// `GET /api/v1/audit`: newest first, by cursor.
pub(super) async fn audit(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = q.map_err(|e| Error::InvalidArgument(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=AUDIT_LIMIT_MAX).contains(&limit) {
        return Err(Error::InvalidArgument(format!(
            "limit={limit} must be within 1..={AUDIT_LIMIT_MAX}"
        )));
    }
    let f = AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        since: q.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        before_id: q.cursor,
        limit: limit + 1,
    };
    let mut rows = s.store.audit_log(&f).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    });
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.id, "at": rfc3339(r.at), "actor": r.entry.actor,
                   "address": r.entry.address, "action": r.entry.action,
                   "target": r.entry.target, "before": r.entry.before, "after": r.entry.after})
        })
        .collect();
    Ok(Json(json!({ "items": items, "next": next.flatten() })))
}
