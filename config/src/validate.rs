//! Deserialization that keeps going after the first bad item, and the semantic checks.

use std::collections::{BTreeMap, HashSet};

use common::codes::CodeError;
use common::{ItemCode, RegionCode, Uscc};
use serde::de::DeserializeOwned;

use crate::schema::*;
use crate::{Problem, locate};

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { path: path.into(), position: None, message: message.into() }
}

/// Turns a `toml` error message into a path suffix when it names a field (`unknown field `x``,
/// `missing field `x``), so the position can point at the line.
fn field_in_message(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    let field = &msg[start..start + len];
    (msg.contains("unknown field") && !field.is_empty()).then_some(field)
}

fn de_item<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match T::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.message().trim().to_owned();
            let path = match field_in_message(&msg) {
                Some(f) => format!("{path}.{f}"),
                None => path.to_owned(),
            };
            let mut p = problem(path, msg);
            locate::fill_position(text, &mut p);
            problems.push(p);
            None
        }
    }
}

/// Parses the document, then deserializes each section and each array element separately so
/// that one bad device does not hide the problems of the next.
pub(crate) fn deserialize_all(text: &str) -> Result<Config, Vec<Problem>> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let position = e.span().map(|s| locate::line_col(text, s.start));
            return Err(vec![Problem {
                path: String::new(),
                position,
                message: e.message().trim().to_owned(),
            }]);
        }
    };
    let mut problems = Vec::new();
    let mut config = Config::default();
    for (key, value) in table {
        let p = &mut problems;
        match key.as_str() {
            "data_dir" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.data_dir = v;
                }
            }
            "http" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.http = v;
                }
            }
            "database" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.database = v;
                }
            }
            "mqtt" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.mqtt = v;
                }
            }
            "pipeline" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.pipeline = v;
                }
            }
            "models" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.models = v;
                }
            }
            "device_kinds" => match value {
                toml::Value::Table(t) => {
                    for (name, v) in t {
                        if let Some(v) = de_item(v, &format!("device_kinds.{name}"), text, p) {
                            config.device_kinds.insert(name, v);
                        }
                    }
                }
                _ => p.push(problem(key, "must be a table of device kinds")),
            },
            "sites" => config.sites = de_array(value, &key, text, p),
            "devices" => config.devices = de_array(value, &key, text, p),
            "rules" => config.rules = de_array(value, &key, text, p),
            "outputs" => config.outputs = de_array(value, &key, text, p),
            "cameras" => config.cameras = de_array(value, &key, text, p),
            "vision" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.vision = v;
                }
            }
            "records" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.records = v;
                }
            }
            "delivery" => {
                if let Some(v) = de_item(value, &key, text, p) {
                    config.delivery = v;
                }
            }
            other => {
                let mut pr = problem(
                    other,
                    "unknown section; expected one of data_dir, http, database, mqtt, pipeline, \
                     models, sites, device_kinds, devices, rules, outputs, vision, cameras, records, \
                     delivery",
                );
                locate::fill_position(text, &mut pr);
                p.push(pr);
            }
        }
    }
    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

fn de_array<T: DeserializeOwned>(
    value: toml::Value,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| de_item(v, &format!("{key}[{i}]"), text, problems))
            .collect(),
        _ => {
            problems.push(problem(key, format!("must be an array of tables ([[{key}]])")));
            Vec::new()
        }
    }
}

fn code_problem(path: String, what: &str, r: Result<(), CodeError>, out: &mut Vec<Problem>) {
    if let Err(e) = r {
        out.push(problem(path, format!("not a valid {what}: {e}")));
    }
}

fn check_unique<'a>(
    ids: impl Iterator<Item = &'a str>,
    section: &str,
    out: &mut Vec<Problem>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            out.push(problem(format!("{section}[{i}].id"), format!("duplicate id {id:?}")));
        }
    }
    seen
}

