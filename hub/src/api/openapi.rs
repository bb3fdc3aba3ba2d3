//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
//!
//! Request bodies and query parameters are JSON Schemas derived (`schemars`) from the very types
//! the handlers deserialize, so `deny_unknown_fields`, defaults, ranges and enums cannot drift
//! from what the handlers accept. Response bodies are described here; the schemathesis pass of
//! `scripts/test` checks every response against them. The router records its routes and their
//! access rules through [`Routes`]; each operation's security and roles come from that table,
//! and a test checks that the document covers exactly the routed operations.

use axum::extract::State;
use axum::handler::Handler;
use axum::routing::MethodRouter;
use common::{CameraId, DeviceId, FindingState, Severity, Verdict};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema, json_schema};
use serde_json::{Map, Value, json};

use super::admin::AuditQuery;
use super::session::{Login, PasswordChange};
use super::{AppState, DeviceQuery, EvidenceQuery, FindingQuery, NewDevice, ReadingQuery};
use crate::accounts::{NewDepartment, NewToken, NewUser, UserChange};
use crate::auth::Access;
use crate::error::ErrorBody;

/// The router's routes as they are added, each with its access rule.
#[derive(Default)]
pub(super) struct Routes {
    pub router: axum::Router<AppState>,
    pub table: Vec<(&'static str, &'static str, Access)>,
    /// Routes whose body is a file, not JSON (`post_file`).
    pub files: Vec<&'static str>,
}

impl Routes {
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        access: Access,
        r: MethodRouter<AppState>,
    ) -> Self {
        // Several methods on one path: merge them into one route.
        self.router = self.router.route(path, r);
        self.table.push((method, path, access));
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        h: H,
    ) -> Self {
        self.add("get", path, access, axum::routing::get(h))
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        h: H,
    ) -> Self {
        self.add("post", path, access, axum::routing::post(h))
    }

    /// A POST whose body is a file (an upload, an import): a session may send it with the
    /// file's own Content-Type.
    pub fn post_file<H: Handler<T, AppState>, T: 'static>(
        mut self,
        path: &'static str,
        access: Access,
        h: H,
    ) -> Self {
        self.files.push(path);
        self.post(path, access, h)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        h: H,
    ) -> Self {
        self.add("patch", path, access, axum::routing::patch(h))
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        h: H,
    ) -> Self {
        self.add("delete", path, access, axum::routing::delete(h))
    }
}

/// `GET /api/v1/openapi.json`: built on the first request (sites and device kinds are fixed
/// at start), then served as those bytes.
pub(super) async fn serve(State(s): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = s.openapi.get_or_init(|| {
        let sites: Vec<String> = s.registry.sites.keys().cloned().collect();
        let kinds: Vec<String> = s.registry.kinds.keys().cloned().collect();
        serde_json::to_vec(&document(&sites, &kinds)).unwrap_or_default().into()
    });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

/// Time query parameters: unix milliseconds or RFC 3339 (`parse_time`).
pub(super) fn time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "unix milliseconds or RFC 3339 (2026-01-31T08:00:00Z)",
        "type": "string",
        "pattern": super::TIME_PATTERN,
    })
}

/// A comma-separated list of the values of a string enum, as `super::list` parses it.
fn list_pattern(values: &[&str]) -> String {
    let one = format!("({})", values.join("|"));
    format!("^{one}(,{one})*$")
}

pub(super) fn states_schema(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<&str> = FindingState::ALL.iter().map(|s| s.as_str()).collect();
    json_schema!({"type": "string", "pattern": list_pattern(&all),
                  "description": format!("comma list of {}", all.join(", "))})
}

pub(super) fn verdicts_schema(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<&str> = Verdict::ALL.iter().map(|s| s.as_str()).collect();
    json_schema!({"type": "string", "pattern": list_pattern(&all),
                  "description": format!("comma list of {}", all.join(", "))})
}

pub(super) fn record_states_schema(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<&str> = common::RecordState::ALL.iter().map(|s| s.as_str()).collect();
    json_schema!({"type": "string", "pattern": list_pattern(&all),
                  "description": format!("comma list of {}", all.join(", "))})
}

pub(super) fn severities_schema(_: &mut SchemaGenerator) -> Schema {
    let all: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    json_schema!({"type": "string", "pattern": list_pattern(&all),
                  "description": format!("comma list of {}", all.join(", "))})
}

/// Schemas of the request types, with their definitions under `#/components/schemas`.
struct Schemas {
    generator: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        let generator = SchemaSettings::draft2020_12()
            .with(|s| {
                s.definitions_path = "/components/schemas".into();
                s.meta_schema = None;
            })
            .into_generator();
        Self { generator }
    }

    /// A `$ref` to `T`'s component schema (or `T`'s schema inline for simple types).
    fn body<T: JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    /// `T`'s fields as query parameters: name, required, description and schema per field.
    fn query<T: JsonSchema>(&mut self) -> Vec<Value> {
        let schema = T::json_schema(&mut self.generator).to_value();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(props) = schema["properties"].as_object() else { return Vec::new() };
        props
            .iter()
            .map(|(name, p)| {
                let mut p = p.clone();
                let description = p.as_object_mut().and_then(|o| o.remove("description"));
                not_null(&mut p);
                let mut v = json!({"name": name, "in": "query",
                                   "required": required.contains(&name.as_str()), "schema": p});
                if let Some(d) = description {
                    v["description"] = d;
                }
                v
            })
            .collect()
    }

    fn path<T: JsonSchema>(&mut self, description: &str) -> Value {
        let mut schema = T::json_schema(&mut self.generator).to_value();
        not_null(&mut schema);
        json!({"name": "id", "in": "path", "required": true, "description": description,
               "schema": schema})
    }
}

