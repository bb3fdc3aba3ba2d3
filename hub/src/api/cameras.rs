//! `/api/v1/cameras`: list, add, change, remove cameras at run time; snapshots; reload of the
//! configuration file's cameras.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, rfc3339};
use crate::cameras::CameraView;
use crate::error::Error;
use crate::store::CameraRow;

fn camera_json(c: &CameraView) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    v["created_at"] = json!(rfc3339(c.created_at));
    v["updated_at"] = json!(rfc3339(c.updated_at));
    v["health"]["last_keyframe_at"] = json!(c.health.last_keyframe_at.map(rfc3339));
    v["snapshot_url"] = json!(format!("/api/v1/cameras/{}/snapshot", c.spec.id));
    v
}

pub(super) async fn list(State(s): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = s.cameras.list().iter().map(camera_json).collect();
    Json(json!({ "items": items }))
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let c = s.cameras.get(&id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
    Ok(Json(camera_json(&c)))
}

fn parse_camera(v: Value) -> Result<config::Camera, Error> {
    serde_json::from_value(v).map_err(|e| {
        Error::InvalidArgument(format!(
            "camera: {e} (fields as in a [[cameras]] table of the configuration, see docs/config.md)"
        ))
    })
}

fn check(s: &AppState, c: &config::Camera) -> Result<(), Error> {
    if c.url.contains(":***@") {
        return Err(Error::InvalidArgument(
            "camera.url holds the redacted password (***) of an API response; send the real \
             URL, or leave url out of a PATCH to keep it"
                .into(),
        ));
    }
    let problems = s.cameras.check(c, "camera");
    if problems.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(problems.join("; "))) }
}

async fn save(s: &AppState, c: &config::Camera, created_at: i64, new: bool) -> Result<bool, Error> {
    let row = CameraRow::of(c, "api", created_at, s.clock.now_ms());
    s.store.upsert_camera(&row, !new).await
}

pub(super) async fn create(
    State(s): State<AppState>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(v) =
        body.map_err(|e| Error::InvalidArgument(format!("request body: {}", e.body_text())))?;
    let c = parse_camera(v)?;
    check(&s, &c)?;
    let id = c.id.to_string();
    let now = s.clock.now_ms();
    if s.cameras.get(&id).is_some() || !save(&s, &c, now, true).await? {
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
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Error> {
    let Json(patch) =
        body.map_err(|e| Error::InvalidArgument(format!("request body: {}", e.body_text())))?;
    let (spec, source, created_at) =
        s.cameras.spec(&id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
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
    check(&s, &c)?;
    save(&s, &c, created_at, false).await?;
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
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let (_, source, _) =
        s.cameras.spec(&id).ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
    if source == "config" {
        return Err(config_owned(&id));
    }
    s.store.delete_camera(&id).await?;
    s.cameras.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn snapshot(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    if s.cameras.get(&id).is_none() {
        return Err(Error::NotFound(format!("camera {id:?}")));
    }
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
pub(super) async fn reload(State(s): State<AppState>) -> Result<Json<Value>, Error> {
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
    Ok(Json(json!({ "cameras": { "added": added, "changed": changed, "removed": removed } })))
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