impl Config {
    /// Every semantic problem of the configuration; empty when it is valid.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.validate_endpoints(&mut out);
        let sites = check_unique(self.sites.iter().map(|s| s.id.as_str()), "sites", &mut out);
        for (i, s) in self.sites.iter().enumerate() {
            code_problem(
                format!("sites[{i}].region"),
                "region code (6 digits, GB/T 2260)",
                RegionCode::new(&s.region).map(drop),
                &mut out,
            );
            code_problem(
                format!("sites[{i}].uscc"),
                "unified social credit code (GB 32100)",
                Uscc::new(&s.uscc).map(drop),
                &mut out,
            );
            if s.name.trim().is_empty() {
                out.push(problem(format!("sites[{i}].name"), "must not be empty"));
            }
            if s.entity_name.trim().is_empty() {
                out.push(problem(format!("sites[{i}].entity_name"), "must not be empty"));
            }
        }
        for (name, k) in &self.device_kinds {
            if k.inactivity_timeout.is_zero() {
                out.push(problem(
                    format!("device_kinds.{name}.inactivity_timeout"),
                    "must be longer than 0 (e.g. \"5m\")",
                ));
            }
            if let Some(code) = &k.offline_item_code {
                code_problem(
                    format!("device_kinds.{name}.offline_item_code"),
                    "supervision item code (14 digits)",
                    ItemCode::new(code).map(drop),
                    &mut out,
                );
            }
        }
        check_unique(self.devices.iter().map(|d| d.id.as_str()), "devices", &mut out);
        for (i, d) in self.devices.iter().enumerate() {
            if !sites.contains(d.site.as_str()) {
                out.push(problem(
                    format!("devices[{i}].site"),
                    format!("no site with id {:?} is configured in [[sites]]", d.site.as_str()),
                ));
            }
            self.check_kind(&d.kind, format!("devices[{i}].kind"), &mut out);
            if let Err(e) = argon2::PasswordHash::new(&d.secret_hash) {
                out.push(problem(
                    format!("devices[{i}].secret_hash"),
                    format!(
                        "not an argon2 PHC string ({e}); make one with `hub device hash-secret`"
                    ),
                ));
            }
        }
        check_unique(self.rules.iter().map(|r| r.id.as_str()), "rules", &mut out);
        for (i, r) in self.rules.iter().enumerate() {
            self.validate_rule(i, r, &mut out);
        }
        self.validate_vision(&mut out);
        check_unique(self.cameras.iter().map(|c| c.id.as_str()), "cameras", &mut out);
        for (i, c) in self.cameras.iter().enumerate() {
            out.extend(c.validate(&format!("cameras[{i}]")));
            if !sites.contains(c.site.as_str()) {
                out.push(problem(
                    format!("cameras[{i}].site"),
                    format!("no site with id {:?} is configured in [[sites]]", c.site.as_str()),
                ));
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if o.output_type == OutputType::Jsonl && o.path.is_none() {
                out.push(problem(format!("outputs[{i}].path"), "a jsonl output needs a path"));
            }
        }
        out
    }

