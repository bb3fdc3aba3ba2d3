//! `/api/v1/session`: log in (a session cookie), who am I, log out, change my password.

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, body_error, rfc3339};
use crate::auth::{self, Caller, Credential, Role, secrets};
use crate::error::Error;
use crate::store::{SessionRow, Store};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    username: String,
    password: String,
}

/// What the client may call: `METHOD path` of every operation its roles admit.
fn permissions(roles: &[Role]) -> Vec<String> {
    super::route_table()
        .into_iter()
        .filter(|(_, _, a)| *a != auth::Access::Public && a.admits(roles))
        .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
        .collect()
}

fn department_json(d: &Option<crate::store::DepartmentRow>) -> Value {
    d.as_ref().map_or(Value::Null, |d| {
        json!({"id": d.id, "name": d.name, "region": d.region,
               "industries": d.industries.split(',').collect::<Vec<_>>()})
    })
}

fn address(info: Option<Extension<ConnectInfo<std::net::SocketAddr>>>) -> String {
    info.map_or_else(|| "-".to_owned(), |c| c.0.0.ip().to_string())
}

/// `POST /api/v1/session`: username and password → a session cookie and the CSRF token.
pub(super) async fn login(
    State(s): State<AppState>,
    info: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Error> {
    let Json(l) = body.map_err(body_error)?;
    let addr = address(info);
    let now = s.clock.now_ms();
    if let Some(secs) = s.auth.throttle.check(&l.username, &addr, now) {
        return Err(Error::TooManyRequests {
            message: format!("too many failed logins; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    let user = s.store.user_by_name(&l.username).await?;
    let phc =
        user.as_ref().map_or_else(|| secrets::dummy_hash().to_owned(), |u| u.password_hash.clone());
    let password = l.password.clone();
    let ok = tokio::task::spawn_blocking(move || secrets::verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|u| ok && !u.disabled) else {
        s.auth.throttle.failed(&l.username, &addr, now);
        return Err(Error::Unauthenticated("wrong username or password".into()));
    };
    s.auth.throttle.succeeded(&l.username);
    let raw = secrets::random(32);
    let csrf = secrets::random(24);
    let row = SessionRow {
        id_hash: secrets::digest(&raw),
        user_id: user.id,
        csrf: csrf.clone(),
        created_at: now,
        last_seen: now,
        address: addr.clone(),
    };
    s.store.create_session(&row).await?;
    let mut audit = crate::store::AuditEntry {
        actor: format!("user:{}", user.username),
        address: addr,
        action: "session.login".into(),
        target: format!("user:{}", user.username),
        before: None,
        after: None,
    };
    audit.after = Some(json!({"expires_at": rfc3339(now + s.auth.session_lifetime_ms)}));
    s.store.apply(&[], &audit, now).await?;
    let department = match &user.department_id {
        Some(d) => s.store.department(d).await?,
        None => None,
    };
    let roles = auth::parse_roles(&user.roles).unwrap_or_default();
    let body = json!({
        "kind": "user",
        "name": user.username,
        "roles": roles,
        "department": department_json(&department),
        "csrf_token": csrf,
        "expires_at": rfc3339(now + s.auth.session_lifetime_ms),
        "permissions": permissions(&roles),
    });
    let cookie = s.auth.session_cookie(&raw);
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// `GET /api/v1/session`: who the caller is and what it may do.
pub(super) async fn whoami(caller: Caller) -> Json<Value> {
    let (kind, csrf) = match &caller.credential {
        Credential::Session { csrf, .. } => ("user", Some(csrf.clone())),
        Credential::Token { .. } => ("token", None),
    };
    Json(json!({
        "kind": kind,
        "name": caller.name,
        "roles": caller.roles,
        "department": department_json(&caller.department),
        "integrator": caller.integrator,
        "csrf_token": csrf,
        "permissions": permissions(&caller.roles),
    }))
}

/// `DELETE /api/v1/session`: ends the caller's session (its cookie stops working at once).
pub(super) async fn logout(State(s): State<AppState>, caller: Caller) -> Result<Response, Error> {
    let Credential::Session { id_hash, .. } = &caller.credential else {
        return Err(Error::InvalidArgument(
            "this request carries an API token, not a session; revoke tokens with DELETE \
             /api/v1/tokens/{id}"
                .into(),
        ));
    };
    s.store.delete_session(id_hash).await?;
    s.auth.verified.clear();
    let audit = caller.audit("session.logout", format!("user:{}", caller.name));
    s.store.apply(&[], &audit, s.clock.now_ms()).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, s.auth.cleared_cookie())]).into_response())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    current: String,
    new: String,
}

/// `POST /api/v1/session/password`: a user changes their own password; their other sessions
/// end.
pub(super) async fn change_password(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, Error> {
    let Json(c) = body.map_err(body_error)?;
    let Credential::Session { id_hash, user_id, .. } = &caller.credential else {
        return Err(Error::InvalidArgument("only a logged-in user has a password".into()));
    };
    if let Some(why) = secrets::password_problem(&c.new) {
        return Err(Error::InvalidArgument(format!("new: {why}")));
    }
    let user = s
        .store
        .user_by_name(&caller.name)
        .await?
        .ok_or_else(|| Error::Unauthenticated("the user no longer exists".into()))?;
    let (current, new) = (c.current.clone(), c.new.clone());
    let phc = user.password_hash.clone();
    let hash = tokio::task::spawn_blocking(move || {
        secrets::verify_password(&current, &phc).then(|| secrets::hash_password(&new))
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| Error::PermissionDenied("current: not the current password".into()))?;
    let now = s.clock.now_ms();
    let audit = caller.audit("user.password", format!("user:{}", caller.name));
    s.store.apply(&Store::set_password(*user_id, &hash, now, Some(id_hash)), &audit, now).await?;
    s.auth.verified.clear();
    Ok(StatusCode::NO_CONTENT)
}
