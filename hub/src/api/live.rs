//! `GET /api/v1/cameras/{id}/live`: a WebSocket carrying the camera's live video as fragmented
//! MP4 for Media Source Extensions: a text message `{"type":"init","codec","width","height"}`
//! and the init segment (binary), then one binary message per access unit, from the newest key
//! frame on. A viewer that falls behind gets `{"type":"dropped","frames":N}` and continues at
//! the next key frame; it is never disconnected for being slow. Analysed cameras add
//! `{"type":"detections","t","width","height","boxes":[{label,score,x,y,w,h}]}` after each
//! analysed frame: `t` is the frame's time on the fragments' timeline (seconds, as the
//! player's `currentTime`), boxes normalised to 0–1. Before each key frame,
//! `{"type":"clock","t","at"}`: its media time and when the hub received it (Unix ms). Pings
//! every 15 s keep idle sockets alive. The guard refuses an upgrade from another origin.

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
const VIEWER_READ_BUFFER: usize = 1024;
const VIEWER_MESSAGE_MAX: usize = 16 << 10;
/// A viewer whose socket takes nothing for this long (a frozen tab, a dead peer) is closed, so
/// that it stops counting as a viewer (and an on-demand pull can stop).
const SEND_STALL: Duration = Duration::from_secs(30);

pub(super) async fn live(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
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
    let credential = super::events::LongLived {
        store: s.store.clone(),
        auth: s.auth.clone(),
        headers,
        address: caller.address.clone(),
        scope: caller.scope(),
        clock: s.clock.clone(),
    };
    Ok(ws
        // Viewers only answer pings and close: a small read buffer (the library zeroes all of
        // it at every read attempt; its 128 KiB default cost more than the video itself with a
        // thousand viewers) and a cap on what a client may send.
        .read_buffer_size(VIEWER_READ_BUFFER)
        .max_message_size(VIEWER_MESSAGE_MAX)
        .max_frame_size(VIEWER_MESSAGE_MAX)
        .on_upgrade(move |socket| async move {
            let Some(viewer) = cameras.viewer(&id) else { return };
            let gauge = metrics.gauge(
                common::metrics::names::LIVE_VIEWERS,
                "Live viewers of all cameras now (each camera's viewers share one pull)",
                &[],
            );
            gauge.set(cameras.viewers() as i64);
            serve(socket, viewer, shutdown, credential).await;
            gauge.set(cameras.viewers() as i64);
        })
        .into_response())
}

async fn serve(
    mut socket: WebSocket,
    mut viewer: Viewer,
    shutdown: common::Shutdown,
    credential: super::events::LongLived,
) {
    let mut detections = viewer.detections();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // A logout, revocation, expiry, disabled account or changed scope ends the socket.
    let mut recheck = tokio::time::interval(credential.auth.recheck_every);
    recheck.tick().await;
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    'serve: loop {
        // Everything ready goes out at once, with no wake-up in between.
        viewer.mark_seen();
        while let Some(next) = viewer.poll() {
            let sent = tokio::time::timeout(SEND_STALL, send_next(&mut socket, next)).await;
            if !matches!(sent, Ok(Ok(()))) || shutdown.is_triggered() {
                break 'serve;
            }
        }
        if viewer.closed() {
            break;
        }
        let msg = tokio::select! {
            biased;
            _ = &mut cancelled => break,
            incoming = socket.recv() => match incoming {
                // The client's pongs and anything else it says are not needed.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
            _ = recheck.tick() => {
                if credential.check().await { continue } else { break }
            }
            // The latest analysis results, already JSON (shared, not copied per viewer).
            d = detections.next() => match axum::extract::ws::Utf8Bytes::try_from(d) {
                Ok(text) => Message::Text(text),
                Err(_) => continue,
            },
            more = viewer.changed() => if more { continue } else { break },
        };
        if !matches!(tokio::time::timeout(SEND_STALL, socket.send(msg)).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.send(Message::Close(None))).await;
}

/// Sends what the viewer's cursor gave (a text message before some, flushed together).
async fn send_next(socket: &mut WebSocket, next: Next) -> Result<(), axum::Error> {
    use futures::SinkExt;
    match next {
        Next::Init(init) => {
            let head = json!({"type": "init", "codec": init.codec,
                              "width": init.width, "height": init.height});
            socket.feed(Message::Text(head.to_string().into())).await?;
            socket.send(Message::Binary(init.segment.clone())).await
        }
        // A key frame's place on the timeline and when the hub received it: the viewer can
        // tell how far behind it is.
        Next::Frame(f) if f.key => {
            let t = f.media as f64 / f64::from(crate::live::fmp4::TIMESCALE);
            let clock = json!({"type": "clock", "t": t, "at": f.at});
            socket.feed(Message::Text(clock.to_string().into())).await?;
            socket.send(Message::Binary(f.data)).await
        }
        // The fragment's bytes are the ring's: no copy per viewer.
        Next::Frame(f) => socket.send(Message::Binary(f.data)).await,
        Next::Dropped(n) => {
            socket
                .send(Message::Text(json!({"type": "dropped", "frames": n}).to_string().into()))
                .await
        }
    }
}