    fn validate_endpoints(&self, out: &mut Vec<Problem>) {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://")) {
            out.push(problem(
                "database.url",
                format!("{url:?} is neither sqlite://PATH nor postgres://…"),
            ));
        }
        if self.database.max_connections == 0 {
            out.push(problem("database.max_connections", "must be at least 1"));
        }
        for (i, n) in self.http.camera_networks.iter().enumerate() {
            if n.parse::<ipnet::IpNet>().is_err() {
                out.push(problem(
                    format!("http.camera_networks[{i}]"),
                    format!("{n:?} is not an address range such as \"10.0.0.0/8\" or \"fc00::/7\""),
                ));
            }
        }
        for (i, n) in self.delivery.networks.iter().enumerate() {
            if n.parse::<ipnet::IpNet>().is_err() {
                out.push(problem(
                    format!("delivery.networks[{i}]"),
                    format!("{n:?} is not an address range such as \"10.0.0.0/8\" or \"fc00::/7\""),
                ));
            }
        }
        for (i, code) in self.records.auto_items.iter().enumerate() {
            if let Err(e) = common::ItemCode::new(code) {
                out.push(problem(format!("records.auto_items[{i}]"), format!("{code:?}: {e}")));
            }
        }
        if self.delivery.concurrency == 0 {
            out.push(problem("delivery.concurrency", "must be at least 1"));
        }
        if self.delivery.lease <= self.delivery.timeout {
            out.push(problem(
                "delivery.lease",
                "must be longer than delivery.timeout (a lease must outlive an attempt)",
            ));
        }
        if self.records.attachment_max_bytes < 1024 {
            out.push(problem("records.attachment_max_bytes", "must be at least 1024"));
        }
        for (name, d) in [
            ("records.deadline_check", self.records.deadline_check),
            ("delivery.timeout", self.delivery.timeout),
            ("delivery.poll", self.delivery.poll),
            ("http.session_idle", self.http.session_idle),
            ("http.session_lifetime", self.http.session_lifetime),
            ("http.login_window", self.http.login_window),
        ] {
            if d.is_zero() {
                out.push(problem(name, "must be longer than 0 (e.g. \"1h\")"));
            }
        }
        if self.http.max_body_bytes < 1024 {
            out.push(problem("http.max_body_bytes", "must be at least 1024"));
        }
        if self.mqtt.mode == MqttMode::External {
            match &self.mqtt.url {
                None => out.push(problem(
                    "mqtt.url",
                    "external mode needs the broker's url (mqtt://host:port) or HUB_MQTT_URL",
                )),
                Some(u) if !u.starts_with("mqtt://") => {
                    out.push(problem("mqtt.url", format!("{u:?} must start with mqtt://")))
                }
                Some(_) => {}
            }
        }
        if self.mqtt.dynsec_username.is_some() && self.mqtt.mode != MqttMode::External {
            out.push(problem(
                "mqtt.dynsec_username",
                "provisioning into Mosquitto's dynamic security is for mode = \"external\"; \
                 the embedded gateway authenticates devices itself",
            ));
        }
        if self.mqtt.max_payload < 64 {
            out.push(problem("mqtt.max_payload", "must be at least 64 bytes"));
        }
        let m = &self.mqtt;
        if m.max_connections == 0 || m.connection_burst == 0 {
            out.push(problem("mqtt", "max_connections and connection_burst must be at least 1"));
        }
        if !(m.connections_per_ip_per_second.is_finite() && m.connections_per_ip_per_second > 0.0) {
            out.push(problem("mqtt.connections_per_ip_per_second", "must be a number above 0"));
        }
        if m.login_failure_delay > m.login_failure_max_delay {
            out.push(problem(
                "mqtt.login_failure_delay",
                "must not exceed mqtt.login_failure_max_delay",
            ));
        }
        if self.pipeline.queue == 0 || self.pipeline.batch_max == 0 {
            out.push(problem("pipeline", "queue and batch_max must be at least 1"));
        }
        if self.pipeline.max_reading_age.is_zero() {
            out.push(problem(
                "pipeline.max_reading_age",
                "must be longer than 0 (e.g. \"7d\"), or every reading with a ts is refused",
            ));
        }
    }

    fn validate_vision(&self, out: &mut Vec<Problem>) {
        let v = &self.vision;
        for (name, n) in [
            ("queue", v.queue),
            ("workers", v.workers),
            ("sessions", v.sessions),
            ("threads", v.threads),
            ("batch", v.batch),
        ] {
            if n == 0 {
                out.push(problem(format!("vision.{name}"), "must be at least 1"));
            }
        }
        if let Err(e) = parse_utc_offset(&v.utc_offset) {
            out.push(problem("vision.utc_offset", e));
        }
        if v.evidence_retention.is_zero() {
            out.push(problem("vision.evidence_retention", "must be longer than 0 (e.g. \"90d\")"));
        }
        if !(1..=100).contains(&v.jpeg_quality) {
            out.push(problem("vision.jpeg_quality", "must be 1–100"));
        }
    }

    fn check_kind(&self, kind: &str, path: String, out: &mut Vec<Problem>) {
        if !self.device_kinds.contains_key(kind) {
            let known: Vec<&str> = self.device_kinds.keys().map(String::as_str).collect();
            out.push(problem(
                path,
                format!(
                    "unknown device kind {kind:?}; add [device_kinds.{kind}] or use one of: {}",
                    known.join(", ")
                ),
            ));
        }
    }

    fn validate_rule(&self, i: usize, r: &Rule, out: &mut Vec<Problem>) {
        let at = |f: &str| format!("rules[{i}].{f}");
        if r.id.trim().is_empty() || r.id.contains('/') {
            out.push(problem(at("id"), "must be non-empty and contain no '/'"));
        }
        if r.device_kinds.is_empty() {
            out.push(problem(at("device_kinds"), "name at least one device kind"));
        }
        for (j, k) in r.device_kinds.iter().enumerate() {
            self.check_kind(k, at(&format!("device_kinds[{j}]")), out);
        }
        code_problem(
            at("item_code"),
            "supervision item code (14 digits)",
            ItemCode::new(&r.item_code).map(drop),
            out,
        );
        // Which optional parameters each type needs (N) and allows (A).
        let params: BTreeMap<&str, bool> = [
            ("metric", r.metric.is_some()),
            ("above", r.above.is_some()),
            ("below", r.below.is_some()),
            ("for", r.hold.is_some()),
            ("max_per_minute", r.max_per_minute.is_some()),
            ("window", r.window.is_some()),
            ("tolerance", r.tolerance.is_some()),
            ("samples", r.samples.is_some()),
            ("z", r.z.is_some()),
            ("model", r.model.is_some()),
            ("every", r.every.is_some()),
        ]
        .into_iter()
        .collect();
        let (needed, allowed): (&[&str], &[&str]) = match r.rule_type {
            RuleType::Threshold => (&["metric"], &["above", "below", "for"]),
            RuleType::RateOfChange => (&["metric", "max_per_minute", "window"], &[]),
            RuleType::Flatline => (&["metric", "window"], &["tolerance"]),
            RuleType::Spike => (&["metric", "samples", "z"], &[]),
            RuleType::Model => (&["model"], &["every"]),
        };
        for (name, present) in &params {
            if needed.contains(name) && !present {
                out.push(problem(at(name), format!("required for a {:?} rule", r.rule_type)));
            }
            if *present && !needed.contains(name) && !allowed.contains(name) {
                out.push(problem(at(name), format!("not used by a {:?} rule", r.rule_type)));
            }
        }
        if r.rule_type == RuleType::Threshold && r.above.is_none() && r.below.is_none() {
            out.push(problem(at("above"), "a threshold rule needs `above`, `below` or both"));
        }
        if let (Some(a), Some(b)) = (r.above, r.below)
            && b > a
        {
            out.push(problem(at("below"), "`below` is larger than `above`: nothing is normal"));
        }
        if r.max_per_minute.is_some_and(|v| v <= 0.0) {
            out.push(problem(at("max_per_minute"), "must be positive"));
        }
        if r.window.is_some_and(|w| w.is_zero()) {
            out.push(problem(at("window"), "must be longer than 0"));
        }
        if r.samples.is_some_and(|n| n < 3) {
            out.push(problem(at("samples"), "must be at least 3"));
        }
        if r.z.is_some_and(|z| z <= 0.0) {
            out.push(problem(at("z"), "must be positive"));
        }
        if r.every == Some(0) {
            out.push(problem(at("every"), "must be at least 1"));
        }
    }
}

