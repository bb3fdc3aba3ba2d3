//! `/api/v1/cameras`: list, add, change, remove cameras at run time; snapshots; reload of the
//! configuration file's cameras.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, body_error, rfc3339};
use crate::auth::{Caller, Scope};
use crate::cameras::CameraView;
use crate::error::Error;
use crate::store::{CameraRow, Store};

/// Caps on what one camera may carry (400 above them).
const MAX_ZONES: usize = 32;
const MAX_POLYGON_POINTS: usize = 64;
const MAX_RULES: usize = 64;

fn camera_json(c: &CameraView) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    v["created_at"] = json!(rfc3339(c.created_at));
    v["updated_at"] = json!(rfc3339(c.updated_at));
    v["health"]["last_keyframe_at"] = json!(c.health.last_keyframe_at.map(rfc3339));
    v["snapshot_url"] = json!(format!("/api/v1/cameras/{}/snapshot", c.spec.id));
    v
}

/// A camera within `scope` (of a site within it); `None` when it does not exist or lies
/// outside (the same answer: 404).
pub(super) fn camera_in(s: &AppState, id: &str, scope: &Scope) -> Option<CameraView> {
    s.cameras.get(id).filter(|c| s.registry.site_in_scope(c.spec.site.as_str(), scope))
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("camera {id:?}"))
}

pub(super) async fn list(State(s): State<AppState>, caller: Caller) -> Json<Value> {
    let scope = caller.scope();
    let items: Vec<Value> = s
        .cameras
        .list()
        .iter()
        .filter(|c| s.registry.site_in_scope(c.spec.site.as_str(), &scope))
        .map(camera_json)
        .collect();
    Json(json!({ "items": items }))
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let c = camera_in(&s, &id, &caller.scope()).ok_or_else(|| not_found(&id))?;
    Ok(Json(camera_json(&c)))
}

/// Where an API camera may point: `rtsp://` or `rtsps://`, at an address (or a host name
/// whose every address) within `http.camera_networks`.
async fn check_url(s: &AppState, raw: &str) -> Result<(), Error> {
    let bad = |why: String| Error::InvalidArgument(format!("camera.url: {why}"));
    let u = url::Url::parse(raw).map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(u.scheme(), "rtsp" | "rtsps") {
        return Err(bad(format!("scheme {:?}: only rtsp:// and rtsps:// cameras", u.scheme())));
    }
    let port = u.port().unwrap_or(if u.scheme() == "rtsps" { 322 } else { 554 });
    let allow = crate::auth::networks::AllowList {
        networks: &s.camera_networks,
        what: "cameras",
        setting: "http.camera_networks",
    };
    allow.resolve(&u, port).await.map_err(bad)?;
    Ok(())
}

/// The caps on zones, polygon points and rules.
fn check_sizes(c: &config::Camera) -> Result<(), Error> {
    let mut problems = Vec::new();
    if c.zones.len() > MAX_ZONES {
        problems.push(format!("camera.zones: {} zones, at most {MAX_ZONES}", c.zones.len()));
    }
    for (i, z) in c.zones.iter().enumerate() {
        if z.polygon.len() > MAX_POLYGON_POINTS {
            problems.push(format!(
                "camera.zones[{i}].polygon: {} points, at most {MAX_POLYGON_POINTS}",
                z.polygon.len()
            ));
        }
    }
    if c.rules.len() > MAX_RULES {
        problems.push(format!("camera.rules: {} rules, at most {MAX_RULES}", c.rules.len()));
    }
    if problems.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(problems.join("; "))) }
}

fn parse_camera(v: Value) -> Result<config::Camera, Error> {
    serde_json::from_value(v).map_err(|e| {
        Error::InvalidArgument(format!(
            "camera: {e} (fields as in a [[cameras]] table of the configuration, see docs/config.md)"
        ))
    })
}

/// Everything an API camera must satisfy; `scope`: the caller's (its site must lie within).
async fn check(s: &AppState, c: &config::Camera, scope: &Scope) -> Result<(), Error> {
    if !s.registry.site_in_scope(c.site.as_str(), scope) {
        let yours: Vec<&str> = s.registry.sites_in(scope).iter().map(|x| x.id.as_str()).collect();
        return Err(Error::InvalidArgument(format!(
            "camera.site {:?} is not a site you may manage; yours: {yours:?}",
            c.site.as_str()
        )));
    }
    check_sizes(c)?;
    if c.url.contains(":***@") {
        return Err(Error::InvalidArgument(
            "camera.url holds the redacted password (***) of an API response; send the real \
             URL, or leave url out of a PATCH to keep it"
                .into(),
        ));
    }
    let problems = s.cameras.check(c, "camera");
    if !problems.is_empty() {
        return Err(Error::InvalidArgument(problems.join("; ")));
    }
    check_url(s, &c.url).await
}

/// A camera's fields for the audit log (the URL's password redacted).
fn audit_view(c: &config::Camera) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Ok(mut u) = url::Url::parse(&c.url)
        && u.password().is_some()
    {
        let _ = u.set_password(Some("***"));
        v["url"] = json!(u.to_string());
    }
    v
}

