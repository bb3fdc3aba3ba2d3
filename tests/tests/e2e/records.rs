//! Supervision records end to end over real HTTP, on both databases: the catalogue and
//! entities with every bad row reported; a verified finding becomes a record routed to the
//! department of its item; the department claims, assigns, enters a result with a photo, feeds
//! back and closes, each step on the timeline and in the audit log; an invalid step answers 409
//! naming the state; the event reaches a real receiver that fails (500, a timeout, 429 with
//! Retry-After) and then takes it, with the same webhook-id, signed as Python's `hmac` computes
//! it; 410 disables; the allow-list refuses; another department sees nothing; the pull and the
//! event feed run in commit order; an overdue record escalates.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxStatus};
use common::{Clock, ManualClock};
use hub::app::StartOptions;
use hub::store::{Batch, Scope};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{TestHub, client_with_token, config_with, create_token, wait_for};

use crate::access::{three_departments, two_sites};

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A webhook receiver: answers each request with the next planned answer (then 200), records
/// what it saw. `/gone` always answers 410.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    plan: Arc<Mutex<Vec<&'static str>>>,
}

async fn receiver(r: Receiver) -> anyhow::Result<String> {
    async fn hook(
        axum::extract::State(r): axum::extract::State<Receiver>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        r.seen.lock().unwrap().push(Seen {
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp"),
            signature: h("webhook-signature"),
            body,
        });
        let next = {
            let mut p = r.plan.lock().unwrap();
            if p.is_empty() { "ok" } else { p.remove(0) }
        };
        match next {
            "500" => (AxStatus::INTERNAL_SERVER_ERROR, "down").into_response(),
            // The stimulus of a timeout: longer than the hub's delivery.timeout (1 s here).
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                AxStatus::OK.into_response()
            }
            "429" => {
                (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "2")], "slow down").into_response()
            }
            _ => AxStatus::NO_CONTENT.into_response(),
        }
    }
    async fn gone() -> AxStatus {
        AxStatus::GONE
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .route("/gone", axum::routing::post(gone))
        .with_state(r);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(format!("http://{addr}"))
}

/// Verifies a Standard Webhooks signature with Python's standard library (an implementation
/// independent of the hub's).
fn python_verifies(secret: &str, s: &Seen) -> anyhow::Result<bool> {
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, sigs = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret.removeprefix("whsec_"))
mac = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(s.split(",", 1)[1], mac) for s in sigs.split(" ") if s.startswith("v1,"))
print("ok" if ok else "bad")
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, &s.id, &s.timestamp, &s.signature])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("python3 is needed to check signatures (apt install python3): {e}")
        })?;
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(s.body.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "ok")
}

const FOOD_ITEM: &str = "61000000200003";
const TRANSPORT_ITEM: &str = "61000000300001";

async fn send(r: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let r = r.send().await?;
    Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
}

