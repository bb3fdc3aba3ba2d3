//! The demo's own webhook receiver: each demo department subscribes to it, and it prints every
//! record event it receives with the outcome of checking its Standard Webhooks signature
//! against the department's secrets.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::Shutdown;
use serde_json::Value;

use crate::error::Error;
use crate::store::records::{Filters, SubscriptionRow};
use crate::store::{AuditEntry, Store};

/// The subscription's name in each department.
const NAME: &str = "demo receiver";

/// Starts the receiver and points each department's "demo receiver" subscription at it
/// (created on the first run, its secret kept). Returns the receiver's address.
pub async fn start(
    store: &Store,
    departments: &[&str],
    shutdown: Shutdown,
) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| Error::Io { context: "binding the demo receiver".into(), source })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the demo receiver's address".into(),
        source,
    })?;
    let now = common::Clock::now_ms(&common::SystemClock);
    for d in departments {
        let url = format!("http://{addr}/hooks/{d}");
        let audit = AuditEntry {
            after: Some(serde_json::json!({"url": url})),
            ..super::cli_audit("subscription.create", format!("department:{d}"))
        };
        let existing = store.subscriptions(Some(d)).await?.into_iter().find(|s| s.name == NAME);
        match existing {
            Some(mut s) => {
                s.url = url;
                s.enabled = true;
                s.disabled_reason = None;
                s.disabled_at = None;
                let audit = AuditEntry { action: "subscription.update".into(), ..audit };
                store.apply(&[Store::save_subscription(&s)], &audit, now).await?;
            }
            None => {
                let s = SubscriptionRow::new(
                    d,
                    NAME,
                    &url,
                    crate::delivery::new_secret(),
                    Filters::default(),
                    now,
                    "hub:demo",
                );
                store.insert_subscription(&s, &audit, now).await?;
            }
        }
    }
    let app = axum::Router::new()
        .route("/hooks/{department}", axum::routing::post(hook))
        .with_state(store.clone());
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "the demo receiver failed");
        }
    });
    Ok(addr)
}

async fn hook(
    State(store): State<Store>,
    Path(department): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let subs = store.subscriptions(Some(&department)).await.unwrap_or_default();
    let keys: Vec<String> = subs
        .iter()
        .filter(|s| s.name == NAME)
        .flat_map(|s| s.keys.iter().map(|k| k.secret.clone()))
        .collect();
    let signed = keys.iter().any(|k| {
        standardwebhooks::Webhook::new(k).is_ok_and(|w| w.verify(&body, &headers).is_ok())
    });
    let ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let r = &ev["data"]["record"];
    println!(
        "[demo receiver] {department} <- {} {} record {} ({}, {}) by {}: signature {}",
        ev["type"].as_str().unwrap_or("?"),
        headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("?"),
        r["number"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?"),
        r["item_name"].as_str().unwrap_or(""),
        ev["data"]["transition"]["actor"].as_str().unwrap_or("?"),
        if signed { "ok" } else { "INVALID" },
    );
    if signed { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}

/// The subscription's name of the demo's MQTT subscriber.
const MQTT_NAME: &str = "demo MQTT subscriber";

/// Subscribes `department` over MQTT (created on the first run) and runs the demo's own MQTT
/// subscriber for it: logged in to the hub's gateway with a fresh department token, it prints
/// each record event it receives and acknowledges it (which is when the hub counts it
/// delivered). Reconnects with a pause while the hub runs.
pub async fn start_mqtt(
    store: &Store,
    gateway: SocketAddr,
    department: &str,
    shutdown: Shutdown,
) -> Result<String, Error> {
    let now = common::Clock::now_ms(&common::SystemClock);
    let existing =
        store.subscriptions(Some(department)).await?.into_iter().find(|s| s.name == MQTT_NAME);
    if existing.is_none() {
        let mut s = SubscriptionRow::new(
            department,
            MQTT_NAME,
            "",
            crate::delivery::new_secret(),
            Filters::default(),
            now,
            "hub:demo",
        );
        s.transport = common::Transport::Mqtt;
        let audit = AuditEntry {
            after: Some(serde_json::json!({"transport": "mqtt"})),
            ..super::cli_audit("subscription.create", format!("department:{department}"))
        };
        store.insert_subscription(&s, &audit, now).await?;
    }
    let n = crate::accounts::NewToken {
        name: MQTT_NAME.into(),
        roles: vec!["department".into()],
        department: Some(department.into()),
        integrator: None,
        expires_in_days: 30,
    };
    let audit = super::cli_audit("token.create", format!("token:{MQTT_NAME}"));
    let (_, token) = crate::accounts::create_token(store, n, "hub:demo", audit, now).await?;
    let username = format!("{}{department}", crate::delivery::mqtt::USER_PREFIX);
    let filter = format!("departments/{department}/#");
    let feed = devices::department::Feed {
        host: gateway.ip().to_string(),
        port: gateway.port(),
        username: username.clone(),
        token,
        filter: filter.clone(),
    };
    let d = department.to_owned();
    tokio::spawn(devices::department::read(feed, shutdown.token(), move |topic, payload| {
        let ev: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let r = &ev["data"]["record"];
        println!(
            "[demo mqtt] {d} <- {} {} record {} ({}, {}) by {} on {topic}",
            ev["type"].as_str().unwrap_or("?"),
            ev["id"].as_str().unwrap_or("?"),
            r["number"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["item_name"].as_str().unwrap_or(""),
            ev["data"]["transition"]["actor"].as_str().unwrap_or("?"),
        );
    }));
    Ok(format!("{username} on {filter}"))
}
