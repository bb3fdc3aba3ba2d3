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
            actor: "hub:demo".into(),
            address: "-".into(),
            action: "subscription.create".into(),
            target: format!("department:{d}"),
            before: None,
            after: Some(serde_json::json!({"url": url})),
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