impl Camera {
    /// The problems of one camera on its own (its site is checked by the caller), with paths
    /// under `at` (e.g. `cameras[2]`). The API uses it for cameras added at run time.
    pub fn validate(&self, at: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let at = |f: &str| format!("{at}.{f}");
        if !self.url.starts_with("rtsp://") && !self.url.starts_with("rtsps://") {
            out.push(problem(at("url"), "must start with rtsp:// (rtsp://[user:pass@]host/path)"));
        } else if self.url.split("://").nth(1).is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            out.push(problem(at("url"), "names no host"));
        }
        if self.url.chars().any(|c| c.is_whitespace() || c == '"') {
            out.push(problem(at("url"), "must not contain spaces or quotes"));
        }
        match (self.analysis, self.fps) {
            (AnalysisMode::Fps, None | Some(0)) => {
                out.push(problem(at("fps"), "analysis = \"fps\" needs fps of at least 1"))
            }
            (AnalysisMode::Keyframes | AnalysisMode::Off, Some(_)) => {
                out.push(problem(at("fps"), "only used with analysis = \"fps\""))
            }
            _ => {}
        }
        if self.analysis == AnalysisMode::Off && !self.rules.is_empty() {
            out.push(problem(
                at("rules"),
                "a relay-only camera (analysis = \"off\") decodes nothing, so its rules never run",
            ));
        }
        let (second, ten_minutes) =
            (std::time::Duration::from_secs(1), std::time::Duration::from_secs(600));
        if self.offline_after < second {
            out.push(problem(at("offline_after"), "must be at least 1s (e.g. \"30s\")"));
        }
        if !(second / 2..=ten_minutes).contains(&self.stall_timeout) {
            out.push(problem(at("stall_timeout"), "must be 500ms–10m (e.g. \"10s\")"));
        }
        if self.motion_threshold.is_some_and(|t| !(0.0..=255.0).contains(&t)) {
            out.push(problem(at("motion_threshold"), "must be 0–255"));
        }
        let mut zones = HashSet::new();
        for (j, z) in self.zones.iter().enumerate() {
            let zp = |f: &str| at(&format!("zones[{j}].{f}"));
            if !zones.insert(z.name.as_str()) || z.name.trim().is_empty() {
                out.push(problem(zp("name"), format!("empty or duplicate zone name {:?}", z.name)));
            }
            if z.polygon.len() < 3 {
                out.push(problem(zp("polygon"), "needs at least three [x, y] points"));
            }
            if z.polygon.iter().flatten().any(|v| !(0.0..=1.0).contains(v)) {
                out.push(problem(
                    zp("polygon"),
                    "coordinates are normalised to the frame: each must be 0–1",
                ));
            }
        }
        let mut ids = HashSet::new();
        for (j, r) in self.rules.iter().enumerate() {
            let rp = |f: &str| at(&format!("rules[{j}].{f}"));
            if r.id.trim().is_empty() || r.id.contains('/') || !ids.insert(r.id.as_str()) {
                out.push(problem(rp("id"), "must be non-empty, unique in the camera, without '/'"));
            }
            if let Some(z) = &r.zone
                && !zones.contains(z.as_str())
            {
                out.push(problem(rp("zone"), format!("no zone {z:?} in this camera's zones")));
            }
            if !(0.0..=1.0).contains(&r.min_score) {
                out.push(problem(rp("min_score"), "must be 0–1"));
            }
            if r.min_count == 0 {
                out.push(problem(rp("min_count"), "must be at least 1"));
            }
            if r.dwell.is_some() && r.dwell_frames.is_some() {
                out.push(problem(rp("dwell_frames"), "give dwell or dwell_frames, not both"));
            }
            for (k, w) in r.time_windows.iter().enumerate() {
                if let Err(e) = TimeWindow::parse(w) {
                    out.push(problem(rp(&format!("time_windows[{k}]")), e));
                }
            }
            code_problem(
                rp("item_code"),
                "supervision item code (14 digits)",
                ItemCode::new(&r.item_code).map(drop),
                &mut out,
            );
        }
        out
    }
}