/// An absent query parameter is how `Option` is spelt; `null` is not a value a query can hold.
fn not_null(schema: &mut Value) {
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn content(media: &str, schema: Value) -> Value {
    json!({media: {"schema": schema}})
}

/// Why each error status is answered (the body is always [`ErrorBody`]).
fn error_response(status: u16) -> Value {
    let why = match status {
        400 => {
            "invalid argument: a parameter or the body is malformed or refused (the message says which)"
        }
        401 => {
            "not authenticated: no, an expired, revoked or unknown credential (log in or send a token)"
        }
        403 => {
            "authenticated but not allowed: the role does not admit this operation, or the CSRF token or origin is wrong"
        }
        404 => "not found (an id outside the caller's scope answers the same)",
        429 => "too many failed logins: wait for Retry-After seconds",
        409 => "conflict with the current state (already exists, owned by the configuration file)",
        413 => "request body larger than the limit",
        415 => "the body is not JSON (Content-Type must be application/json)",
        503 => "unavailable: the database cannot be reached or the hub is shutting down",
        _ => "internal error; see the hub's log",
    };
    json!({"description": why, "content": content("application/json", reference("Error"))})
}

/// One operation: its success response and the error statuses it can answer.
fn op(summary: &str, params: Vec<Value>, ok: (u16, &str, Value), errors: &[u16]) -> Value {
    let (status, description, body) = ok;
    let mut responses = Map::new();
    let mut success = json!({"description": description});
    if !body.is_null() {
        success["content"] = body;
    }
    responses.insert(status.to_string(), success);
    for e in errors {
        responses.insert(e.to_string(), error_response(*e));
    }
    json!({"summary": summary, "parameters": params, "responses": responses})
}

fn json_ok(description: &str, schema: Value) -> (u16, &str, Value) {
    (200, description, content("application/json", schema))
}

fn items(of: Value) -> Value {
    json!({"type": "object", "required": ["items"],
           "properties": {"items": {"type": "array", "items": of}}})
}

fn with_body(mut op: Value, media: &str, schema: Value) -> Value {
    op["requestBody"] = json!({"required": true, "content": content(media, schema)});
    op
}

/// The document for a hub with these configured sites and device kinds (the only values a
/// registration may name).
pub fn document(sites: &[String], kinds: &[String]) -> Value {
    let mut sc = Schemas::new();
    let finding_id = sc.path::<i64>("finding id (the `id` of a finding)");
    let device_id = sc.path::<DeviceId>("device id");
    let camera_id = sc.path::<CameraId>("camera id");
    let jpeg = content("image/jpeg", json!({"type": "string", "format": "binary"}));
    let finding = reference("Finding");
    let camera_view = reference("CameraView");

    let mut paths = Map::new();
    let mut put = |path: &str, method: &str, op: Value| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op;
    };
    let mut health =
        op("Liveness and database health", vec![], json_ok("healthy", reference("Health")), &[]);
    // 503 carries the same body as 200 (not the error body): it says what is degraded.
    health["responses"]["503"] = json!({"description": "degraded: the body names what is not ok",
        "content": content("application/json", reference("Health"))});
    put("/healthz", "get", health);
    put(
        "/metrics",
        "get",
        op(
            "Prometheus metrics (text format)",
            vec![],
            (200, "metrics", json!({"text/plain": {"schema": {"type": "string"}}})),
            &[],
        ),
    );
    put(
        "/api/v1/openapi.json",
        "get",
        op(
            "This document",
            vec![],
            json_ok("OpenAPI 3.1 document", json!({"type": "object"})),
            &[],
        ),
    );
    let page = json!({"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": finding.clone()},
        "next": {"type": ["string", "null"], "description": "cursor of the next page; null at the end"}}});
    put(
        "/api/v1/findings",
        "get",
        op(
            "List findings, newest first",
            sc.query::<FindingQuery>(),
            json_ok("a page of findings", page),
            &[400, 500, 503],
        ),
    );
    put(
        "/api/v1/findings/{id}",
        "get",
        op(
            "One finding",
            vec![finding_id.clone()],
            json_ok("the finding", finding.clone()),
            &[400, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/findings/{id}/acknowledge",
        "post",
        op(
            "Acknowledge an active finding",
            vec![finding_id.clone()],
            json_ok("the finding after the change", finding.clone()),
            &[400, 404, 409, 500, 503],
        ),
    );
    put(
        "/api/v1/findings/{id}/clear",
        "post",
        op(
            "Clear a finding; a repeat of its condition then opens a new one",
            vec![finding_id.clone()],
            json_ok("the finding after the change", finding.clone()),
            &[400, 404, 409, 500, 503],
        ),
    );
    put(
        "/api/v1/findings/{id}/verify",
        "post",
        with_body(
            op(
                "Verify a finding: true, ready to become a supervision record (acknowledges an \
                 active finding; a verdict is given once)",
                vec![finding_id.clone()],
                json_ok("the finding after the change", finding.clone()),
                &[400, 404, 409, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<super::VerifyBody>(),
        ),
    );
    put(
        "/api/v1/findings/{id}/dismiss",
        "post",
        with_body(
            op(
                "Dismiss a finding as a false positive, with a reason (clears it; a verdict \
                 is given once)",
                vec![finding_id.clone()],
                json_ok("the finding after the change", finding.clone()),
                &[400, 404, 409, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<super::DismissBody>(),
        ),
    );
    let mut params = vec![finding_id];
    params.extend(sc.query::<EvidenceQuery>());
    put(
        "/api/v1/findings/{id}/evidence",
        "get",
        op(
            "An evidence image of a video finding (JPEG)",
            params,
            (200, "the image", jpeg.clone()),
            &[400, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/devices",
        "get",
        op(
            "List devices with online state and last seen",
            sc.query::<DeviceQuery>(),
            json_ok("devices", items(reference("Device"))),
            &[400],
        ),
    );
    let new_device = sc.body::<NewDevice>();
    let registered = json!({"allOf": [reference("Device"), {"type": "object",
            "required": ["secret", "mqtt_username", "status_topic"],
            "properties": {"secret": {"type": "string", "description": "shown once"},
                           "mqtt_username": {"type": "string"}, "status_topic": {"type": "string"}}}]});
    put(
        "/api/v1/devices",
        "post",
        with_body(
            op(
                "Register a device; the response carries its secret, shown once",
                vec![],
                (201, "registered", content("application/json", registered)),
                &[400, 409, 413, 415, 500, 503],
            ),
            "application/json",
            new_device,
        ),
    );
    put(
        "/api/v1/devices/{id}",
        "get",
        op(
            "One device",
            vec![device_id.clone()],
            json_ok("the device", reference("Device")),
            &[404],
        ),
    );
    let mut remove = op(
        "Remove a device registered through the API (and its broker account)",
        vec![device_id.clone()],
        (204, "removed", Value::Null),
        &[404, 409, 500, 503],
    );
    remove["responses"]["204"] = json!({"description": "removed"});
    put("/api/v1/devices/{id}", "delete", remove);
    let mut params = vec![device_id];
    params.extend(sc.query::<ReadingQuery>());
    let readings = json!({"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": {"type": "object",
            "required": ["ts", "ts_ms", "received_at", "values"], "properties": {
            "ts": {"type": "string"}, "ts_ms": {"type": "integer"}, "received_at": {"type": "string"},
            "values": {"type": "object"}}}},
        "next": {"type": ["string", "null"],
            "description": "pass as `cursor` for the next page; null at the end"}}});
    put(
        "/api/v1/devices/{id}/readings",
        "get",
        op(
            "A device's readings, newest first",
            params,
            json_ok("readings", readings),
            &[400, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/sites",
        "get",
        op("Configured sites", vec![], json_ok("sites", items(json!({"type": "object"}))), &[]),
    );
    let models = json!({"type": "object", "required": ["items", "failed"], "properties": {
        "items": {"type": "array", "items": {"type": "object"}},
        "failed": {"type": "array", "items": {"type": "object"}}}});
    put(
        "/api/v1/models",
        "get",
        op("Loaded models and those that failed, by name", vec![], json_ok("models", models), &[]),
    );
    put(
        "/api/v1/cameras",
        "get",
        op(
            "Cameras with health and analysis counters",
            vec![],
            json_ok("cameras", items(camera_view.clone())),
            &[],
        ),
    );
    let camera = sc.body::<config::Camera>();
    put(
        "/api/v1/cameras",
        "post",
        with_body(
            op(
                "Add a camera (fields as in [[cameras]]); only it starts",
                vec![],
                (201, "added", content("application/json", camera_view.clone())),
                &[400, 409, 413, 415, 500, 503],
            ),
            "application/json",
            camera,
        ),
    );
    put(
        "/api/v1/cameras/{id}",
        "get",
        op(
            "One camera",
            vec![camera_id.clone()],
            json_ok("the camera", camera_view.clone()),
            &[404],
        ),
    );
    put(
        "/api/v1/cameras/{id}",
        "patch",
        with_body(
            op(
                "Change an API camera (JSON merge patch, RFC 7396); only it restarts",
                vec![camera_id.clone()],
                json_ok("the camera after the change", camera_view.clone()),
                &[400, 404, 409, 413, 415, 500, 503],
            ),
            "application/merge-patch+json",
            reference("CameraPatch"),
        ),
    );
    let mut delete = op(
        "Remove an API camera",
        vec![camera_id.clone()],
        (204, "removed", Value::Null),
        &[404, 409, 500, 503],
    );
    delete["responses"]["204"] = json!({"description": "removed"});
    put("/api/v1/cameras/{id}", "delete", delete);
    put(
        "/api/v1/cameras/{id}/snapshot",
        "get",
        op(
            "The camera's latest decoded frame (JPEG)",
            vec![camera_id],
            (200, "the frame", jpeg),
            &[404, 409, 500],
        ),
    );
    put(
        "/api/v1/cameras/{id}/live",
        "get",
        op(
            "The camera's live video as fragmented MP4 over a WebSocket (upgrade required): \
             an init message and segment, then one binary fragment per access unit; \
             {\"type\":\"dropped\",\"frames\":N} when the viewer fell behind",
            vec![sc.path::<CameraId>("camera id")],
            (101, "switching to the WebSocket", Value::Null),
            &[400, 404],
        ),
    );
    let reload = json!({"type": "object", "required": ["cameras"], "properties": {"cameras": {
        "type": "object", "required": ["added", "changed", "removed"], "properties": {
            "added": {"type": "array", "items": {"type": "string"}},
            "changed": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}}}}}});
    put(
        "/api/v1/config/reload",
        "post",
        op(
            "Re-read the configuration file and apply its cameras",
            vec![],
            json_ok("what changed", reload),
            &[400, 409, 500, 503],
        ),
    );

    access_operations(&mut sc, &mut put);
    record_operations(&mut sc, &mut put);

    // Defines `#/components/schemas/Error`, which every error response names.
    sc.body::<ErrorBody>();
    let mut schemas = sc.generator.take_definitions(true);
    // The configuration decides which sites and kinds exist: the document names them.
    if let Some(nd) = schemas.get_mut("NewDevice") {
        nd["properties"]["site_id"]["enum"] = json!(sites);
        nd["properties"]["kind"]["enum"] = json!(kinds);
    }
    if let Some(c) = schemas.get_mut("Camera") {
        c["properties"]["site"] = json!({"type": "string", "enum": sites});
    }
    let camera = schemas.get("Camera").cloned().unwrap_or_else(|| json!({"type": "object"}));
    schemas.insert("CameraPatch".into(), camera_patch(&camera));
    schemas.insert("CameraView".into(), camera_view_schema(&camera));
    schemas.insert("Finding".into(), finding_schema());
    schemas.insert("Record".into(), record_schema());
    schemas.insert("Subscription".into(), subscription_schema());
    schemas.insert("Device".into(), device_schema());
    schemas.insert("Health".into(), health_schema());
    let mut paths = Value::Object(paths);
    secure(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Supervision hub API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Findings, devices, readings and cameras of the non-site supervision \
                hub. Times in responses are RFC 3339 UTC. Every error answers the Error schema \
                {\"error\":{\"status\",\"message\"}}; unknown query parameters and body fields \
                are refused with 400."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                    "description": "a login session (POST /api/v1/session); mutations also need \
                        the session's csrf_token in the X-CSRF-Token header"},
                "token": {"type": "http", "scheme": "bearer",
                    "description": "an API token (hubt_…) of a department, integrator or admin"}
            }
        }
    })
}

/// The operations of sessions, administration and the live stream.
fn access_operations(sc: &mut Schemas, put: &mut impl FnMut(&str, &str, Value)) {
    let who = json!({"type": "object", "required": ["kind", "name", "roles", "permissions"],
        "properties": {"kind": {"enum": ["user", "token"]}, "name": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "department": {}, "integrator": {}, "csrf_token": {"type": ["string", "null"]},
            "expires_at": {"type": "string"},
            "permissions": {"type": "array", "items": {"type": "string"},
                "description": "`METHOD path` of every operation the caller may call"}}});
    put(
        "/api/v1/session",
        "post",
        with_body(
            op(
                "Log in: sets the session cookie (HttpOnly, SameSite=Lax) and returns the CSRF token",
                vec![],
                json_ok("logged in", who.clone()),
                &[400, 401, 413, 415, 429, 500, 503],
            ),
            "application/json",
            sc.body::<Login>(),
        ),
    );
    put(
        "/api/v1/session",
        "get",
        op("Who am I, and what may I do", vec![], json_ok("the caller", who), &[500, 503]),
    );
    let mut out = op(
        "Log out: the session ends at once",
        vec![],
        (204, "logged out", Value::Null),
        &[400, 500, 503],
    );
    out["responses"]["204"] = json!({"description": "logged out"});
    put("/api/v1/session", "delete", out);
    let mut pw = with_body(
        op(
            "Change my password; my other sessions end",
            vec![],
            (204, "changed", Value::Null),
            &[400, 413, 415, 500, 503],
        ),
        "application/json",
        sc.body::<PasswordChange>(),
    );
    pw["responses"]["204"] = json!({"description": "changed"});
    put("/api/v1/session/password", "post", pw);
    put(
        "/api/v1/findings/stream",
        "get",
        op(
            "Finding changes as server-sent events (event `finding`, data as GET \
             /api/v1/findings/{id}; event `lagged` when changes were missed: reload the list), \
             within the caller's scope; `Last-Event-ID` resumes; refused cross-origin",
            vec![json!({"name": "Last-Event-ID", "in": "header", "required": false,
                "description": "the id of the last event received (resume)",
                "schema": {"type": "string", "pattern": "^-?[0-9]{1,19}$"}})],
            (200, "the stream", json!({"text/event-stream": {"schema": {"type": "string"}}})),
            &[400],
        ),
    );
    let obj = json!({"type": "object"});
    put(
        "/api/v1/departments",
        "get",
        op("Departments", vec![], json_ok("departments", items(obj.clone())), &[500, 503]),
    );
    put(
        "/api/v1/departments",
        "post",
        with_body(
            op(
                "Add a department",
                vec![],
                (201, "added", content("application/json", obj.clone())),
                &[400, 409, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<NewDepartment>(),
        ),
    );
    put(
        "/api/v1/users",
        "get",
        op("Users", vec![], json_ok("users", items(obj.clone())), &[500, 503]),
    );
    put(
        "/api/v1/users",
        "post",
        with_body(
            op(
                "Add a user",
                vec![],
                (201, "added", content("application/json", obj.clone())),
                &[400, 409, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<NewUser>(),
        ),
    );
    let username = json!({"name": "id", "in": "path", "required": true,
        "description": "the username", "schema": {"type": "string"}});
    put(
        "/api/v1/users/{id}",
        "patch",
        with_body(
            op(
                "Change a user's roles, department, password or disabled flag (sessions end when \
         disabled or on a new password)",
                vec![username],
                json_ok("the user after the change", obj.clone()),
                &[400, 404, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<UserChange>(),
        ),
    );
    put(
        "/api/v1/tokens",
        "get",
        op(
            "API tokens (never the tokens themselves)",
            vec![],
            json_ok("tokens", items(obj.clone())),
            &[500, 503],
        ),
    );
    let created = json!({"type": "object", "required": ["id", "token"], "properties": {
        "id": {"type": "integer"}, "token": {"type": "string", "description": "shown once"}}});
    put(
        "/api/v1/tokens",
        "post",
        with_body(
            op(
                "Create an API token; the answer shows it once",
                vec![],
                (201, "created", content("application/json", created)),
                &[400, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<NewToken>(),
        ),
    );
    let token_id = sc.path::<i64>("token id");
    let mut revoke = op(
        "Revoke an API token",
        vec![token_id],
        (204, "revoked", Value::Null),
        &[400, 404, 409, 500, 503],
    );
    revoke["responses"]["204"] = json!({"description": "revoked"});
    put("/api/v1/tokens/{id}", "delete", revoke);
    let page = json!({"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": {"type": "object", "required":
            ["id", "at", "actor", "address", "action", "target"]}},
        "next": {"type": ["string", "null"]}}});
    put(
        "/api/v1/audit",
        "get",
        op(
            "The audit log, newest first",
            sc.query::<AuditQuery>(),
            json_ok("a page of the log", page),
            &[400, 500, 503],
        ),
    );
}

/// Each operation's security and roles, from the router's table; 401 and 403 where they can
/// be answered.
fn secure(paths: &mut Value) {
    for (method, path, access) in super::route_table() {
        let Some(op) = paths.get_mut(path).and_then(|p| p.get_mut(method)) else { continue };
        let roles: Vec<&str> = access.roles().iter().map(|r| r.as_str()).collect();
        match access {
            Access::Public => {
                op["security"] = json!([]);
            }
            _ => {
                // Logging out and changing one's password are a session's, not a token's.
                let session_only = path.starts_with("/api/v1/session") && method != "get";
                op["security"] = if session_only {
                    json!([{"session": []}])
                } else {
                    json!([{"session": []}, {"token": []}])
                };
                op["x-roles"] = json!(roles);
                let d = op["description"].as_str().unwrap_or_default().to_owned();
                op["description"] =
                    json!(format!("{d}Roles: {}.", roles.join(", ")).trim().to_owned());
                for status in [401, 403] {
                    op["responses"][status.to_string()] = error_response(status);
                }
            }
        }
    }
}

/// A merge patch of a camera: any of its fields, `null` removing one (back to its default).
fn camera_patch(camera: &Value) -> Value {
    let mut props = Map::new();
    for (k, v) in camera["properties"].as_object().into_iter().flatten() {
        props.insert(k.clone(), json!({"anyOf": [v, {"type": "null"}]}));
    }
    json!({"type": "object", "additionalProperties": false, "properties": props,
           "description": "fields of Camera; `id`, when present, must be the camera's own"})
}

/// A camera as the API shows it: its fields (the password of `url` shown as `***`), where it
/// comes from, and its health and analysis counters.
fn camera_view_schema(camera: &Value) -> Value {
    let mut v = camera.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("additionalProperties");
        o.remove("description");
    }
    let count = json!({"type": "integer", "minimum": 0});
    let extra = json!({
        "source": {"enum": ["config", "api"]},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        "snapshot_url": {"type": "string"},
        "health": {"type": "object", "required": ["state"], "properties": {
            "state": {"type": "string"}, "input_fps": {"type": "number"},
            "bitrate": {"type": "number"}, "frames_in": count, "keyframes_in": count,
            "frames_decoded": count, "frames_dropped": count,
            "last_keyframe_at": {"type": ["string", "null"]},
            "last_error": {"type": ["string", "null"]}, "reconnects": count}},
        "viewers": {"type": "integer", "minimum": 0,
            "description": "live viewers now; they share one pull"},
        "pull": {"type": "object", "required": ["mode", "active", "since"], "properties": {
            "mode": {"enum": ["always", "on_demand"]}, "active": {"type": "boolean"},
            "since": {"type": "integer", "description": "when the pull last started or stopped (Unix ms)"},
            "stops_at": {"type": ["integer", "null"],
                "description": "an on-demand pull nobody watches stops then (Unix ms)"}}},
        "stats": {"type": "object", "properties": {
            "frames_analysed": count, "frames_still": count, "firings": count,
            "analysis_error": {"type": ["string", "null"]}}}
    });
    for (k, s) in extra.as_object().into_iter().flatten() {
        v["properties"][k] = s.clone();
    }
    v["required"] = json!(["id", "site", "url", "source", "health", "stats", "snapshot_url"]);
    v
}

fn finding_schema() -> Value {
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    json!({"type": "object", "required": ["id", "site_id", "rule", "kind", "severity", "state",
        "first_seen", "last_seen", "count", "summary"],
        "properties": {
            "id": {"type": "integer"}, "site_id": text, "device_id": opt_text,
            "camera_id": opt_text, "rule": text, "kind": text,
            "severity": {"$ref": "#/components/schemas/Severity"},
            "state": {"enum": FindingState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
            "item_code": opt_text, "region": opt_text, "summary": text,
            "first_seen": text, "last_seen": text, "count": {"type": "integer"},
            "last_value": {"type": ["number", "null"]}, "details": {},
            "acknowledged_at": opt_text, "cleared_at": opt_text, "updated_at": text,
            "verdict": {"enum": Verdict::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()}, "verdict_reason": opt_text,
            "verdict_note": opt_text, "verdict_by": opt_text, "verdict_at": opt_text,
            "record_id": {"type": ["integer", "null"]},
            "evidence": {"type": "array", "items": {"type": "object",
                "required": ["id", "captured_at", "annotated_url", "frame_url"],
                "properties": {"id": {"type": "integer"}, "captured_at": text,
                    // null when the images could not be written; `missing` says why.
                    "annotated_url": opt_text, "frame_url": opt_text, "detections": {},
                    "missing": opt_text}}}}})
}

fn device_schema() -> Value {
    let text = json!({"type": "string"});
    json!({"type": "object",
        "required": ["id", "site_id", "kind", "online", "source", "created_at", "telemetry_topic"],
        "properties": {
            "id": text, "site_id": text, "kind": text, "name": text,
            "online": {"type": "boolean"}, "last_seen": {"type": ["string", "null"]},
            "source": {"enum": ["config", "api"]}, "created_at": text, "telemetry_topic": text}})
}

fn health_schema() -> Value {
    json!({"type": "object", "required": ["status"],
           "properties": {"status": {"enum": ["ok", "degraded"]}},
           "description": "status, and what each part (database, mqtt, tasks) says"})
}

fn record_schema() -> Value {
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    let states: Vec<&str> = common::RecordState::ALL.iter().map(|s| s.as_str()).collect();
    json!({"type": "object",
        "required": ["id", "number", "state", "item_code", "site_id", "entity", "severity",
            "region", "candidates", "claim_due_at", "close_due_at", "deadline", "cursor"],
        "properties": {
            "id": {"type": "integer"}, "number": text, "state": {"enum": states},
            "item_code": text, "item_name": text, "severity": text, "industry": text,
            "region": text, "site_id": text, "site_name": opt_text,
            "entity": {"type": "object", "required": ["name", "uscc"], "properties": {
                "name": text, "uscc": text, "address": opt_text, "risk_grade": opt_text}},
            "summary": text, "finding_ids": {"type": "array", "items": {"type": "integer"}},
            "occurrences": {"type": "integer"}, "first_seen": text, "last_seen": text,
            "evidence": {"type": "object"},
            "candidates": {"type": "array", "items": text},
            "department_id": opt_text, "assignee": opt_text, "result": {}, "feedback": {},
            "claim_due_at": text, "close_due_at": text,
            "deadline": {"enum": ["ok", "claim_overdue", "close_overdue", "met", "late"]},
            "escalation": {"type": ["object", "null"]},
            "created_at": text, "created_by": text, "updated_at": text, "closed_at": opt_text,
            "cursor": text,
            "timeline": {"type": "array", "items": {"type": "object",
                "required": ["id", "action", "to", "actor", "at"],
                "properties": {"id": {"type": "integer"}, "action": text, "from": opt_text,
                    "to": text, "actor": text, "at": text, "note": opt_text, "data": {},
                    "attachments": {"type": "array"}}}},
            "attachments": {"type": "array"},
            "allowed": {"type": "array", "items": text}}})
}

fn subscription_schema() -> Value {
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    json!({"type": "object",
        "required": ["id", "department_id", "name", "url", "transport", "filters", "enabled",
            "pending", "delivered", "failed", "keys"],
        "properties": {"id": {"type": "integer"}, "department_id": text, "name": text,
            "url": {"type": "string", "description": "the webhook endpoint; empty for mqtt"},
            "transport": {"enum": common::Transport::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()}, "filters": {"type": "object"},
            "mqtt": {"type": ["object", "null"], "description": "mqtt only (null for webhooks): how the department's system reads the events",
                "required": ["username", "topic"],
                "properties": {"username": text, "topic": text}},
            "enabled": {"type": "boolean"}, "disabled_reason": opt_text, "disabled_at": opt_text,
            "failing_since": opt_text, "last_success_at": opt_text,
            "pending": {"type": "integer"}, "delivered": {"type": "integer"},
            "failed": {"type": "integer"}, "created_at": text, "created_by": text,
            "keys": {"type": "array"},
            "secret": {"type": "string", "description": "webhook only, shown once: on creation and rotation"}}})
}

/// Supervision records, the catalogue, entities, notices and subscriptions.
fn record_operations(sc: &mut Schemas, put: &mut impl FnMut(&str, &str, Value)) {
    use super::records::{
        AssignBody, DistributeBody, EventQuery, ExportQuery, FeedbackBody, NoteBody,
        RecordFromFinding, RecordQuery, RequiredNoteBody, ResultBody, UploadQuery,
    };
    use super::subscriptions::{DeliveryQuery, NewSubscription, ReplayBody, SubscriptionChange};
    let record = reference("Record");
    let sub = reference("Subscription");
    let record_id = sc.path::<i64>("record id");
    let sub_id = sc.path::<i64>("subscription id");
    let any_items = items(json!({"type": "object"}));
    let problems = json!({"type": "object", "required": ["imported"], "properties": {
        "imported": {"type": "integer"}}});
    let file = |csv: bool| {
        let mut c =
            json!({"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}});
        if csv {
            c["text/csv"] = json!({"schema": {"type": "string"}});
        }
        json!({"required": true, "content": c})
    };
    put(
        "/api/v1/catalogue",
        "get",
        op(
            "The supervision item catalogue",
            vec![],
            json_ok("the items", any_items.clone()),
            &[500, 503],
        ),
    );
    let mut imp = op(
        "Import catalogue entries (CSV or JSON): all rows or none; 400 lists every bad row",
        vec![],
        json_ok("imported", problems.clone()),
        &[400, 413, 415, 500, 503],
    );
    imp["requestBody"] = file(true);
    put("/api/v1/catalogue", "post", imp);
    put(
        "/api/v1/entities",
        "get",
        op(
            "Regulated entities within the caller's scope",
            vec![],
            json_ok("the entities", any_items.clone()),
            &[500, 503],
        ),
    );
    let mut imp = op(
        "Import regulated entities (CSV or JSON; USCC checked by GB 32100): all rows or none",
        vec![],
        json_ok("imported", problems),
        &[400, 413, 415, 500, 503],
    );
    imp["requestBody"] = file(true);
    put("/api/v1/entities", "post", imp);
    put("/api/v1/findings/{id}/record", "post", with_body(
        op("Make a supervision record of a verified finding (or attach it to its key's open record)",
            vec![sc.path::<i64>("finding id")],
            (201, "a new record", content("application/json", record.clone())),
            &[400, 404, 409, 413, 415, 500, 503])
        .tap(|o| o["responses"]["200"] = json!({"description": "the open record it belongs to",
            "content": content("application/json", record.clone())})),
        "application/json", sc.body::<RecordFromFinding>()));
    let page = json!({"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": record.clone()},
        "next": {"type": ["string", "null"], "description": "cursor: pass as after (pull) or cursor (newest first)"}}});
    put(
        "/api/v1/records",
        "get",
        op(
            "Records: newest first (filters, cursor), or changed after a cursor in commit order (after)",
            sc.query::<RecordQuery>(),
            json_ok("a page of records", page),
            &[400, 500, 503],
        ),
    );
    let events = json!({"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": {"type": "object"}}, "next": {"type": "string"}}});
    put(
        "/api/v1/records/events",
        "get",
        op(
            "Record events (CloudEvents) in commit order after a cursor",
            sc.query::<EventQuery>(),
            json_ok("events", events),
            &[400, 500, 503],
        ),
    );
    put(
        "/api/v1/records/export",
        "get",
        op(
            "Records changed after a cursor as CSV (format=exchange adds the control columns); the next cursor in x-next-cursor",
            sc.query::<ExportQuery>(),
            (200, "CSV", json!({"text/csv": {"schema": {"type": "string"}}})),
            &[400, 500, 503],
        ),
    );
    put(
        "/api/v1/records/{id}",
        "get",
        op(
            "One record with its timeline",
            vec![record_id.clone()],
            json_ok("the record", record.clone()),
            &[400, 404, 500, 503],
        ),
    );
    let action = |sc: &mut Schemas, summary: &str, body: Value| {
        let _ = sc;
        with_body(
            op(
                summary,
                vec![record_id.clone()],
                json_ok("the record after the step", record.clone()),
                &[400, 403, 404, 409, 413, 500, 503],
            ),
            "application/json",
            body,
        )
    };
    let b = sc.body::<DistributeBody>();
    put(
        "/api/v1/records/{id}/distribute",
        "post",
        action(sc, "Send a new or returned record to departments", b),
    );
    let b = sc.body::<NoteBody>();
    put(
        "/api/v1/records/{id}/claim",
        "post",
        action(sc, "Claim a distributed record (a candidate department)", b.clone()),
    );
    put("/api/v1/records/{id}/close", "post", action(sc, "Close a fed-back record", b));
    let b = sc.body::<AssignBody>();
    put(
        "/api/v1/records/{id}/assign",
        "post",
        action(sc, "Assign a claimed record to a person", b),
    );
    let b = sc.body::<ResultBody>();
    put("/api/v1/records/{id}/result", "post", action(sc, "Enter the handling's result", b));
    let b = sc.body::<FeedbackBody>();
    put(
        "/api/v1/records/{id}/feedback",
        "post",
        action(sc, "Feed back (an inspection, penalty or coercion record)", b),
    );
    let b = sc.body::<RequiredNoteBody>();
    put("/api/v1/records/{id}/reopen", "post", action(sc, "Reopen a closed record", b.clone()));
    put(
        "/api/v1/records/{id}/return",
        "post",
        action(sc, "Return a record that is not the department's", b),
    );
    let mut params = vec![record_id.clone()];
    params.extend(sc.query::<UploadQuery>());
    let mut up = op(
        "Upload a result photo or file (JPEG, PNG, WebP, PDF; records.attachment_max_bytes)",
        params,
        (
            201,
            "stored",
            content(
                "application/json",
                json!({"type": "object",
            "required": ["id", "name", "content_type", "size", "url"]}),
            ),
        ),
        &[400, 403, 404, 413, 415, 500, 503],
    );
    // One list decides what an upload may be and what a download is served as.
    let files: Map<String, Value> = super::records::ATTACHMENT_TYPES
        .iter()
        .map(|t| (t.to_string(), json!({"schema": {"type": "string", "format": "binary"}})))
        .collect();
    up["requestBody"] = json!({"required": true, "content": files.clone()});
    put("/api/v1/records/{id}/attachments", "post", up);
    let aid = json!({"name": "aid", "in": "path", "required": true, "description": "attachment id",
        "schema": {"type": "integer", "format": "int64"}});
    put(
        "/api/v1/records/{id}/attachments/{aid}",
        "get",
        op(
            "An attachment's bytes",
            vec![record_id.clone(), aid],
            (200, "the file", Value::Object(files)),
            &[400, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/notices",
        "get",
        op(
            "Notices: escalations, failing and disabled endpoints",
            vec![],
            json_ok("notices", any_items.clone()),
            &[500, 503],
        ),
    );
    put(
        "/api/v1/subscriptions",
        "get",
        op(
            "The department's subscriptions",
            vec![],
            json_ok("subscriptions", items(sub.clone())),
            &[403, 500, 503],
        ),
    );
    put(
        "/api/v1/subscriptions",
        "post",
        with_body(
            op(
                "Subscribe an endpoint (Standard Webhooks; the answer carries the secret once) or the department's MQTT subscriber",
                vec![],
                (201, "subscribed", content("application/json", sub.clone())),
                &[400, 403, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<NewSubscription>(),
        ),
    );
    put(
        "/api/v1/subscriptions/{id}",
        "get",
        op(
            "One subscription",
            vec![sub_id.clone()],
            json_ok("the subscription", sub.clone()),
            &[400, 403, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/subscriptions/{id}",
        "patch",
        with_body(
            op(
                "Change or enable again a subscription",
                vec![sub_id.clone()],
                json_ok("the subscription", sub.clone()),
                &[400, 403, 404, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<SubscriptionChange>(),
        ),
    );
    let mut del = op(
        "Remove a subscription and its delivery log",
        vec![sub_id.clone()],
        (204, "removed", Value::Null),
        &[400, 403, 404, 500, 503],
    );
    del["responses"]["204"] = json!({"description": "removed"});
    put("/api/v1/subscriptions/{id}", "delete", del);
    put(
        "/api/v1/subscriptions/{id}/rotate",
        "post",
        op(
            "A new signing secret (shown once); the old one signs beside it for delivery.rotation_overlap",
            vec![sub_id.clone()],
            json_ok("the subscription with its new secret", sub.clone()),
            &[400, 403, 404, 500, 503],
        ),
    );
    let mut params = vec![sub_id.clone()];
    params.extend(sc.query::<DeliveryQuery>());
    put(
        "/api/v1/subscriptions/{id}/deliveries",
        "get",
        op(
            "The delivery log, newest first",
            params,
            json_ok("deliveries with their attempts", any_items),
            &[400, 403, 404, 500, 503],
        ),
    );
    put(
        "/api/v1/subscriptions/{id}/replay",
        "post",
        with_body(
            op(
                "Send events again (same webhook-id): one, or those of a time range",
                vec![sub_id],
                json_ok(
                    "how many were queued",
                    json!({"type": "object", "required": ["queued"],
            "properties": {"queued": {"type": "integer"}}}),
                ),
                &[400, 403, 404, 413, 415, 500, 503],
            ),
            "application/json",
            sc.body::<ReplayBody>(),
        ),
    );
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Value {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(&["s1".into()], &["fridge".into()])
    }

    /// Every `$ref` names a schema of `components`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn document_is_structurally_valid_openapi_3_1() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
        let paths = d["paths"].as_object().expect("paths");
        for (path, item) in paths {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in item.as_object().expect("path item") {
                let at = format!("{method} {path}");
                assert!(op["security"].is_array(), "{at}: security");
                assert!(["get", "post", "patch", "delete"].contains(&method.as_str()), "{at}");
                let responses = op["responses"].as_object().expect(&at);
                assert!(!responses.is_empty(), "{at}: no responses");
                for (status, r) in responses {
                    let code: u16 = status.parse().unwrap_or_else(|_| panic!("{at}: {status}"));
                    assert!((100..600).contains(&code), "{at}: {status}");
                    assert!(r["description"].is_string(), "{at} {status}: description");
                }
                // Path templates and path parameters agree.
                let templated: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .collect();
                let params = op["parameters"].as_array().expect(&at);
                let in_path: Vec<&str> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(templated, in_path, "{at}");
                for p in params {
                    assert!(p["name"].is_string() && p["schema"].is_object(), "{at}: {p}");
                    assert!(
                        ["path", "query", "header"].contains(&p["in"].as_str().unwrap()),
                        "{at}"
                    );
                    if p["in"] == "path" {
                        assert_eq!(p["required"], true, "{at}: path parameters are required");
                    }
                }
            }
        }
        let mut all = Vec::new();
        refs(&d, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(d["components"]["schemas"][name].is_object(), "{r} is not defined");
        }
    }

    #[test]
    fn every_route_is_documented_and_every_documented_path_routed() {
        let routed: Vec<(&str, &str)> =
            super::super::route_table().into_iter().map(|(m, p, _)| (m, p)).collect();
        let d = doc();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in d["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> =
            routed.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        routed.sort();
        assert_eq!(documented, routed, "documented operations differ from routed ones");
    }

    #[test]
    fn request_schemas_follow_the_handler_types() {
        let d = doc();
        let s = &d["components"]["schemas"];
        // deny_unknown_fields on the types becomes additionalProperties: false.
        assert_eq!(s["NewDevice"]["additionalProperties"], false, "{}", s["NewDevice"]);
        assert_eq!(s["Camera"]["additionalProperties"], false);
        assert_eq!(s["NewDevice"]["properties"]["site_id"]["enum"], json!(["s1"]));
        let findings = &d["paths"]["/api/v1/findings"]["get"]["parameters"];
        let limit = findings.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
        assert_eq!(limit["schema"]["maximum"], super::super::FINDINGS_LIMIT_MAX, "{limit}");
        let id = &d["paths"]["/api/v1/findings/{id}"]["get"]["parameters"][0];
        assert_eq!(id["schema"]["type"], "integer", "{id}");
        let readings = &d["paths"]["/api/v1/devices/{id}/readings"]["get"]["parameters"];
        let limit = readings.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], super::super::READINGS_LIMIT_MAX, "{limit}");
        let post = &d["paths"]["/api/v1/devices"]["post"]["responses"];
        for status in ["201", "400", "409"] {
            assert!(post[status].is_object(), "POST /api/v1/devices answers {status}");
        }
    }

    #[test]
    fn list_pattern_matches_comma_lists_only() {
        assert_eq!(list_pattern(&["a", "b"]), "^(a|b)(,(a|b))*$");
    }
}
