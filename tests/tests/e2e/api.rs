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

/// The hub's router, every request carrying the test's admin token.
fn router(th: &TestHub) -> axum::Router {
    let auth: axum::http::HeaderValue = format!("Bearer {}", th.admin_token).parse().unwrap();
    th.hub.router().layer(axum::middleware::map_request(move |mut r: Request<Body>| {
        let auth = auth.clone();
        async move {
            r.headers_mut().insert(axum::http::header::AUTHORIZATION, auth);
            r
        }
    }))
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
    // `/healthz` is green once the MQTT source is up.
    wait_for(Duration::from_secs(10), "/healthz green", || {
        let app = &app;
        async move { Ok((call(app, "GET", "/healthz", None).await.0 == StatusCode::OK).then_some(())) }
    })
    .await?;
    // Each route, asked without a body: the exact answer its handler owes (ids that exist, or
    // that do not: a 404 comes from the handler, not from a missing route).
    for (method, path, _) in hub::api::route_table() {
        let (method, path) = (&method, &path);
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        let (uri, want) = match (*method, *path) {
            ("get", "/healthz" | "/metrics" | "/api/v1/openapi.json") => (*path, 200),
            ("get", "/api/v1/session" | "/api/v1/departments" | "/api/v1/users") => (*path, 200),
            ("get", "/api/v1/tokens" | "/api/v1/audit") => (*path, 200),
            // A token is not a session.
            ("delete", "/api/v1/session") => (*path, 400),
            ("post", "/api/v1/session" | "/api/v1/session/password") => (*path, 415),
            ("post", "/api/v1/departments" | "/api/v1/users" | "/api/v1/tokens") => (*path, 415),
            ("patch", "/api/v1/users/{id}") => ("/api/v1/users/nope", 415),
            ("delete", "/api/v1/tokens/{id}") => ("/api/v1/tokens/999", 404),
            ("get", "/api/v1/findings/stream") => {
                // An endless stream: its head only.
                let req = Request::get(*path).body(Body::empty()).unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.headers()["content-type"], "text/event-stream");
                continue;
            }
            ("get", "/api/v1/findings" | "/api/v1/devices" | "/api/v1/sites") => (*path, 200),
            ("get", "/api/v1/models" | "/api/v1/cameras") => (*path, 200),
            ("get", "/api/v1/findings/{id}") => ("/api/v1/findings/999", 404),
            ("post", "/api/v1/findings/{id}/acknowledge") => {
                ("/api/v1/findings/999/acknowledge", 404)
            }
            ("post", "/api/v1/findings/{id}/clear") => ("/api/v1/findings/999/clear", 404),
            // Without a body (and its JSON content type), whatever the id.
            ("post", "/api/v1/findings/{id}/verify") => ("/api/v1/findings/999/verify", 415),
            ("post", "/api/v1/findings/{id}/dismiss") => ("/api/v1/findings/999/dismiss", 415),
            ("get", "/api/v1/findings/{id}/evidence") => ("/api/v1/findings/999/evidence", 404),
            // Without a body (and its JSON content type), whatever the id.
            ("post", "/api/v1/devices" | "/api/v1/cameras") => (*path, 415),
            ("patch", "/api/v1/cameras/{id}") => ("/api/v1/cameras/nope", 415),
            ("get", "/api/v1/devices/{id}") => ("/api/v1/devices/api-1", 200),
            ("get", "/api/v1/devices/{id}/readings") => ("/api/v1/devices/api-1/readings", 200),
            ("delete", "/api/v1/devices/{id}") => ("/api/v1/devices/nope", 404),
            ("get", "/api/v1/cameras/{id}") => ("/api/v1/cameras/nope", 404),
            ("delete", "/api/v1/cameras/{id}") => ("/api/v1/cameras/nope", 404),
            ("get", "/api/v1/cameras/{id}/snapshot") => ("/api/v1/cameras/nope/snapshot", 404),
            ("get", "/api/v1/cameras/{id}/live") => ("/api/v1/cameras/nope/live", 404),
            // This hub was not started from a file.
            ("post", "/api/v1/config/reload") => (*path, 409),
            (
                "get",
                "/api/v1/catalogue"
                | "/api/v1/entities"
                | "/api/v1/records"
                | "/api/v1/notices"
                | "/api/v1/records/events"
                | "/api/v1/records/export"
                | "/api/v1/subscriptions",
            ) => (*path, 200),
            // Imports need text/csv or application/json.
            ("post", "/api/v1/catalogue" | "/api/v1/entities" | "/api/v1/subscriptions") => {
                (*path, 415)
            }
            ("post", "/api/v1/findings/{id}/record") => ("/api/v1/findings/999/record", 415),
            ("get", "/api/v1/records/{id}") => ("/api/v1/records/999", 404),
            // Steps whose body may be empty find no record; the others refuse the body first.
            ("post", "/api/v1/records/{id}/claim") => ("/api/v1/records/999/claim", 404),
            ("post", "/api/v1/records/{id}/close") => ("/api/v1/records/999/close", 404),
            ("post", "/api/v1/records/{id}/distribute") => ("/api/v1/records/999/distribute", 400),
            ("post", "/api/v1/records/{id}/assign") => ("/api/v1/records/999/assign", 400),
            ("post", "/api/v1/records/{id}/result") => ("/api/v1/records/999/result", 400),
            ("post", "/api/v1/records/{id}/feedback") => ("/api/v1/records/999/feedback", 400),
            ("post", "/api/v1/records/{id}/reopen") => ("/api/v1/records/999/reopen", 400),
            ("post", "/api/v1/records/{id}/return") => ("/api/v1/records/999/return", 400),
            ("post", "/api/v1/records/{id}/attachments") => {
                ("/api/v1/records/999/attachments", 404)
            }
            ("get", "/api/v1/records/{id}/attachments/{aid}") => {
                ("/api/v1/records/999/attachments/1", 404)
            }
            ("get", "/api/v1/subscriptions/{id}") => ("/api/v1/subscriptions/999", 404),
            ("patch", "/api/v1/subscriptions/{id}") => ("/api/v1/subscriptions/999", 415),
            ("delete", "/api/v1/subscriptions/{id}") => ("/api/v1/subscriptions/999", 404),
            ("post", "/api/v1/subscriptions/{id}/rotate") => {
                ("/api/v1/subscriptions/999/rotate", 404)
            }
            ("get", "/api/v1/subscriptions/{id}/deliveries") => {
                ("/api/v1/subscriptions/999/deliveries", 404)
            }
            ("post", "/api/v1/subscriptions/{id}/replay") => {
                ("/api/v1/subscriptions/999/replay", 415)
            }
            other => panic!("{other:?}: add the route's expected answer to this test"),
        };
        let (status, body) = call(&app, &method.to_uppercase(), uri, None).await;
        assert_eq!(status.as_u16(), want, "{method} {uri}: {body}");
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
            Ok(f.into_iter().find(|f| f["count"] == 7).map(|f| f["id"].as_i64().unwrap()))
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

/// Pages of a device's readings hold every reading exactly once, newest first, even when more
/// readings share one timestamp than a page holds.
async fn readings_sharing_a_timestamp_page_exactly_once(cfg: config::Config) -> anyhow::Result<()> {
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let app = router(&th);
    // 13 readings, 7 of them at one timestamp; ties partly at one arrival time. `n` names each.
    let mut readings = Vec::new();
    for (ts, count) in [(6000, 1), (5000, 7), (4000, 2), (3000, 3)] {
        for i in 0..count {
            readings.push(hub::store::ReadingRow {
                device_id: "rd-1".into(),
                ts,
                received_at: 10_000 + i / 2,
                vals: format!("{{\"n\":{}}}", readings.len()),
                // The hub's clock: such readings may share a timestamp.
                device_clock: false,
            });
        }
    }
    let batch = hub::store::Batch { readings, ..Default::default() };
    th.hub.store.write_batch(&batch, 10_000).await?;
    assert_eq!(th.hub.store.count_readings().await?, 13, "readings that share a timestamp");

    let page_through =
        |query: String, limit: usize| {
            let app = app.clone();
            async move {
                let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
                loop {
                    let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
                    let uri = format!("/api/v1/devices/rd-1/readings?limit={limit}{query}{c}");
                    let (s, page) = call(&app, "GET", &uri, None).await;
                    assert_eq!(s, StatusCode::OK, "{uri}: {page}");
                    let items = page["items"].as_array().expect("items");
                    assert!(items.len() <= limit, "{uri}: {page}");
                    seen.extend(items.iter().map(|r| {
                        (r["ts_ms"].as_i64().unwrap(), r["values"]["n"].as_i64().unwrap())
                    }));
                    pages += 1;
                    assert!(pages <= 20, "the cursor does not advance: {uri}");
                    match page["next"].as_str() {
                        Some(n) => cursor = Some(n.to_owned()),
                        None => return seen,
                    }
                }
            }
        };
    for limit in 1..=14 {
        let seen = page_through(String::new(), limit).await;
        let mut ns: Vec<i64> = seen.iter().map(|r| r.1).collect();
        assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first: {seen:?}");
        ns.sort_unstable();
        assert_eq!(ns, (0..13).collect::<Vec<_>>(), "limit={limit}: each reading once: {seen:?}");
    }
    // Within a time window: the 5000s and the 4000s.
    let seen = page_through("&since=4000&until=5001".into(), 2).await;
    let mut ns: Vec<i64> = seen.iter().map(|r| r.1).collect();
    ns.sort_unstable();
    assert_eq!(ns, (1..10).collect::<Vec<_>>(), "{seen:?}");
    let (s, b) = call(&app, "GET", "/api/v1/devices/rd-1/readings?cursor=5000", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_sharing_a_timestamp_page_exactly_once_on_sqlite() -> anyhow::Result<()> {
    readings_sharing_a_timestamp_page_exactly_once(config_with(&small_site(&[("rd-1", "fridge")]))?)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_sharing_a_timestamp_page_exactly_once_on_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&small_site(&[("rd-1", "fridge")]))?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    readings_sharing_a_timestamp_page_exactly_once(cfg).await
}
