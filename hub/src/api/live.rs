//! `GET /api/v1/cameras/{id}/live`: a WebSocket carrying the camera's live video as fragmented
//! MP4 for Media Source Extensions: a text message `{"type":"init","codec","width","height"}`
//! and the init segment (binary), then one binary message per access unit, from the newest key
//! frame on. A viewer that falls behind gets `{"type":"dropped","frames":N}` and continues at
//! the next key frame; it is never disconnected for being slow. Analysed cameras add
//! `{"type":"detections","t","width","height","boxes":[{label,score,x,y,w,h}]}` after each
//! analysed frame: `t` is the frame's time on the fragments' timeline (seconds, as the
//! player's `currentTime`), boxes normalised to 0–1. Pings every 15 s keep idle sockets
//! alive. The guard refuses an upgrade from another origin.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::auth::Caller;
use crate::error::Error;
use crate::live::ring::{Next, Viewer};

const PING_EVERY: Duration = Duration::from_secs(15);

pub(super) async fn live(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    super::cameras::camera_in(&s, &id, &caller.scope())
        .ok_or_else(|| Error::NotFound(format!("camera {id:?}")))?;
    let ws = ws.map_err(|e| {
        Error::InvalidArgument(format!(
            "{}: this is a WebSocket (the duty room's player opens it)",
            e.body_text()
        ))
    })?;
    let (cameras, metrics, shutdown) = (s.cameras.clone(), s.metrics.clone(), s.shutdown.clone());
    Ok(ws
        .on_upgrade(move |socket| async move {
            let Some(viewer) = cameras.viewer(&id) else { return };
            let gauge = metrics.gauge(
                common::metrics::names::LIVE_VIEWERS,
                "Live viewers of all cameras now (each camera's viewers share one pull)",
                &[],
            );
            gauge.set(cameras.viewers() as i64);
            serve(socket, viewer, shutdown).await;
            gauge.set(cameras.viewers() as i64);
        })
        .into_response())
}

async fn serve(mut socket: WebSocket, mut viewer: Viewer, shutdown: common::Shutdown) {
    let mut detections = viewer.detections();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            incoming = socket.recv() => match incoming {
                // The client's pongs and anything else it says are not needed.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
            // The latest analysis results, already JSON (shared, not copied per viewer).
            d = detections.next() => match axum::extract::ws::Utf8Bytes::try_from(d) {
                Ok(text) => Message::Text(text),
                Err(_) => continue,
            },
            next = viewer.next() => match next {
                None => break,
                Some(Next::Init(init)) => {
                    let head = json!({"type": "init", "codec": init.codec,
                                      "width": init.width, "height": init.height});
                    if socket.send(Message::Text(head.to_string().into())).await.is_err() {
                        break;
                    }
                    Message::Binary(init.segment.clone())
                }
                // The fragment's bytes are the ring's: no copy per viewer.
                Some(Next::Frame(f)) => Message::Binary(f.data),
                Some(Next::Dropped(n)) => {
                    Message::Text(json!({"type": "dropped", "frames": n}).to_string().into())
                }
            },
        };
        if socket.send(msg).await.is_err() {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
