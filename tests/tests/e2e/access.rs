//! Access control over real HTTP, on SQLite and PostgreSQL: every route × every role ×
//! in-scope and out-of-scope ids (the table comes from the router, so a new route without an
//! expectation here fails), tokens, sessions, CSRF, origin, throttling and the audit log.

use std::collections::BTreeSet;
use std::time::Duration;

use common::ManualClock;
use hub::StartOptions;
use hub::auth::Scope;
use hub::store::{Batch, EvidenceRow, FindingHit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{TestHub, client_with_token, config_with, create_token, wait_for};

/// Two sites in two cities and industries, each with a device, a camera and (written below)
/// a finding with evidence.
pub(crate) fn two_sites() -> String {
    r#"
[[sites]]
id = "xian-1"
name = "Xi'an cold store"
region = "610102"
industry = "food"
entity_name = "Xi'an Cold Co."
uscc = "91350100M000100Y43"
integrator = "integ-a"

[[sites]]
id = "xy-1"
name = "Xianyang yard"
region = "610402"
industry = "transport"
entity_name = "Xianyang Yard Co."
uscc = "9144030071526726XG"
integrator = "integ-b"

[[devices]]
id = "d-xian"
site = "xian-1"
kind = "fridge"
secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000"

[[devices]]
id = "d-xy"
site = "xy-1"
kind = "fridge"
secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000"

[[cameras]]
id = "c-xian"
site = "xian-1"
url = "rtsp://127.0.0.1:9/none"
analysis = "off"

[[cameras]]
id = "c-xy"
site = "xy-1"
url = "rtsp://127.0.0.1:9/none"
analysis = "off"
"#
    .into()
}

fn hit(site: &str, camera: &str, region: &str) -> FindingHit {
    FindingHit {
        dedup_key: format!("{site}|{camera}|r|k"),
        site_id: site.into(),
        device_id: None,
        camera_id: Some(camera.into()),
        rule: "r".into(),
        kind: "k".into(),
        severity: common::Severity::Major,
        item_code: None,
        region: Some(region.into()),
        summary: "test".into(),
        first_seen: 1,
        last_seen: 1,
        count: 1,
        last_value: None,
        details: "{}".into(),
        evidence: vec![EvidenceRow {
            captured_at: 1,
            frame_path: format!("{site}.jpg"),
            annotated_path: format!("{site}.jpg"),
            details: "[]".into(),
            missing: None,
        }],
    }
}

/// Who calls, and which site is theirs.
struct Who {
    name: &'static str,
    client: reqwest::Client,
    /// None: no credentials.
    roles: Option<Vec<&'static str>>,
    /// The site within scope (the other one is not), None for admins (both are).
    mine: Option<&'static str>,
}

pub(crate) struct World {
    pub(crate) th: TestHub,
    /// site → (finding id, device, camera)
    pub(crate) ids: std::collections::HashMap<&'static str, (i64, &'static str, &'static str)>,
    /// site → the record of its finding.
    pub(crate) records: std::collections::HashMap<&'static str, i64>,
    who: Vec<Who>,
}

/// The departments of [`two_sites`]: the province's duty room (both industries), Xi'an food
/// and Xianyang transport, made through the API.
pub(crate) async fn three_departments(th: &TestHub) -> anyhow::Result<()> {
    for (id, region, industries) in [
        ("duty", "610000", json!(["food", "transport"])),
        ("xian-food", "610100", json!(["food"])),
        ("xianyang-transport", "610400", json!(["transport"])),
    ] {
        admin_post(
            th,
            "/api/v1/departments",
            json!({"id": id, "name": id, "region": region,
            "industries": industries, "uscc": "91350100M000100Y43"}),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn admin_post(th: &TestHub, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = th.http.post(format!("{}{path}", th.base)).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {v}");
    Ok(v)
}

pub(crate) async fn world(cfg: config::Config) -> anyhow::Result<World> {
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let store = &th.hub.store;
    let batch = Batch {
        findings: vec![hit("xian-1", "c-xian", "610102"), hit("xy-1", "c-xy", "610402")],
        ..Default::default()
    };
    store.write_batch(&batch, 1).await?;
    let evidence = th.dir.join("evidence");
    std::fs::create_dir_all(&evidence)?;
    for site in ["xian-1", "xy-1"] {
        std::fs::write(evidence.join(format!("{site}.jpg")), b"\xff\xd8\xff\xd9")?;
    }
    let all = store
        .findings(&hub::store::FindingFilter { limit: 10, ..Default::default() }, &Scope::All)
        .await?;
    let id_of = |site: &str| all.iter().find(|f| f.site_id == site).map(|f| f.id).unwrap();
    let mut ids = std::collections::HashMap::new();
    ids.insert("xian-1", (id_of("xian-1"), "d-xian", "c-xian"));
    ids.insert("xy-1", (id_of("xy-1"), "d-xy", "c-xy"));
    three_departments(&th).await?;
    // Each site's finding is a record's, routed to the department of its item.
    let cat = "code,name,departments,industry,severity\n\
               61000000100002,cold chain,xian-food,food,major\n\
               61000000300002,overload,xianyang-transport,transport,major\n";
    let depts = store.departments().await?.into_iter().map(|d| d.id).collect();
    let items = hub::records::import::catalogue(cat, hub::records::import::Format::Csv, &depts)
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let setup = tests::setup_audit();
    store.import_catalogue(&items, &setup, 1).await?;
    let policy = hub::store::records::Policy::of(&config::Records::default());
    let mut records = std::collections::HashMap::new();
    for (site, item) in [("xian-1", "61000000100002"), ("xy-1", "61000000300002")] {
        let f = store.finding(ids[site].0, &Scope::All).await?.unwrap();
        let plan = store.plan_record(&f, Some(item), &policy).await?;
        let (r, _) = store.record_finding(&f, &plan, None, &setup, 1).await?;
        records.insert(site, r.id);
    }
    for u in ["integ-a", "integ-b"] {
        admin_post(
            &th,
            "/api/v1/users",
            json!({"username": u, "password": "integrator-pw-1",
            "roles": ["integrator"]}),
        )
        .await?;
    }
    let token = |roles: &'static [&'static str],
                 dept: Option<&'static str>,
                 integ: Option<&'static str>| {
        let store = th.hub.store.clone();
        async move { create_token(&store, roles, dept, integ).await }
    };
    let who = vec![
        Who { name: "anonymous", client: reqwest::Client::new(), roles: None, mine: None },
        Who { name: "admin", client: th.http.clone(), roles: Some(vec!["admin"]), mine: None },
        Who {
            name: "xian department",
            client: client_with_token(&token(&["department"], Some("xian-food"), None).await?),
            roles: Some(vec!["department"]),
            mine: Some("xian-1"),
        },
        Who {
            name: "xianyang department",
            client: client_with_token(
                &token(&["department"], Some("xianyang-transport"), None).await?,
            ),
            roles: Some(vec!["department"]),
            mine: Some("xy-1"),
        },
        Who {
            // A duty room for food only: the food site is its, the transport one is not.
            name: "food duty operator",
            client: client_with_token(&token(&["duty_operator"], Some("xian-food"), None).await?),
            roles: Some(vec!["duty_operator"]),
            mine: Some("xian-1"),
        },
        Who {
            name: "integrator b",
            client: client_with_token(&token(&["integrator"], None, Some("integ-b")).await?),
            roles: Some(vec!["integrator"]),
            mine: Some("xy-1"),
        },
    ];
    wait_for(Duration::from_secs(10), "/healthz green", || async {
        let r = reqwest::get(format!("{}/healthz", th.base)).await?;
        Ok((r.status() == StatusCode::OK).then_some(()))
    })
    .await?;
    Ok(World { th, ids, records, who })
}

/// What one request should answer.
enum Want {
    Is(u16),
    OneOf(&'static [u16]),
}

impl Want {
    fn ok(&self, s: u16) -> bool {
        match self {
            Want::Is(w) => s == *w,
            Want::OneOf(w) => w.contains(&s),
        }
    }
}

/// The request for `route` against `site`'s resources, and the answer owed to a principal
/// whose role admits the route: `inside` tells whether `site` is within its scope.
fn request(
    w: &World,
    method: &str,
    path: &str,
    site: &'static str,
    inside: bool,
    caller: &str,
) -> (String, Option<Value>, Want) {
    let (finding, device, camera) = w.ids[site];
    let record = w.records[site];
    let hidden = |ok: Want| if inside { ok } else { Want::Is(404) };
    let new_id = format!("new-{}-{}", caller.replace(' ', "-"), site);
    match (method, path) {
        ("get", "/healthz" | "/metrics" | "/api/v1/openapi.json" | "/api/v1/session") => {
            (path.into(), None, Want::Is(200))
        }
        ("post", "/api/v1/session") => (path.into(), None, Want::Is(415)),
        ("delete", "/api/v1/session") => (path.into(), None, Want::Is(400)),
        ("post", "/api/v1/session/password") => {
            (path.into(), Some(json!({"current": "x", "new": "y"})), Want::Is(400))
        }
        // Lists: 200; what they contain is checked below.
        ("get", "/api/v1/findings" | "/api/v1/cameras" | "/api/v1/devices" | "/api/v1/sites") => {
            (path.into(), None, Want::Is(200))
        }
        ("get", "/api/v1/models") => (path.into(), None, Want::Is(200)),
        ("get", "/api/v1/findings/stream") => (path.into(), None, Want::Is(200)),
        ("get", "/api/v1/findings/{id}") => {
            (format!("/api/v1/findings/{finding}"), None, hidden(Want::Is(200)))
        }
        ("post", "/api/v1/findings/{id}/acknowledge") => (
            format!("/api/v1/findings/{finding}/acknowledge"),
            None,
            hidden(Want::OneOf(&[200, 409])),
        ),
        ("post", "/api/v1/findings/{id}/clear") => {
            (format!("/api/v1/findings/{finding}/clear"), None, hidden(Want::OneOf(&[200, 409])))
        }
        // A verdict is given once: the first operator's is taken, later ones are 409.
        ("post", "/api/v1/findings/{id}/verify") => (
            format!("/api/v1/findings/{finding}/verify"),
            Some(json!({})),
            hidden(Want::OneOf(&[200, 409])),
        ),
        ("post", "/api/v1/findings/{id}/dismiss") => (
            format!("/api/v1/findings/{finding}/dismiss"),
            Some(json!({"reason": "duplicate"})),
            hidden(Want::OneOf(&[200, 409])),
        ),
        ("get", "/api/v1/findings/{id}/evidence") => {
            (format!("/api/v1/findings/{finding}/evidence"), None, hidden(Want::Is(200)))
        }
        ("post", "/api/v1/cameras") => (
            path.into(),
            Some(
                json!({"id": new_id, "site": site, "url": "rtsp://127.0.0.1:9/x", "analysis": "off"}),
            ),
            if inside { Want::Is(201) } else { Want::Is(400) },
        ),
        ("get", "/api/v1/cameras/{id}") => {
            (format!("/api/v1/cameras/{camera}"), None, hidden(Want::Is(200)))
        }
        // Cameras of the file: found (409: change the file), or hidden.
        ("patch", "/api/v1/cameras/{id}") => {
            (format!("/api/v1/cameras/{camera}"), Some(json!({})), hidden(Want::Is(409)))
        }
        ("delete", "/api/v1/cameras/{id}") => {
            (format!("/api/v1/cameras/{camera}"), None, hidden(Want::Is(409)))
        }
        // No frame yet: 409.
        ("get", "/api/v1/cameras/{id}/snapshot") => {
            (format!("/api/v1/cameras/{camera}/snapshot"), None, hidden(Want::Is(409)))
        }
        // Not a WebSocket upgrade: refused after the scope check (tests/e2e/live.rs opens it).
        ("get", "/api/v1/cameras/{id}/live") => {
            (format!("/api/v1/cameras/{camera}/live"), None, hidden(Want::Is(400)))
        }
        // Not started from a file.
        ("post", "/api/v1/config/reload") => (path.into(), None, Want::Is(409)),
        ("post", "/api/v1/devices") => (
            path.into(),
            Some(json!({"id": new_id, "site_id": site, "kind": "fridge"})),
            if inside { Want::Is(201) } else { Want::Is(400) },
        ),
        ("get", "/api/v1/devices/{id}") => {
            (format!("/api/v1/devices/{device}"), None, hidden(Want::Is(200)))
        }
        // Devices of the file: found (409), or hidden.
        ("delete", "/api/v1/devices/{id}") => {
            (format!("/api/v1/devices/{device}"), None, hidden(Want::Is(409)))
        }
        ("get", "/api/v1/devices/{id}/readings") => {
            (format!("/api/v1/devices/{device}/readings"), None, hidden(Want::Is(200)))
        }
        ("get", "/api/v1/departments" | "/api/v1/users" | "/api/v1/tokens" | "/api/v1/audit") => {
            (path.into(), None, Want::Is(200))
        }
        // Reach the handler, refused there for the body.
        ("post", "/api/v1/departments" | "/api/v1/users" | "/api/v1/tokens") => {
            (path.into(), Some(json!({})), Want::Is(400))
        }
        ("patch", "/api/v1/users/{id}") => {
            ("/api/v1/users/nobody".into(), Some(json!({})), Want::Is(404))
        }
        ("delete", "/api/v1/tokens/{id}") => ("/api/v1/tokens/999999".into(), None, Want::Is(404)),
        (
            "get",
            "/api/v1/catalogue"
            | "/api/v1/entities"
            | "/api/v1/records"
            | "/api/v1/notices"
            | "/api/v1/records/events"
            | "/api/v1/records/export"
            | "/api/v1/subscriptions",
        ) => (path.into(), None, Want::Is(200)),
        // Without a file's content type.
        ("post", "/api/v1/catalogue" | "/api/v1/entities") => (path.into(), None, Want::Is(415)),
        // Verified by then (the verify route comes first), and already a record's.
        ("post", "/api/v1/findings/{id}/record") => (
            format!("/api/v1/findings/{finding}/record"),
            Some(json!({})),
            hidden(Want::OneOf(&[200, 409])),
        ),
        ("get", "/api/v1/records/{id}") => {
            (format!("/api/v1/records/{record}"), None, hidden(Want::Is(200)))
        }
        // The step's own rules (its state, who holds it) decide among these; tests/e2e/records.rs
        // checks them one by one. Here: the route's role and the scope.
        ("post", p) if p.starts_with("/api/v1/records/{id}/") && !p.contains("attachments") => {
            let action = p.rsplit('/').next().unwrap();
            let body = match action {
                "distribute" => json!({"departments": ["xian-food"]}),
                "assign" => json!({"assignee": "Li"}),
                "result" => json!({"result": "done"}),
                "feedback" => json!({"kind": "inspection", "outcome": "ok",
                    "inspected_at": "2026-12-01T08:00:00Z", "reported_at": "2026-12-01T09:00:00Z",
                    "inspectors": [{"name": "Li", "certificate": "1"}], "reporter": "Wang"}),
                "reopen" | "return" => json!({"note": "why"}),
                _ => json!({}),
            };
            (
                format!("/api/v1/records/{record}/{action}"),
                Some(body),
                hidden(Want::OneOf(&[200, 403, 409])),
            )
        }
        // No Content-Type: refused after the scope check.
        ("post", "/api/v1/records/{id}/attachments") => (
            format!("/api/v1/records/{record}/attachments?name=x.png"),
            None,
            hidden(Want::Is(415)),
        ),
        ("get", "/api/v1/records/{id}/attachments/{aid}") => {
            (format!("/api/v1/records/{record}/attachments/999999"), None, Want::Is(404))
        }
        ("post", "/api/v1/subscriptions") => (path.into(), Some(json!({})), Want::Is(400)),
        ("get" | "delete", "/api/v1/subscriptions/{id}") => {
            ("/api/v1/subscriptions/999999".into(), None, Want::Is(404))
        }
        ("patch", "/api/v1/subscriptions/{id}") => {
            ("/api/v1/subscriptions/999999".into(), Some(json!({})), Want::Is(404))
        }
        ("post", "/api/v1/subscriptions/{id}/rotate") => {
            ("/api/v1/subscriptions/999999/rotate".into(), None, Want::Is(404))
        }
        ("get", "/api/v1/subscriptions/{id}/deliveries") => {
            ("/api/v1/subscriptions/999999/deliveries".into(), None, Want::Is(404))
        }
        ("post", "/api/v1/subscriptions/{id}/replay") => (
            "/api/v1/subscriptions/999999/replay".into(),
            Some(json!({"event_id": "evt_1"})),
            Want::Is(404),
        ),
        other => panic!("{other:?}: add the route to the access matrix"),
    }
}

/// The site ids a list answer shows.
fn sites_of(path: &str, v: &Value) -> BTreeSet<String> {
    let key = match path {
        "/api/v1/findings" | "/api/v1/devices" | "/api/v1/records" => "site_id",
        "/api/v1/cameras" => "site",
        "/api/v1/sites" => "id",
        _ => return BTreeSet::new(),
    };
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i[key].as_str().map(str::to_owned))
        .collect()
}

async fn matrix(cfg: config::Config) -> anyhow::Result<()> {
    let w = world(cfg).await?;
    let table = hub::api::route_table();
    let mut checked = 0;
    for (method, path, access) in &table {
        for who in &w.who {
            for site in ["xian-1", "xy-1"] {
                let inside = who.mine.is_none_or(|m| m == site);
                let (uri, body, want) = request(&w, method, path, site, inside, who.name);
                let want = match &who.roles {
                    _ if *access == hub::auth::Access::Public => want,
                    None => Want::Is(401),
                    Some(r) => {
                        let roles: Vec<hub::auth::Role> =
                            r.iter().map(|r| r.parse().unwrap()).collect();
                        if access.admits(&roles) { want } else { Want::Is(403) }
                    }
                };
                let m: Method = method.to_uppercase().parse()?;
                let mut req = who.client.request(m, format!("{}{uri}", w.th.base));
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let resp = req.timeout(Duration::from_secs(10)).send().await?;
                let status = resp.status().as_u16();
                // The event stream: its head only.
                let text = if *path == "/api/v1/findings/stream" && status == 200 {
                    String::new()
                } else {
                    resp.text().await?
                };
                assert!(
                    want.ok(status),
                    "{} {method} {uri} ({site}, inside={inside}): {status} {text}",
                    who.name
                );
                if status >= 400 {
                    // Every refusal has the one error body.
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    assert_eq!(v["error"]["status"], status, "{} {method} {uri}: {text}", who.name);
                }
                if status == 200 && *method == "get" {
                    let shown = sites_of(path, &serde_json::from_str(&text).unwrap_or(Value::Null));
                    if let Some(mine) = who.mine {
                        assert!(
                            shown.iter().all(|s| s == mine),
                            "{} sees {shown:?} on {path}, only {mine} is theirs",
                            who.name
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= table.len() * w.who.len() * 2);
    // Within its scope, each list shows the principal's own site.
    for who in w.who.iter().filter(|w| w.mine.is_some()) {
        let roles: Vec<hub::auth::Role> =
            who.roles.as_ref().unwrap().iter().map(|r| r.parse().unwrap()).collect();
        for (method, path, access) in &table {
            let list = matches!(
                *path,
                "/api/v1/findings"
                    | "/api/v1/devices"
                    | "/api/v1/cameras"
                    | "/api/v1/sites"
                    | "/api/v1/records"
            );
            if *method != "get" || !list || !access.admits(&roles) {
                continue;
            }
            let v: Value =
                who.client.get(format!("{}{path}", w.th.base)).send().await?.json().await?;
            let shown = sites_of(path, &v);
            assert_eq!(
                shown,
                BTreeSet::from([who.mine.unwrap().to_owned()]),
                "{} on {path}: {v}",
                who.name
            );
        }
    }
    w.th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_and_scope_as_the_rules_say_sqlite() -> anyhow::Result<()> {
    matrix(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_and_scope_as_the_rules_say_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    matrix(cfg).await
}

/// The session cookie of a `Set-Cookie` answer, with its attributes.
fn session_cookie(r: &reqwest::Response) -> Option<(String, String)> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
        pair.strip_prefix("hub_session=")
            .map(|raw| (format!("hub_session={raw}"), attrs.to_owned()))
    })
}

async fn login(th: &TestHub, user: &str, password: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(format!("{}/api/v1/session", th.base))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?)
}

/// A logged-in session: its cookie and CSRF token.
async fn session(th: &TestHub, user: &str, password: &str) -> anyhow::Result<(String, String)> {
    let r = login(th, user, password).await?;
    anyhow::ensure!(r.status() == StatusCode::OK, "login of {user}: {}", r.status());
    let (cookie, attrs) = session_cookie(&r).expect("a session cookie");
    assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax"), "{attrs}");
    assert!(!attrs.contains("Secure"), "plain HTTP: no Secure ({attrs})");
    let v: Value = r.json().await?;
    Ok((cookie, v["csrf_token"].as_str().unwrap().to_owned()))
}

async fn with_cookie(
    th: &TestHub,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", th.base))
        .header("cookie", cookie);
    if let Some(c) = csrf {
        r = r.header("x-csrf-token", c);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

async fn sessions(cfg: config::Config) -> anyhow::Result<()> {
    let w = world(cfg).await?;
    let th = &w.th;
    admin_post(
        th,
        "/api/v1/users",
        json!({"username": "op", "password": "operator-pw-1",
        "roles": ["duty_operator"], "department": "xian-food"}),
    )
    .await?;
    let (cookie, csrf) = session(th, "op", "operator-pw-1").await?;
    let (s, me) = with_cookie(th, Method::GET, "/api/v1/session", &cookie, None, None).await?;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "op");
    assert_eq!(me["department"]["id"], "xian-food");
    let perms: Vec<&str> =
        me["permissions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(perms.contains(&"POST /api/v1/findings/{id}/acknowledge"), "{perms:?}");
    assert!(!perms.contains(&"POST /api/v1/devices"), "an operator may not register devices");
    // The session's scope: the food site only.
    let (_, list) = with_cookie(th, Method::GET, "/api/v1/findings", &cookie, None, None).await?;
    assert_eq!(sites_of("/api/v1/findings", &list), BTreeSet::from(["xian-1".to_owned()]));
    let (finding, _, _) = w.ids["xian-1"];
    let ack = format!("/api/v1/findings/{finding}/acknowledge");
    // A mutation without the CSRF token, or with another one, is refused.
    let (s, b) = with_cookie(th, Method::POST, &ack, &cookie, None, None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("CSRF"), "{b}");
    let (s, _) = with_cookie(th, Method::POST, &ack, &cookie, Some("forged"), None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A body that is not JSON is refused even with the token (a form post cannot forge one).
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/session/password", th.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("current=a&new=b")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, b) = with_cookie(th, Method::POST, &ack, &cookie, Some(&csrf), None).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The acknowledgement is in the audit log with who and from where.
    let audit: Value = th
        .get(&format!("/api/v1/audit?action=finding.acknowledge&target=finding:{finding}"))
        .await?;
    let row = &audit["items"][0];
    assert_eq!(row["actor"], "user:op", "{audit}");
    assert_eq!(row["address"], "127.0.0.1", "{audit}");
    assert_eq!(row["before"]["state"], "active");
    assert_eq!(row["after"]["state"], "acknowledged");

    // A second session; changing the password in the first ends the second only.
    let (cookie2, _) = session(th, "op", "operator-pw-1").await?;
    let (s, b) = with_cookie(
        th,
        Method::POST,
        "/api/v1/session/password",
        &cookie,
        Some(&csrf),
        Some(json!({"current": "operator-pw-1", "new": "operator-pw-2"})),
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _) = with_cookie(th, Method::GET, "/api/v1/session", &cookie2, None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the other session ended");
    let (s, _) = with_cookie(th, Method::GET, "/api/v1/session", &cookie, None, None).await?;
    assert_eq!(s, StatusCode::OK, "the session that changed it goes on");
    // The old password is refused: op's first failed login.
    assert_eq!(login(th, "op", "operator-pw-1").await?.status(), StatusCode::UNAUTHORIZED);

    // Logged out: the cookie, even if someone kept a copy, no longer works.
    let (s, _) =
        with_cookie(th, Method::DELETE, "/api/v1/session", &cookie, Some(&csrf), None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = with_cookie(th, Method::GET, "/api/v1/findings", &cookie, None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // A made-up cookie too.
    let (s, _) =
        with_cookie(th, Method::GET, "/api/v1/findings", "hub_session=made-up", None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Throttling: after five wrong passwords (the old one above and four more) the right one
    // waits too.
    for _ in 0..4 {
        assert_eq!(login(th, "op", "wrong-password").await?.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login(th, "op", "operator-pw-2").await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=900).contains(&retry), "{retry}");
    // Another user from the same address is not locked out by op's failures (below the
    // address limit).
    assert_eq!(login(th, "integ-a", "integrator-pw-1").await?.status(), StatusCode::OK);

    // Disabling a user ends their sessions.
    let (cookie3, _) = session(th, "integ-a", "integrator-pw-1").await?;
    let r = th
        .http
        .patch(format!("{}/api/v1/users/integ-a", th.base))
        .json(&json!({"disabled": true}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = with_cookie(th, Method::GET, "/api/v1/session", &cookie3, None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(login(th, "integ-a", "integrator-pw-1").await?.status(), StatusCode::UNAUTHORIZED);
    w.th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_logout_password_change_and_throttling_sqlite() -> anyhow::Result<()> {
    sessions(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_logout_password_change_and_throttling_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    sessions(cfg).await
}

async fn tokens(cfg: config::Config, clock: std::sync::Arc<ManualClock>) -> anyhow::Result<()> {
    let th =
        TestHub::start(cfg, StartOptions { clock: clock.clone(), ..Default::default() }).await?;
    admin_post(
        &th,
        "/api/v1/departments",
        json!({"id": "xian-food", "name": "Xi'an food",
        "region": "610100", "industries": ["food"], "uscc": "91350100M000100Y43"}),
    )
    .await?;
    let get = |c: reqwest::Client, path: &'static str| {
        let base = th.base.clone();
        async move { Ok::<_, anyhow::Error>(c.get(format!("{base}{path}")).send().await?) }
    };
    let created = admin_post(
        &th,
        "/api/v1/tokens",
        json!({"name": "xian system",
        "roles": ["department"], "department": "xian-food", "expires_in_days": 1}),
    )
    .await?;
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("hubt_"), "{token}");
    // Shown once: the list has a hint, never the token.
    let list: Value = th.get("/api/v1/tokens").await?;
    assert!(!list.to_string().contains(&token), "{list}");
    let r = get(client_with_token(&token), "/api/v1/findings").await?;
    assert_eq!(r.status(), StatusCode::OK);
    // Its use is recorded beside the request (a busy database never delays one).
    wait_for(Duration::from_secs(10), "the token's last_used_at", || async {
        let list: Value = th.get("/api/v1/tokens").await?;
        let row =
            list["items"].as_array().unwrap().iter().find(|t| t["id"] == created["id"]).cloned();
        Ok(row.filter(|r| r["last_used_at"].is_string()).map(drop))
    })
    .await?;
    // Malformed, unknown, wrong scheme.
    for bad in ["Bearer", "Bearer nonsense", "Bearer hubt_unknown", "Basic YWRtaW46eA==", "hubt_x"]
    {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/findings", th.base))
            .header("authorization", bad)
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(r.headers().contains_key("www-authenticate"));
        let v: Value = r.json().await?;
        assert_eq!(v["error"]["status"], 401, "{v}");
    }
    // A department token cannot make tokens or read the audit log.
    let r = get(client_with_token(&token), "/api/v1/audit").await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Expired: a day and a bit later.
    clock.advance((86_400 + 60) * 1000);
    let r = get(client_with_token(&token), "/api/v1/findings").await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await?.contains("expired"));
    // Revoked.
    let created = admin_post(
        &th,
        "/api/v1/tokens",
        json!({"name": "second",
        "roles": ["department"], "department": "xian-food", "expires_in_days": 30}),
    )
    .await?;
    let second = created["token"].as_str().unwrap().to_owned();
    assert_eq!(get(client_with_token(&second), "/api/v1/findings").await?.status(), StatusCode::OK);
    let r = th.http.delete(format!("{}/api/v1/tokens/{}", th.base, created["id"])).send().await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = get(client_with_token(&second), "/api/v1/findings").await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await?.contains("revoked"));
    // Owners: a department role without a department is refused, with the reason.
    let r = th
        .http
        .post(format!("{}/api/v1/tokens", th.base))
        .json(&json!({"name": "x", "roles": ["department"], "expires_in_days": 1}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("needs a department"));
    // A department's USCC is checked, naming the bad position.
    let r = th
        .http
        .post(format!("{}/api/v1/departments", th.base))
        .json(&json!({"id": "bad", "name": "Bad", "region": "610100", "industries": ["food"],
                      "uscc": "91350100M000100Y4Z"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await?;
    assert!(text.contains("uscc") && text.contains("character 18"), "{text}");
    let r = th
        .http
        .post(format!("{}/api/v1/departments", th.base))
        .json(&json!({"id": "bad", "name": "Bad", "region": "610100", "industries": ["food"],
                      "uscc": "91350100I000100Y43"}))
        .send()
        .await?;
    assert!(r.text().await?.contains("character 9"));
    // Every change above is in the audit log.
    let audit: Value = th.get("/api/v1/audit?limit=100").await?;
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    for a in ["department.create", "token.create", "token.revoke"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_are_revoked_and_malformed_ones_are_refused_sqlite() -> anyhow::Result<()> {
    let clock = std::sync::Arc::new(ManualClock::new(common::Clock::now_ms(&common::SystemClock)));
    tokens(config_with(&tests::small_site(&[]))?, clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_are_revoked_and_malformed_ones_are_refused_postgres() -> anyhow::Result<()> {
    let clock = std::sync::Arc::new(ManualClock::new(common::Clock::now_ms(&common::SystemClock)));
    let mut cfg = config_with(&tests::small_site(&[]))?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    tokens(cfg, clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_doors_are_closed_and_every_mutation_is_audited() -> anyhow::Result<()> {
    let w = world(config_with(&two_sites())?).await?;
    let th = &w.th;
    let post_camera = |body: Value| {
        let (http, base) = (th.http.clone(), th.base.clone());
        async move {
            Ok::<_, anyhow::Error>(
                http.post(format!("{base}/api/v1/cameras")).json(&body).send().await?,
            )
        }
    };
    // Cameras: rtsp only, within the allowed networks.
    let r = post_camera(json!({"id": "web", "site": "xian-1", "url": "http://127.0.0.1/"})).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r =
        post_camera(json!({"id": "far", "site": "xian-1", "url": "rtsp://8.8.8.8/stream"})).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await?;
    assert!(text.contains("8.8.8.8") && text.contains("camera_networks"), "{text}");
    // Size caps: a polygon of 65 points; a body over the limit.
    let polygon: Vec<[f32; 2]> = (0..65).map(|i| [i as f32 / 100.0, 0.5]).collect();
    let r = post_camera(json!({"id": "poly", "site": "xian-1", "url": "rtsp://127.0.0.1:9/x",
        "zones": [{"name": "z", "polygon": polygon}]}))
    .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("at most 64"));
    let big = "x".repeat(2 << 20);
    // Its own client: the hub answers before reading the body and closes that connection.
    let r = client_with_token(&th.admin_token)
        .post(format!("{}/api/v1/cameras", th.base))
        .json(&json!({"id": "big", "site": "xian-1", "url": "rtsp://127.0.0.1:9/x", "name": big}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["status"], 413, "{v}");
    // A socket or event stream from another origin is refused; from this one it opens.
    let stream = |origin: &'static str| {
        let (http, base) = (th.http.clone(), th.base.clone());
        async move {
            Ok::<_, anyhow::Error>(
                http.get(format!("{base}/api/v1/findings/stream"))
                    .header("accept", "text/event-stream")
                    .header("origin", origin)
                    .send()
                    .await?,
            )
        }
    };
    assert_eq!(stream("http://evil.example").await?.status(), StatusCode::FORBIDDEN);
    let host = th.base.trim_start_matches("http://").to_owned();
    let same: &'static str = Box::leak(format!("http://{host}").into_boxed_str());
    assert_eq!(stream(same).await?.status(), StatusCode::OK);
    // /metrics and /healthz stay open and show no secrets or ids of devices.
    let metrics = reqwest::get(format!("{}/metrics", th.base)).await?.text().await?;
    let health = reqwest::get(format!("{}/healthz", th.base)).await?.text().await?;
    for text in [&metrics, &health] {
        for secret_or_id in ["d-xian", "c-xian", "xian-1", "hubt_", "$argon2"] {
            assert!(!text.contains(secret_or_id), "{secret_or_id} in {text}");
        }
    }
    // Each mutation leaves its audit row.
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
    };
    ok(post_camera(json!({"id": "cam-new", "site": "xian-1", "url": "rtsp://u:pw@127.0.0.1:9/x", "analysis": "off"})).await?);
    ok(th
        .http
        .patch(format!("{}/api/v1/cameras/cam-new", th.base))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"name": "renamed"}).to_string())
        .send()
        .await?);
    ok(th.http.delete(format!("{}/api/v1/cameras/cam-new", th.base)).send().await?);
    ok(th
        .http
        .post(format!("{}/api/v1/devices", th.base))
        .json(&json!({"id": "dev-new", "site_id": "xy-1", "kind": "fridge"}))
        .send()
        .await?);
    ok(th.http.delete(format!("{}/api/v1/devices/dev-new", th.base)).send().await?);
    let (finding, _, _) = w.ids["xy-1"];
    ok(th.http.post(format!("{}/api/v1/findings/{finding}/acknowledge", th.base)).send().await?);
    ok(th.http.post(format!("{}/api/v1/findings/{finding}/clear", th.base)).send().await?);
    let audit: Value = th.get("/api/v1/audit?limit=200").await?;
    let rows = audit["items"].as_array().unwrap();
    for (action, target) in [
        ("camera.create", "camera:cam-new"),
        ("camera.update", "camera:cam-new"),
        ("camera.delete", "camera:cam-new"),
        ("device.register", "device:dev-new"),
        ("device.remove", "device:dev-new"),
        ("finding.acknowledge", &*format!("finding:{finding}")),
        ("finding.clear", &*format!("finding:{finding}")),
        ("department.create", "department:duty"),
        ("user.create", "user:integ-a"),
    ] {
        let row = rows.iter().find(|r| r["action"] == action && r["target"] == target);
        let row = row.unwrap_or_else(|| panic!("no audit row {action} {target} in {audit}"));
        assert!(row["actor"].as_str().unwrap().starts_with("token:"), "{row}");
        assert_eq!(row["address"], "127.0.0.1", "{row}");
    }
    // The camera's password never reaches the log.
    assert!(!audit.to_string().contains("u:pw@"), "{audit}");
    let update = rows.iter().find(|r| r["action"] == "camera.update").unwrap();
    assert_eq!(update["after"]["name"], "renamed", "{update}");
    // Append-only through the API: no route changes or removes audit rows.
    assert!(
        hub::api::route_table()
            .iter()
            .all(|(m, p, _)| !p.starts_with("/api/v1/audit") || *m == "get")
    );
    w.th.stop().await;
    Ok(())
}

/// The scope's SQL and its in-memory form agree on random sites and scopes (the reference
/// comparison of `admits` is a property test in `hub::auth::scope`).
async fn scope_forms_agree(cfg_db: Option<String>) -> anyhow::Result<()> {
    use hub::auth::scope::{DepartmentScope, region_prefix};
    use rand::Rng;
    let dir = tests::scratch_dir("scope");
    let url = cfg_db.unwrap_or_else(|| "sqlite://scope.db".into());
    let store = hub::store::Store::connect(&url, &dir, 2).await?;
    let mut rng = rand::thread_rng();
    let codes = ["610000", "610100", "610102", "610400", "610402", "620100", "610200", "611000"];
    let mut sites = Vec::new();
    for i in 0..40 {
        let site = config::Site {
            id: common::SiteId::new(format!("s{i}"))?,
            name: "n".into(),
            region: codes[rng.gen_range(0..codes.len())].into(),
            industry: if rng.gen_bool(0.5) {
                common::Industry::Food
            } else {
                common::Industry::Transport
            },
            entity_name: "e".into(),
            uscc: "91350100M000100Y43".into(),
            integrator: [None, Some("ia".to_owned()), Some("ib".to_owned())][rng.gen_range(0..3)]
                .clone(),
        };
        store.upsert_site(&site).await?;
        sites.push(site);
    }
    for _ in 0..200 {
        let department = rng.gen_bool(0.7).then(|| {
            let mut industries = BTreeSet::new();
            for i in [common::Industry::Food, common::Industry::Transport] {
                if rng.gen_bool(0.6) {
                    industries.insert(i);
                }
            }
            DepartmentScope {
                prefix: region_prefix(codes[rng.gen_range(0..codes.len())]).into(),
                industries,
            }
        });
        let integrator =
            [None, Some("ia".to_owned()), Some("ib".to_owned())][rng.gen_range(0..3)].clone();
        let scope = Scope::Limited { department, integrator };
        let mut want: Vec<String> = sites
            .iter()
            .filter(|s| scope.admits(hub::auth::SiteFacts::of(s)))
            .map(|s| s.id.to_string())
            .collect();
        want.sort();
        assert_eq!(store.site_ids_in(&scope).await?, want, "{scope:?}");
    }
    assert_eq!(store.site_ids_in(&Scope::All).await?.len(), 40);
    assert!(store.site_ids_in(&Scope::nothing()).await?.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_sql_agrees_with_the_in_memory_filter_sqlite() -> anyhow::Result<()> {
    scope_forms_agree(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_sql_agrees_with_the_in_memory_filter_postgres() -> anyhow::Result<()> {
    scope_forms_agree(Some(tests::fresh_postgres_database().await?)).await
}

/// Reads an event stream into a shared string until the connection ends.
pub(crate) fn collect(mut r: reqwest::Response) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
    let t = text.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = r.chunk().await {
            t.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departments_event_stream_carries_only_its_sites_findings() -> anyhow::Result<()> {
    let mut toml = two_sites().replace("[[devices]]", "[[unused]]");
    toml.truncate(toml.find("[[unused]]").unwrap());
    for (id, site) in [("f-xian", "xian-1"), ("f-xy", "xy-1")] {
        toml.push_str(&format!(
            "\n[[devices]]\nid = \"{id}\"\nsite = \"{site}\"\nkind = \"fridge\"\nsecret_hash = \"{}\"\n",
            tests::hash(&tests::secret_of(id))
        ));
    }
    let th = TestHub::start(config_with(&toml)?, StartOptions::default()).await?;
    admin_post(
        &th,
        "/api/v1/departments",
        json!({"id": "xian-food", "name": "Xi'an food",
        "region": "610100", "industries": ["food"], "uscc": "91350100M000100Y43"}),
    )
    .await?;
    let dept = client_with_token(
        &create_token(&th.hub.store, &["department"], Some("xian-food"), None).await?,
    );
    let open = |c: reqwest::Client| {
        let base = th.base.clone();
        async move {
            let r = c
                .get(format!("{base}/api/v1/findings/stream"))
                .header("accept", "text/event-stream")
                .send()
                .await?;
            anyhow::ensure!(r.status() == StatusCode::OK, "stream: {}", r.status());
            Ok(collect(r))
        }
    };
    let mine = open(dept).await?;
    let all = open(th.http.clone()).await?;
    // The other department's site first, then its own: when its own has arrived, the other's
    // (stored and announced before it) would have too.
    for device in ["f-xy", "f-xian"] {
        let site = if device == "f-xy" { "xy-1" } else { "xian-1" };
        let (c, mut el) =
            crate::bad_input::connect(&th.mqtt_addr(), device, &tests::secret_of(device))
                .await?
                .unwrap();
        let topic = format!("sites/{site}/devices/{device}/telemetry");
        crate::bad_input::publish(
            &c,
            &mut el,
            &topic,
            br#"{"values":{"temperature_c":25.0}}"#.to_vec(),
        )
        .await?;
    }
    wait_for(Duration::from_secs(20), "the admin's stream to carry both findings", || async {
        let t = all.lock().unwrap().clone();
        Ok((t.contains("\"f-xy\"") && t.contains("\"f-xian\"")).then_some(()))
    })
    .await?;
    wait_for(Duration::from_secs(20), "the department's stream to carry its finding", || async {
        Ok(mine.lock().unwrap().contains("\"f-xian\"").then_some(()))
    })
    .await?;
    let t = mine.lock().unwrap().clone();
    assert!(!t.contains("f-xy"), "another department's finding on the stream: {t}");
    assert!(t.contains("event: finding"), "{t}");
    th.stop().await;
    Ok(())
}