async fn records(mut cfg: config::Config) -> anyhow::Result<()> {
    cfg.records.auto_severities = vec![common::Severity::Critical];
    cfg.records.deadline_check = Duration::from_millis(200);
    cfg.delivery.timeout = Duration::from_secs(1);
    cfg.delivery.lease = Duration::from_secs(5);
    cfg.delivery.poll = Duration::from_millis(100);
    let clock = ManualClock::new(common::SystemClock.now_ms());
    let opts = StartOptions { clock: Arc::new(clock.clone()), ..StartOptions::default() };
    let th = TestHub::start(cfg, opts).await?;
    let store = &th.hub.store;
    let batch = Batch {
        findings: vec![
            tests::camera_hit(
                "xian-1",
                "c-xian",
                "610102",
                "r",
                Some(FOOD_ITEM),
                common::Severity::Critical,
            ),
            tests::camera_hit(
                "xy-1",
                "c-xy",
                "610402",
                "r",
                Some(TRANSPORT_ITEM),
                common::Severity::Major,
            ),
        ],
        ..Default::default()
    };
    store.write_batch(&batch, 1).await?;
    let all = store
        .findings(&hub::store::FindingFilter { limit: 10, ..Default::default() }, &Scope::All)
        .await?;
    let finding = |site: &str| all.iter().find(|f| f.site_id == site).map(|f| f.id).unwrap();
    three_departments(&th).await?;
    let base = &th.base;

    // The catalogue: a bad file is refused whole, every problem named; then the good one.
    let bad = "code,name,departments,industry,severity\n6100000020000,x,xian-food,food,critical\n\
               61000000200009,y,nobody,food,urgent\n";
    let (s, b) = send(
        th.http
            .post(format!("{base}/api/v1/catalogue"))
            .header("content-type", "text/csv")
            .body(bad),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields: Vec<(i64, &str)> = b["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_i64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [(2, "code"), (3, "departments"), (3, "severity")], "{b}");
    let (_, cat) = send(th.http.get(format!("{base}/api/v1/catalogue"))).await?;
    assert_eq!(cat["items"].as_array().unwrap().len(), 0, "nothing half-imported: {cat}");
    let good = format!(
        "code,name,departments,industry,severity,claim_within,close_within\n\
        {FOOD_ITEM},冷库人员闯入,xian-food,food,critical,30m,24h\n\
        {TRANSPORT_ITEM},货场闯入,xianyang-transport,transport,major,1m,2h\n"
    );
    let (s, b) = send(
        th.http
            .post(format!("{base}/api/v1/catalogue"))
            .header("content-type", "text/csv")
            .body(good),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Entities: the wrong check character is named with its position.
    let ent = "uscc,name,region,industry,address,risk_grade\n\
        91350100M000100Y44,甲,610102,food,长安区,B\n";
    let (s, b) = send(
        th.http
            .post(format!("{base}/api/v1/entities"))
            .header("content-type", "text/csv")
            .body(ent),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["problems"][0]["reason"].as_str().unwrap().contains("character 18 (the check character)"),
        "{b}"
    );
    let ent = "uscc,name,region,industry,address,risk_grade\n\
        91350100M000100Y43,Xi'an Cold Co.,610102,food,长安区,B\n";
    let (s, b) = send(
        th.http
            .post(format!("{base}/api/v1/entities"))
            .header("content-type", "text/csv")
            .body(ent),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Departments and the duty room.
    let op = client_with_token(&create_token(store, &["duty_operator"], Some("duty"), None).await?);
    let xian =
        client_with_token(&create_token(store, &["department"], Some("xian-food"), None).await?);
    let xy = client_with_token(
        &create_token(store, &["department"], Some("xianyang-transport"), None).await?,
    );

    // A subscription of xian-food to the receiver; the allow-list refuses an outside address.
    let rx = Receiver::default();
    rx.plan.lock().unwrap().extend(["500", "slow", "429"]);
    let rx_base = receiver(rx.clone()).await?;
    let (s, b) = send(
        xian.post(format!("{base}/api/v1/subscriptions"))
            .json(&json!({"name": "outside", "url": "http://8.8.8.8/hook"})),
    )
    .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("delivery.networks"), "{b}");
    let (s, b) = send(xian.post(format!("{base}/api/v1/subscriptions")).json(&json!({"name": "theirs", "url": format!("{rx_base}/hook"), "department_id": "xianyang-transport"}))).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "a department subscribes only for itself: {b}");
    let (s, sub) = send(
        xian.post(format!("{base}/api/v1/subscriptions"))
            .json(&json!({"name": "case system", "url": format!("{rx_base}/hook")})),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let secret = sub["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let sub_id = sub["id"].as_i64().unwrap();
    let (s, _) = send(xy.get(format!("{base}/api/v1/subscriptions/{sub_id}"))).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "another department's subscription");

    // Verifying the critical food finding makes its record at once, routed to xian-food.
    let fx = finding("xian-1");
    let (s, f) =
        send(op.post(format!("{base}/api/v1/findings/{fx}/verify")).json(&json!({}))).await?;
    assert_eq!(s, StatusCode::OK, "{f}");
    let rid = f["record_id"].as_i64().expect("the verdict's transaction made the record");
    let (_, r) = send(op.get(format!("{base}/api/v1/records/{rid}"))).await?;
    assert_eq!(r["state"], "distributed", "{r}");
    assert_eq!(r["candidates"], json!(["xian-food"]));
    assert_eq!(r["entity"]["uscc"], "91350100M000100Y43");
    assert_eq!(r["entity"]["risk_grade"], "B");
    assert_eq!(r["item_name"], "冷库人员闯入");
    assert!(
        r["evidence"]["images"][0]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("findings/{fx}/evidence"))
    );
    assert_eq!(r["timeline"][0]["action"], "create");

    // The receiver: 500 at once, then (5 s later) a timeout, then (5 min later) 429 with
    // Retry-After: 2, then (2 s later) delivered: four requests, one webhook-id.
    let attempts = |n: usize| {
        let rx = rx.clone();
        async move {
            wait_for(Duration::from_secs(20), &format!("{n} requests at the receiver"), || async {
                Ok((rx.seen.lock().unwrap().len() >= n).then_some(()))
            })
            .await
        }
    };
    attempts(1).await?;
    let log = |th: &TestHub| {
        let url = format!("{}/api/v1/subscriptions/{sub_id}/deliveries", th.base);
        let xian = xian.clone();
        async move { send(xian.get(url)).await.map(|(_, b)| b) }
    };
    wait_for(Duration::from_secs(10), "the first attempt logged", || async {
        let b = log(&th).await?;
        Ok((b["items"][0]["attempts"] == 1).then_some(()))
    })
    .await?;
    clock.advance(6_000);
    attempts(2).await?;
    wait_for(Duration::from_secs(10), "the timeout logged", || async {
        let b = log(&th).await?;
        Ok((b["items"][0]["attempts"] == 2).then_some(b))
    })
    .await?;
    clock.advance(6 * 60_000);
    attempts(3).await?;
    wait_for(Duration::from_secs(10), "the 429 logged", || async {
        let b = log(&th).await?;
        Ok((b["items"][0]["attempts"] == 3).then_some(()))
    })
    .await?;
    clock.advance(2_500);
    attempts(4).await?;
    let b = wait_for(Duration::from_secs(10), "delivered", || async {
        let b = log(&th).await?;
        Ok((b["items"][0]["state"] == "delivered").then_some(b))
    })
    .await?;
    let d = &b["items"][0];
    let statuses: Vec<Value> =
        d["log"].as_array().unwrap().iter().map(|a| a["status"].clone()).collect();
    assert_eq!(statuses, [json!(500), Value::Null, json!(429), json!(204)], "{d}");
    assert!(d["log"][1]["error"].as_str().unwrap().contains("timed out"), "{d}");
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.id == seen[0].id), "one webhook-id across retries: {seen:?}");
    for s in &seen {
        assert!(python_verifies(&secret, s)?, "signature of {s:?}");
    }
    let ev: Value = serde_json::from_str(&seen[0].body)?;
    assert_eq!(
        (ev["specversion"].as_str(), ev["type"].as_str()),
        (Some("1.0"), Some("record.created"))
    );
    assert_eq!(ev["data"]["record"]["id"], rid);
    assert_eq!(ev["id"], seen[0].id.as_str());

    // A new finding of the same key (the first one cleared) joins the open record.
    let (s, _) = send(op.post(format!("{base}/api/v1/findings/{fx}/clear"))).await?;
    assert_eq!(s, StatusCode::OK);
    let again = tests::camera_hit(
        "xian-1",
        "c-xian",
        "610102",
        "r",
        Some(FOOD_ITEM),
        common::Severity::Critical,
    );
    store.write_batch(&Batch { findings: vec![again], ..Default::default() }, 2).await?;
    let f2 = store
        .findings(&hub::store::FindingFilter { limit: 10, ..Default::default() }, &Scope::All)
        .await?
        .into_iter()
        .find(|f| f.site_id == "xian-1" && f.id != fx)
        .unwrap()
        .id;
    let (s, f) =
        send(op.post(format!("{base}/api/v1/findings/{f2}/verify")).json(&json!({}))).await?;
    assert_eq!((s, f["record_id"].as_i64()), (StatusCode::OK, Some(rid)), "attached: {f}");
    let (_, r) = send(op.get(format!("{base}/api/v1/records/{rid}"))).await?;
    assert_eq!((r["occurrences"].as_i64(), r["finding_ids"].clone()), (Some(2), json!([fx, f2])));

    // Another department sees nothing of it, and cannot act on it.
    let (s, _) = send(xy.get(format!("{base}/api/v1/records/{rid}"))).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) =
        send(xy.post(format!("{base}/api/v1/records/{rid}/claim")).json(&json!({}))).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, l) = send(xy.get(format!("{base}/api/v1/records?after=0"))).await?;
    assert!(l["items"].as_array().unwrap().iter().all(|r| r["site_id"] != "xian-1"), "{l}");

    // The department's steps; an invalid one is a 409 naming the state and what is allowed.
    let step = |action: &str, body: Value| {
        let url = format!("{base}/api/v1/records/{rid}/{action}");
        let xian = xian.clone();
        async move { send(xian.post(url).json(&body)).await }
    };
    let (s, b) = step("assign", json!({"assignee": "Li"})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        b["error"]["message"],
        format!(
            "record {rid} is distributed; assign is allowed from claimed, assigned (allowed now: claim, return)"
        )
    );
    let (s, b) = step("claim", json!({"note": "ours"})).await?;
    assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("claimed")), "{b}");
    let (s, b) = step("assign", json!({"assignee": "Inspector Li"})).await?;
    assert_eq!((s, b["assignee"].as_str()), (StatusCode::OK, Some("Inspector Li")), "{b}");
    let photo = b"\x89PNG\r\n\x1a\n-a-photo".to_vec();
    let (s, a) = send(
        xian.post(format!("{base}/api/v1/records/{rid}/attachments?name=door.png"))
            .header("content-type", "image/png")
            .body(photo.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, b) = send(
        xian.post(format!("{base}/api/v1/records/{rid}/attachments?name=x.exe"))
            .header("content-type", "application/x-msdownload")
            .body("MZ"),
    )
    .await?;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    let (s, b) =
        step("result", json!({"result": "door closed, staff trained", "attachments": [a["id"]]}))
            .await?;
    assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("resulted")), "{b}");
    let got =
        xian.get(format!("{base}{}", a["url"].as_str().unwrap())).send().await?.bytes().await?;
    assert_eq!(got.as_ref(), photo.as_slice());
    let fb = json!({"kind": "inspection", "outcome": "rectified", "inspected_at": "2026-12-02T08:00:00Z",
        "inspectors": [{"name": "Li", "certificate": "61010020261234"}], "reported_at": "2026-12-02T07:00:00Z",
        "reporter": "Wang"});
    let (s, b) = step("feedback", fb.clone()).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "reported before inspected: {b}");
    let mut fb = fb;
    fb["reported_at"] = json!("2026-12-02T09:00:00Z");
    let (s, b) = step("feedback", fb).await?;
    assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("fed_back")), "{b}");
    let (s, b) = step("close", json!({})).await?;
    assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("closed")), "{b}");
    let (s, b) = step("claim", json!({})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is closed; claim is allowed from distributed (allowed now: reopen)"),
        "{b}"
    );
    let (_, r) = send(xian.get(format!("{base}/api/v1/records/{rid}"))).await?;
    let actions: Vec<&str> =
        r["timeline"].as_array().unwrap().iter().map(|t| t["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["create", "attach", "claim", "assign", "result", "feedback", "close"],
        "{r}"
    );
    for t in r["timeline"].as_array().unwrap()[1..].iter() {
        assert!(t["actor"].as_str().unwrap().starts_with("token:"), "who: {t}");
        assert!(t["at"].is_string() && t["to"].is_string(), "{t}");
    }
    assert_eq!(r["timeline"][4]["attachments"][0]["id"], a["id"], "{r}");
    assert_eq!(r["deadline"], "met");
    let (_, audit) =
        send(th.http.get(format!("{base}/api/v1/audit?target=record:{rid}&limit=50"))).await?;
    let logged: Vec<&str> =
        audit["items"].as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    for a in [
        "record.create",
        "record.claim",
        "record.assign",
        "record.result",
        "record.feedback",
        "record.close",
    ] {
        assert!(logged.contains(&a), "{a} audited: {logged:?}");
    }

    // Every step reached the receiver, in order, once delivered each.
    let types = || {
        rx.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                serde_json::from_str::<Value>(&s.body).unwrap()["type"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(20), "every step delivered", || async {
        Ok((types().len() >= 10).then_some(()))
    })
    .await?;
    let t = types();
    assert_eq!(
        &t[3..],
        [
            "record.created",
            "record.finding_attached",
            "record.claimed",
            "record.assigned",
            "record.resulted",
            "record.fed_back",
            "record.closed"
        ],
        "{t:?}"
    );

    // The pull and the feed: commit order, no repeats.
    let (_, ev) = send(xian.get(format!("{base}/api/v1/records/events?after=0"))).await?;
    let seqs: Vec<String> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "ascending, unique");
    let (_, p) = send(xian.get(format!("{base}/api/v1/records?after=0"))).await?;
    assert_eq!(p["items"][0]["id"], rid);
    let (_, p2) =
        send(xian.get(format!("{base}/api/v1/records?after={}", p["next"].as_str().unwrap())))
            .await?;
    assert_eq!(p2["items"].as_array().unwrap().len(), 0, "nothing after the last cursor: {p2}");
    let csv =
        xian.get(format!("{base}/api/v1/records/export?format=exchange&after=0")).send().await?;
    assert!(csv.headers().get("x-next-cursor").is_some());
    let csv = csv.text().await?;
    assert!(
        csv.lines().next().unwrap().ends_with("ctl_id,ctl_time,ctl_source,ctl_batch,ctl_operation"),
        "{csv}"
    );
    assert!(csv.lines().nth(1).unwrap().ends_with(",i"), "first export of the record: {csv}");

    // A 410 disables its subscription at once, with a notice.
    let (_, gone) = send(
        xy.post(format!("{base}/api/v1/subscriptions"))
            .json(&json!({"name": "old", "url": format!("{rx_base}/gone")})),
    )
    .await?;
    let gone_id = gone["id"].as_i64().unwrap();
    // The transport record: made by the duty room, routed to xianyang-transport, whose claim
    // deadline is a minute: it escalates to the province.
    let fy = finding("xy-1");
    let (s, _) =
        send(op.post(format!("{base}/api/v1/findings/{fy}/record")).json(&json!({}))).await?;
    assert_eq!(s, StatusCode::CONFLICT, "not verified yet");
    send(op.post(format!("{base}/api/v1/findings/{fy}/verify")).json(&json!({}))).await?;
    let (s, ry) =
        send(op.post(format!("{base}/api/v1/findings/{fy}/record")).json(&json!({}))).await?;
    assert_eq!(s, StatusCode::CREATED, "{ry}");
    assert_eq!(ry["candidates"], json!(["xianyang-transport"]));
    let ryid = ry["id"].as_i64().unwrap();
    let (s, again) =
        send(op.post(format!("{base}/api/v1/findings/{fy}/record")).json(&json!({}))).await?;
    assert_eq!((s, again["id"].as_i64()), (StatusCode::OK, Some(ryid)), "one record per finding");
    let (_, g) = wait_for(Duration::from_secs(10), "410 disables", || async {
        let r = send(xy.get(format!("{base}/api/v1/subscriptions/{gone_id}"))).await?;
        Ok((r.1["enabled"] == false).then_some(r))
    })
    .await?;
    assert!(g["disabled_reason"].as_str().unwrap().contains("410"), "{g}");
    clock.advance(2 * 60_000);
    let r = wait_for(Duration::from_secs(10), "escalation", || async {
        let (_, r) = send(op.get(format!("{base}/api/v1/records/{ryid}"))).await?;
        Ok((r["escalation"]["level"] == 1).then_some(r))
    })
    .await?;
    assert_eq!(r["escalation"]["to"], "duty", "{r}");
    assert_eq!(r["deadline"], "claim_overdue");
    assert!(r["timeline"].as_array().unwrap().iter().any(|t| t["action"] == "escalate"));
    let (_, n) = send(op.get(format!("{base}/api/v1/notices"))).await?;
    let kinds: Vec<&str> =
        n["items"].as_array().unwrap().iter().filter_map(|n| n["kind"].as_str()).collect();
    assert!(kinds.contains(&"escalation") && kinds.contains(&"subscription_disabled"), "{n}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_verification_to_delivery_sqlite() -> anyhow::Result<()> {
    records(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_verification_to_delivery_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    records(cfg).await
}
