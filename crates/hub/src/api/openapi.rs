//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. Written by hand next to the
//! router; a test checks that every route of [`ROUTES`] is documented and answered.

use serde_json::{Value, json};

/// Every (method, path) the router serves, in OpenAPI path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/findings"),
    ("get", "/api/v1/findings/{id}"),
    ("post", "/api/v1/findings/{id}/acknowledge"),
    ("post", "/api/v1/findings/{id}/clear"),
    ("get", "/api/v1/devices"),
    ("post", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}"),
    ("get", "/api/v1/devices/{id}/readings"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/models"),
    ("get", "/api/v1/findings/{id}/evidence"),
    ("get", "/api/v1/cameras"),
    ("post", "/api/v1/cameras"),
    ("get", "/api/v1/cameras/{id}"),
    ("patch", "/api/v1/cameras/{id}"),
    ("delete", "/api/v1/cameras/{id}"),
    ("get", "/api/v1/cameras/{id}/snapshot"),
    ("post", "/api/v1/config/reload"),
];

fn param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": location, "required": location == "path",
           "description": description, "schema": schema})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({
        "200": {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub fn document() -> Value {
    let mut doc = base();
    video(&mut doc);
    doc
}

fn jpeg(description: &str) -> Value {
    json!({
        "200": {"description": description, "content": {"image/jpeg": {}}},
        "404": {"$ref": "#/components/responses/Error"},
        "409": {"$ref": "#/components/responses/Error"}
    })
}

/// Cameras, evidence and reload.
fn video(doc: &mut Value) {
    let text = json!({"type": "string"});
    let id = param("id", "path", "identifier", text.clone());
    let camera = reference("Camera");
    let errors = |code: &str| json!({"$ref": "#/components/responses/Error", "x-status": code});
    let paths = &mut doc["paths"];
    paths["/api/v1/findings/{id}/evidence"] = json!({"get": {
        "summary": "An evidence image of a video finding (JPEG)",
        "parameters": [id.clone(),
            param("item", "query", "evidence id from the finding's `evidence`; default the latest", json!({"type": "integer"})),
            param("variant", "query", "annotated (default, boxes drawn) or frame (clean)", text.clone())],
        "responses": jpeg("the image")}});
    paths["/api/v1/cameras"] = json!({
        "get": {"summary": "Cameras with health and analysis counters",
            "responses": ok("cameras", json!({"type": "object", "properties": {
                "items": {"type": "array", "items": camera.clone()}}}))},
        "post": {"summary": "Add a camera (fields as in [[cameras]]); only it starts",
            "requestBody": {"required": true, "content": {"application/json": {"schema": camera.clone()}}},
            "responses": {
                "201": {"description": "added", "content": {"application/json": {"schema": camera.clone()}}},
                "400": errors("400"), "409": errors("409")}}
    });
    paths["/api/v1/cameras/{id}"] = json!({
        "get": {"summary": "One camera", "parameters": [id.clone()],
            "responses": ok("the camera", camera.clone())},
        "patch": {"summary": "Change an API camera (JSON merge patch); only it restarts",
            "parameters": [id.clone()],
            "requestBody": {"required": true, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
            "responses": ok("the camera after the change", camera.clone())},
        "delete": {"summary": "Remove an API camera", "parameters": [id.clone()],
            "responses": {"204": {"description": "removed"}, "404": errors("404"), "409": errors("409")}}
    });
    paths["/api/v1/cameras/{id}/snapshot"] = json!({"get": {
        "summary": "The camera's latest decoded frame (JPEG)", "parameters": [id],
        "responses": jpeg("the frame")}});
    paths["/api/v1/config/reload"] = json!({"post": {
        "summary": "Re-read the configuration file and apply its cameras",
        "responses": ok("what changed", json!({"type": "object"}))}});
    doc["components"]["schemas"]["Camera"] = json!({"type": "object",
    "required": ["id", "site", "url"],
    "properties": {
        "id": text.clone(), "site": text.clone(), "name": text.clone(),
        "url": {"type": "string", "description": "rtsp://…; the password is shown as ***"},
        "rtsp_client": {"enum": ["native", "gstreamer"]},
        "latency_ms": {"type": "integer"},
        "analysis": {"enum": ["keyframes", "fps", "off"]},
        "fps": {"type": ["integer", "null"]},
        "motion_threshold": {"type": ["number", "null"]},
        "enabled": {"type": "boolean"},
        "zones": {"type": "array", "items": {"type": "object"}},
        "rules": {"type": "array", "items": {"type": "object"}},
        "source": {"enum": ["config", "api"]},
        "health": {"type": "object", "description": "state, input_fps, bitrate, frames_in, frames_decoded, frames_dropped, last_keyframe_at, last_error, reconnects"},
        "stats": {"type": "object", "description": "frames_analysed, frames_still, firings, analysis_error"},
        "snapshot_url": text
    }});
    doc["components"]["schemas"]["Finding"]["properties"]["evidence"] = json!({"type": "array",
        "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "captured_at": {"type": "string"},
            "annotated_url": {"type": "string"}, "frame_url": {"type": "string"},
            "detections": {"type": "object"}}}});
}

fn base() -> Value {
    let text = json!({"type": "string"});
    let time = json!({"type": "string", "description": "unix milliseconds or RFC 3339"});
    let id = param("id", "path", "identifier", text.clone());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Supervision hub API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Findings, devices and readings of the non-site supervision hub. \
                Times in responses are RFC 3339 UTC. Errors are {\"error\":{\"status\",\"message\"}}."
        },
        "paths": {
            "/healthz": {"get": {"summary": "Liveness and database health",
                "responses": {"200": {"description": "healthy"}, "503": {"description": "database unreachable"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format)",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document",
                "responses": {"200": {"description": "OpenAPI document"}}}},
            "/api/v1/findings": {"get": {
                "summary": "List findings, newest first",
                "parameters": [
                    param("site", "query", "site id", text.clone()),
                    param("device", "query", "device id", text.clone()),
                    param("rule", "query", "rule id", text.clone()),
                    param("state", "query", "comma list of active, acknowledged, cleared", text.clone()),
                    param("severity", "query", "comma list of info, minor, major, critical", text.clone()),
                    param("since", "query", "last_seen at or after", time.clone()),
                    param("until", "query", "last_seen before", time.clone()),
                    param("cursor", "query", "the `next` of the previous page", text.clone()),
                    param("limit", "query", "1..=1000, default 100", json!({"type": "integer"}))
                ],
                "responses": ok("a page of findings", json!({"type": "object", "properties": {
                    "items": {"type": "array", "items": reference("Finding")},
                    "next": {"type": ["string", "null"], "description": "cursor of the next page; null at the end"}
                }}))
            }},
            "/api/v1/findings/{id}": {"get": {"summary": "One finding", "parameters": [id.clone()],
                "responses": ok("the finding", reference("Finding"))}},
            "/api/v1/findings/{id}/acknowledge": {"post": {
                "summary": "Acknowledge an active finding", "parameters": [id.clone()],
                "responses": ok("the finding after the change", reference("Finding"))}},
            "/api/v1/findings/{id}/clear": {"post": {
                "summary": "Clear a finding; a repeat of its condition then opens a new one",
                "parameters": [id.clone()],
                "responses": ok("the finding after the change", reference("Finding"))}},
            "/api/v1/devices": {
                "get": {"summary": "List devices with online state and last seen",
                    "parameters": [param("site", "query", "site id", text.clone()),
                                   param("kind", "query", "device kind", text.clone()),
                                   param("online", "query", "true or false", json!({"type": "boolean"}))],
                    "responses": ok("devices", json!({"type": "object", "properties": {
                        "items": {"type": "array", "items": reference("Device")}}}))},
                "post": {"summary": "Register a device; the response carries its secret, shown once",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["id", "site_id", "kind"],
                        "properties": {"id": text.clone(), "site_id": text.clone(),
                                       "kind": text.clone(), "name": text.clone()}}}}},
                    "responses": {
                        "201": {"description": "registered", "content": {"application/json": {"schema": reference("Device")}}},
                        "400": {"$ref": "#/components/responses/Error"},
                        "409": {"$ref": "#/components/responses/Error"}}}
            },
            "/api/v1/devices/{id}": {"get": {"summary": "One device", "parameters": [id.clone()],
                "responses": ok("the device", reference("Device"))}},
            "/api/v1/devices/{id}/readings": {"get": {
                "summary": "A device's readings, newest first",
                "parameters": [id, param("since", "query", "ts at or after", time.clone()),
                               param("until", "query", "ts before", time),
                               param("limit", "query", "1..=10000, default 100", json!({"type": "integer"}))],
                "responses": ok("readings", json!({"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "ts": text.clone(), "ts_ms": {"type": "integer"}, "received_at": text.clone(),
                        "values": {"type": "object", "additionalProperties": {"type": "number"}}}}},
                    "next_until": {"type": ["string", "null"]}}}))}},
            "/api/v1/sites": {"get": {"summary": "Configured sites",
                "responses": ok("sites", json!({"type": "object"}))}},
            "/api/v1/models": {"get": {"summary": "Loaded models and those that failed, by name",
                "responses": ok("models", json!({"type": "object"}))}}
        },
        "components": {
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "message": {"type": "string"}}}}}}}}},
            "schemas": {
                "Finding": {"type": "object", "required": ["id", "site_id", "rule", "kind", "severity",
                    "state", "first_seen", "last_seen", "count", "summary"],
                    "properties": {
                        "id": {"type": "integer"}, "site_id": text.clone(),
                        "device_id": {"type": ["string", "null"]}, "camera_id": {"type": ["string", "null"]},
                        "rule": text.clone(), "kind": text.clone(),
                        "severity": {"enum": ["info", "minor", "major", "critical"]},
                        "state": {"enum": ["active", "acknowledged", "cleared"]},
                        "item_code": {"type": ["string", "null"]}, "region": {"type": ["string", "null"]},
                        "summary": text.clone(), "first_seen": text.clone(), "last_seen": text.clone(),
                        "count": {"type": "integer"}, "last_value": {"type": ["number", "null"]},
                        "details": {"type": "object"},
                        "acknowledged_at": {"type": ["string", "null"]}, "cleared_at": {"type": ["string", "null"]}}},
                "Device": {"type": "object", "properties": {
                    "id": text.clone(), "site_id": text.clone(), "kind": text.clone(), "name": text.clone(),
                    "online": {"type": "boolean"}, "last_seen": {"type": ["string", "null"]},
                    "source": {"enum": ["config", "api"]}, "created_at": text.clone(),
                    "telemetry_topic": text.clone(),
                    "secret": {"type": "string", "description": "only in the registration response"}}}
            }
        }
    })
}
