//! `GET /api/v1/findings/stream`: finding changes as they are stored (opened, repeated,
//! acknowledged, verified, …), as server-sent events carrying the finding as
//! `GET /api/v1/findings/{id}` shows it, read through the store within the caller's scope.
//! Each event's id is the change's time; a client that reconnects with `Last-Event-ID` first
//! gets the changes since then (EventSource does this by itself). The guard refuses a
//! cross-origin request (an event stream is not covered by CORS).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::auth::Caller;
use crate::error::Error;
use crate::store::{Finding, FindingFilter, Store};

pub(super) async fn findings(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Error> {
    let scope = caller.scope();
    // An id this stream did not give (another version's) cannot be resumed from: the client
    // is told to reload its list instead of being refused (which would end EventSource).
    let resume: Option<Option<i64>> = headers
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()));
    let holds = LongLived {
        store: s.store.clone(),
        auth: s.auth.clone(),
        headers: headers.clone(),
        address: caller.address.clone(),
        scope: scope.clone(),
        clock: s.clock.clone(),
    };
    // Subscribed before the catch-up query, so that no change falls between the two.
    let mut rx = s.events.subscribe();
    let (registry, store, shutdown) = (s.registry.clone(), s.store.clone(), s.shutdown.clone());
    let stream = async_stream(move |tx| async move {
        // A first line at once, so that proxies pass the headers on before the first change.
        if tx.send(Ok(Event::default().comment("stream open"))).await.is_err() {
            return;
        }
        if resume == Some(None) && tx.send(Ok(lagged(0))).await.is_err() {
            return;
        }
        if let Some(Some(since)) = resume {
            // Changes are stamped before their transaction commits and events go out in the
            // order they are announced: the margin covers both.
            let filter = FindingFilter {
                updated_since: Some(since - RESUME_MARGIN_MS),
                limit: CATCH_UP + 1,
                ..FindingFilter::default()
            };
            match store.findings(&filter, &scope).await {
                Ok(mut items) => {
                    let full = items.len() as i64 > CATCH_UP;
                    items.truncate(CATCH_UP as usize);
                    for f in items {
                        let Some(ev) = event(&store, f, "replayed").await else { continue };
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    if full && tx.send(Ok(lagged(0))).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    if tx.send(Ok(lagged(0))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut recheck = tokio::time::interval(holds.auth.recheck_every);
        recheck.tick().await;
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                // A logout, revocation, expiry, disabled account or changed scope ends it.
                _ = recheck.tick() => {
                    if holds.check().await { continue } else { return }
                }
                _ = tx.closed() => return,
                r = rx.recv() => r,
            };
            let ev = match next {
                Ok(bytes) => {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                        continue;
                    };
                    // A quick look first; the store query below applies the scope itself.
                    let site = v["site_id"].as_str().unwrap_or_default();
                    let Some(id) = v["id"].as_i64() else { continue };
                    let change = v["change"].as_str().unwrap_or("updated").to_owned();
                    if !registry.site_in_scope(site, &scope) {
                        continue;
                    }
                    match store.finding(id, &scope).await {
                        Ok(Some(f)) => match event(&store, f, &change).await {
                            Some(ev) => ev,
                            None => lagged(1),
                        },
                        Ok(None) => continue,
                        // The database is away: the client reloads its list when it can.
                        Err(_) => lagged(1),
                    }
                }
                // A subscriber that fell behind is told how many events it lost.
                Err(RecvError::Lagged(n)) => lagged(n),
                Err(RecvError::Closed) => return,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Most changes sent on resumption; more, and the client is told to reload its list.
const CATCH_UP: i64 = 1000;
/// Resumption sends again the changes of this long before the client's last event id.
const RESUME_MARGIN_MS: i64 = 30_000;

/// What a long-lived answer re-checks its caller's credential with.
pub(super) struct LongLived {
    pub store: Store,
    pub auth: std::sync::Arc<crate::auth::Auth>,
    pub headers: HeaderMap,
    pub address: String,
    pub scope: crate::auth::Scope,
    pub clock: std::sync::Arc<dyn common::Clock>,
}

impl LongLived {
    pub async fn check(&self) -> bool {
        let now = self.clock.now_ms();
        crate::auth::still_holds(
            &self.store,
            &self.auth,
            &self.headers,
            &self.address,
            &self.scope,
            now,
        )
        .await
    }
}

/// A finding's event: the finding with `change` (`opened`, `updated` (a repeat),
/// `acknowledged`, `cleared`, `verified`, `dismissed`, or `replayed` on resumption). Its id is
/// the change's time (`updated_at`, Unix ms), which a client sends back as `Last-Event-ID` to
/// resume (changes at or after it are sent again).
async fn event(store: &Store, f: Finding, change: &str) -> Option<Event> {
    let id = f.updated_at.to_string();
    let mut v = super::findings_json(store, std::slice::from_ref(&f)).await.ok()?.pop()?;
    v["change"] = serde_json::Value::from(change);
    Some(Event::default().event("finding").id(id).data(v.to_string()))
}

/// Tells the client that it missed `n` changes (0: an unknown number) and should reload.
fn lagged(n: u64) -> Event {
    Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))
}

/// A stream fed by a task through a small bounded channel (the task waits while the client
/// is slow; the broadcast behind it drops for the laggard, never for the writer).
fn async_stream<T, F, Fut>(f: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
