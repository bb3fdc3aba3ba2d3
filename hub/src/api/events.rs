//! `GET /api/v1/findings/stream`: finding events as they are stored, as server-sent events,
//! only those of sites within the caller's scope. The guard refuses a cross-origin request
//! (an event stream is not covered by CORS).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::auth::Caller;

pub(super) async fn findings(
    State(s): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let scope = caller.scope();
    let mut rx = s.events.subscribe();
    let registry = s.registry.clone();
    let shutdown = s.shutdown.clone();
    let stream = async_stream(move |tx| async move {
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = rx.recv() => r,
            };
            let ev = match next {
                Ok(bytes) => {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                        continue;
                    };
                    let site = v["site_id"].as_str().unwrap_or_default();
                    if !registry.site_in_scope(site, &scope) {
                        continue;
                    }
                    let id = format!("{}-{}", v["id"], v["count"]);
                    Event::default().event("finding").id(id).data(v.to_string())
                }
                // A subscriber that fell behind is told how many events it lost.
                Err(RecvError::Lagged(n)) => {
                    Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))
                }
                Err(RecvError::Closed) => return,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
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