/// Saves the camera with its audit row; false when `new` and the id exists.
async fn save(
    s: &AppState,
    caller: &Caller,
    c: &config::Camera,
    created_at: i64,
    before: Option<&config::Camera>,
) -> Result<bool, Error> {
    let now = s.clock.now_ms();
    let row = CameraRow::of(c, "api", created_at, now);
    let action = if before.is_some() { "camera.update" } else { "camera.create" };
    let mut audit = caller.audit(action, format!("camera:{}", c.id));
    audit.before = before.map(audit_view);
    audit.after = Some(audit_view(c));
    let stmt = Store::save_camera(&row, before.is_some());
    Ok(s.store.apply_if(&[stmt], &audit, now).await?.is_some())
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(v) = body.map_err(body_error)?;
    let c = parse_camera(v)?;
    let id = c.id.to_string();
    if s.cameras.get(&id).is_some() {
        return Err(Error::Conflict(format!("camera {id:?} already exists")));
    }
    check(&s, &c, &caller.scope()).await?;
    let now = s.clock.now_ms();
    if !save(&s, &caller, &c, now, None).await? {
        return Err(Error::Conflict(format!("camera {id:?} already exists")));
    }
    s.cameras.put(c, "api", now);
    let view = s.cameras.get(&id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
    Ok((StatusCode::CREATED, Json(camera_json(&view))))
}

fn config_owned(id: &str) -> Error {
    Error::Conflict(format!(
        "camera {id:?} comes from the configuration file: change the file and POST \
         /api/v1/config/reload (or restart)"
    ))
}

/// JSON merge patch (RFC 7396) of the camera's fields; `id` cannot change.
pub(super) async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let Json(patch) = body.map_err(body_error)?;
    let scope = caller.scope();
    camera_in(&s, &id, &scope).ok_or_else(|| not_found(&id))?;
    let (spec, source, created_at) = s.cameras.spec(&id).ok_or_else(|| not_found(&id))?;
    if source == "config" {
        return Err(config_owned(&id));
    }
    if !patch.is_object() {
        return Err(Error::InvalidArgument("a PATCH body is a JSON object of fields".into()));
    }
    if patch.get("id").is_some_and(|v| v.as_str() != Some(id.as_str())) {
        return Err(Error::InvalidArgument("a camera's id cannot change".into()));
    }
    let mut v = serde_json::to_value(&spec).unwrap_or(Value::Null);
    merge(&mut v, patch);
    let c = parse_camera(v)?;
    check(&s, &c, &scope).await?;
    save(&s, &caller, &c, created_at, Some(&spec)).await?;
    s.cameras.put(c, "api", created_at);
    let view = s.cameras.get(&id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
    Ok(Json(camera_json(&view)))
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    camera_in(&s, &id, &caller.scope()).ok_or_else(|| not_found(&id))?;
    let (spec, source, _) = s.cameras.spec(&id).ok_or_else(|| not_found(&id))?;
    if source == "config" {
        return Err(config_owned(&id));
    }
    let mut audit = caller.audit("camera.delete", format!("camera:{id}"));
    audit.before = Some(audit_view(&spec));
    s.store.apply(&[Store::remove_camera(&id)], &audit, s.clock.now_ms()).await?;
    s.cameras.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn snapshot(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    camera_in(&s, &id, &caller.scope()).ok_or_else(|| not_found(&id))?;
    let cams = s.cameras.clone();
    let jpeg = tokio::task::spawn_blocking(move || cams.snapshot(&id))
        .await
        .map_err(|e| Error::InvalidArgument(format!("snapshot failed: {e}")))?
        // The camera exists: no frame yet is a state of it (409), not a missing resource.
        .map_err(|e| match e {
            Error::NotFound(what) => Error::Conflict(format!("{what} is not available")),
            e => e,
        })?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

/// Re-reads the configuration file and applies its cameras (other sections need a restart).
pub(super) async fn reload(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Error> {
    let path = s.config_path.clone().ok_or_else(|| {
        Error::Conflict("this hub was not started from a configuration file".into())
    })?;
    let mut cfg = config::Config::load(&path)?;
    cfg.apply_env();
    let mut problems = Vec::new();
    for (i, c) in cfg.cameras.iter().enumerate() {
        problems.extend(s.cameras.check(c, &format!("cameras[{i}]")));
    }
    if !problems.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: nothing applied: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    let (added, changed, removed) = s.cameras.reload(&cfg.cameras).await?;
    let what = json!({ "cameras": { "added": added, "changed": changed, "removed": removed } });
    let mut audit = caller.audit("config.reload", format!("config:{}", path.display()));
    audit.after = Some(what.clone());
    s.store.apply(&[], &audit, s.clock.now_ms()).await?;
    Ok(Json(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_replaces_removes_and_recurses() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge(&mut t, json!({"a": null, "b": {"c": 5}, "e": [2, 3]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [2, 3]}));
    }
}
