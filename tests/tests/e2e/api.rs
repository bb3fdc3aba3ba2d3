//! The HTTP API: every documented route answers, errors are clear, pagination works, and a
//! device registered through the API can publish with the secret it was given.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hub::StartOptions;
use serde_json::{Value, json};
use tests::{TestHub, config_with, small_site, wait_for};
use tower::ServiceExt;

use crate::bad_input::{connect, publish};

fn router(th: &TestHub) -> axum::Router {
    th.hub.router()
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_and_errors_say_why() -> anyhow::Result<()> {
    let th =
        TestHub::start(config_with(&small_site(&[("api-1", "fridge")]))?, StartOptions::default())
            .await?;
    let app = router(&th);
    let doc = call(&app, "GET", "/api/v1/openapi.json", None).await.1;
    for (method, path) in hub::api::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        let uri = path.replace("{id}", "api-1");
        let (status, body) = call(&app, &method.to_uppercase(), &uri, None).await;
        // A route that exists never answers with the fallback's message.
        let fallback =
            body["error"]["message"].as_str().is_some_and(|m| m.contains("no such endpoint"));
        assert!(!fallback, "{method} {path}: {status} {body}");
    }
    let (s, b) = call(&app, "GET", "/api/v1/findings?severity=urgent", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"]["message"].as_str().unwrap().contains("critical"), "{b}");
    let (s, b) = call(&app, "GET", "/api/v1/findings?since=yesterday", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = call(&app, "GET", "/api/v1/findings?colour=red", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, "GET", "/api/v1/devices/nope/readings", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = call(&app, "POST", "/api/v1/findings/999/acknowledge", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_devices_publish_and_findings_page() -> anyhow::Result<()> {
    let th = TestHub::start(config_with(&small_site(&[]))?, StartOptions::default()).await?;
    let app = router(&th);
    let new = json!({"id": "reg-1", "site_id": "s1", "kind": "weighbridge", "name": "Gate"});
    let (s, b) = call(&app, "POST", "/api/v1/devices", Some(new.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let secret = b["secret"].as_str().unwrap().to_owned();
    assert_eq!(b["telemetry_topic"], "sites/s1/devices/reg-1/telemetry");
    let (s, _) = call(&app, "POST", "/api/v1/devices", Some(new)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = call(
        &app,
        "POST",
        "/api/v1/devices",
        Some(json!({"id": "x", "site_id": "nowhere", "kind": "gas"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["error"]["message"].as_str().unwrap().contains("nowhere"), "{b}");
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/devices",
        Some(json!({"id": "a/b", "site_id": "s1", "kind": "gas"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, d) = call(&app, "GET", "/api/v1/devices/reg-1", None).await;
    assert!(d.get("secret").is_none(), "the secret is shown once only");

    // Seven overloads, each at its own time: one finding with count 7; then clear and repeat
    // to open more findings for paging.
    let (c, mut el) =
        connect(&th.mqtt_addr(), "reg-1", &secret).await?.expect("registered device connects");
    let topic = "sites/s1/devices/reg-1/telemetry";
    for round in 0..3 {
        for i in 0..7 {
            let p =
                json!({"ts": 1000 * (round * 10 + i), "values": {"gross_kg": 60000, "axles": 5}});
            publish(&c, &mut el, topic, p.to_string().into_bytes()).await?;
        }
        let want = round + 1;
        let open = wait_for(Duration::from_secs(10), "the overload finding", || async {
            let f = th.all_findings("device=reg-1&state=active").await?;
            Ok(f.into_iter()
                .find(|f| f["count"] == 7)
                .filter(|_| true)
                .map(|f| f["id"].as_i64().unwrap()))
        })
        .await?;
        let (s, b) = call(&app, "POST", &format!("/api/v1/findings/{open}/clear"), None).await;
        assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("cleared")), "round {want}");
    }
    let all = th.all_findings("device=reg-1").await?;
    assert_eq!(all.len(), 3);
    let (_, p1) = call(&app, "GET", "/api/v1/findings?device=reg-1&limit=2", None).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let next = p1["next"].as_str().unwrap().to_owned();
    let (_, p2) =
        call(&app, "GET", &format!("/api/v1/findings?device=reg-1&limit=2&cursor={next}"), None)
            .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2["next"], Value::Null);
    let (_, r) = call(&app, "GET", "/api/v1/devices/reg-1/readings?limit=5", None).await;
    assert_eq!(r["items"].as_array().unwrap().len(), 5);
    assert_eq!(r["items"][0]["ts_ms"], 26_000, "newest first");
    th.stop().await;
    Ok(())
}
