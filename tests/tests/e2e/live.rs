//! Live video over a real WebSocket: the camera's H.264 reaches viewers as fragmented MP4 —
//! an init segment, then one fragment per access unit from a key frame — muxed once and shared;
//! a foreign origin cannot open it, a department outside the camera's scope cannot see it. A
//! relay-only camera is pulled only while watched.

use std::time::Duration;

use devices::camera::{Clip, SimCamera};
use futures::{SinkExt, StreamExt};
use hub::StartOptions;
use mp4_atom::{Decode, Mdat, Moof, Moov};
use serde_json::{Value, json};
use tests::{TestHub, config_with, small_site};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(
    th: &TestHub,
    camera: &str,
    token: &str,
    origin: Option<&str>,
) -> anyhow::Result<Socket> {
    let url = format!("{}/api/v1/cameras/{camera}/live", th.base.replace("http://", "ws://"));
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse()?);
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// The next data message (pings are answered by the library).
async fn next(ws: &mut Socket) -> anyhow::Result<Message> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the socket closed"))??;
        if matches!(m, Message::Text(_) | Message::Binary(_)) {
            return Ok(m);
        }
    }
}

/// Reads the init message and segment, then `n` fragments: (codec, sample flags, sizes).
async fn watch(ws: &mut Socket, n: usize) -> anyhow::Result<(String, Vec<(u32, usize)>)> {
    let Message::Text(head) = next(ws).await? else { anyhow::bail!("expected the init message") };
    let head: Value = serde_json::from_str(&head)?;
    assert_eq!(head["type"], "init", "{head}");
    let Message::Binary(init) = next(ws).await? else { anyhow::bail!("expected the init segment") };
    let mut buf = &init[..];
    mp4_atom::Ftyp::decode(&mut buf)?;
    let moov = Moov::decode(&mut buf)?;
    assert_eq!(moov.trak.len(), 1);
    let mut frames = Vec::new();
    // The clock announced before the next fragment (a key frame's).
    let mut clock: Option<Value> = None;
    while frames.len() < n {
        match next(ws).await? {
            Message::Binary(f) => {
                let mut buf = &f[..];
                let moof = Moof::decode(&mut buf)?;
                let mdat = Mdat::decode(&mut buf)?;
                assert!(buf.is_empty(), "one moof and one mdat per message");
                let run = &moof.traf[0].trun[0];
                assert_eq!(run.entries.len(), 1, "one access unit per fragment");
                assert_eq!(run.entries[0].size, Some(mdat.data.len() as u32));
                // AVC format: the first NAL's 4-byte length fits in the sample.
                let first = u32::from_be_bytes(mdat.data[..4].try_into()?) as usize;
                assert!(first + 4 <= mdat.data.len(), "a whole access unit");
                let flags = run.entries[0].flags.unwrap_or(0);
                // Each key frame comes after its clock: its media time (the fragment's decode
                // time) and when the hub received it.
                let c = clock.take();
                if flags == 0x0200_0000 {
                    let c = c.ok_or_else(|| anyhow::anyhow!("a key frame without its clock"))?;
                    let decode = moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time;
                    assert!(
                        (c["t"].as_f64().unwrap() - decode as f64 / 90_000.0).abs() < 1e-6,
                        "{c}"
                    );
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                    let age = now.as_millis() as i64 - c["at"].as_i64().unwrap();
                    assert!((0..10_000).contains(&age), "received {age} ms ago: {c}");
                } else {
                    assert!(c.is_none(), "a clock before a delta frame: {c:?}");
                }
                frames.push((flags, mdat.data.len()));
            }
            Message::Text(t) => {
                let m: Value = serde_json::from_str(&t)?;
                anyhow::ensure!(m["type"] == "clock", "unexpected message {t}");
                clock = Some(m);
            }
            _ => {}
        }
    }
    Ok((head["codec"].as_str().unwrap_or_default().to_owned(), frames))
}

/// A hub with one relay-only camera `gate` (plus `extra` TOML) on a simulated 10 fps camera;
/// `tweak` adjusts the configuration.
async fn gate_hub(
    extra: &str,
    tweak: impl FnOnce(&mut config::Config),
) -> anyhow::Result<(TestHub, SimCamera)> {
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::start(&clip, 0, "live")?;
    let mut cfg = config_with(&format!(
        "{}\n[[cameras]]\nid = \"gate\"\nsite = \"s1\"\nurl = \"{}\"\nanalysis = \"off\"\n{extra}",
        small_site(&[]),
        sim.url()
    ))?;
    tweak(&mut cfg);
    Ok((TestHub::start(cfg, StartOptions::default()).await?, sim))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_the_cameras_h264_as_fragmented_mp4_from_a_key_frame() -> anyhow::Result<()> {
    let (th, sim) = gate_hub("", |c| c.vision.live_linger = Duration::from_secs(2)).await?;
    // Relay-only and unwatched: not connected at all (no source ever started).
    let cam = th.get("/api/v1/cameras/gate").await?;
    assert_eq!(cam["pull"]["mode"], "on_demand", "{cam}");
    assert_eq!(cam["pull"]["active"], false, "{cam}");
    assert_eq!((cam["starts"].as_u64(), cam["health"]["state"].as_str()), (Some(0), Some("idle")));
    assert_eq!(th.metric("hub_camera_pulls").await?, 0.0);
    // Two viewers of one camera: both start at a key frame and follow it, from one pull.
    let mut a = open(&th, "gate", &th.admin_token, None).await?;
    let mut b = open(&th, "gate", &th.admin_token, None).await?;
    let (codec, frames) = watch(&mut a, 15).await?;
    assert!(codec.starts_with("avc1."), "{codec}");
    assert_eq!(frames[0].0, 0x0200_0000, "the first fragment is a key frame: {frames:?}");
    assert!(frames.iter().skip(1).any(|f| f.0 == 0x0101_0000), "delta frames follow");
    let (codec_b, frames_b) = watch(&mut b, 5).await?;
    assert_eq!(codec_b, codec);
    assert_eq!(frames_b[0].0, 0x0200_0000);
    // The camera is relayed, never decoded; both viewers are counted, in the camera and in
    // the metrics.
    let cam = th.get("/api/v1/cameras/gate").await?;
    assert_eq!(cam["health"]["frames_decoded"], 0, "{cam}");
    assert_eq!(cam["viewers"], 2, "{cam}");
    assert_eq!(th.metric("hub_live_viewers").await?, 2.0);
    assert_eq!((cam["pull"]["active"].as_bool(), cam["starts"].as_u64()), (Some(true), Some(1)));
    assert_eq!(th.metric("hub_camera_pulls").await?, 1.0);

    // Another origin cannot open the socket with our credentials.
    let err = open(&th, "gate", &th.admin_token, Some("http://evil.example")).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // A department outside the camera's scope gets 404, as for no camera at all.
    let r = th
        .http
        .post(format!("{}/api/v1/departments", th.base))
        .json(&json!({"id": "other", "name": "Other", "region": "620100", "industries": ["food"],
                      "uscc": "91350100M000100Y43"}))
        .send()
        .await?;
    assert!(r.status().is_success());
    let other = tests::create_token(&th.hub.store, &["department"], Some("other"), None).await?;
    let err = open(&th, "gate", &other, None).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let err = open(&th, "gate", "hubt_nope", None).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let _ = a.close(None).await;
    let _ = b.send(Message::Close(None)).await;
    // Viewers that leave are no longer counted; the pull stays for `live_linger`, saying when
    // it stops, then stops.
    let lingering = tests::wait_for(Duration::from_secs(10), "the viewers gone", || async {
        let c = th.get("/api/v1/cameras/gate").await?;
        Ok((c["viewers"] == 0 && c["pull"]["stops_at"].is_i64()).then_some(c))
    })
    .await?;
    assert_eq!(lingering["pull"]["active"], true, "{lingering}");
    tests::wait_for(Duration::from_secs(15), "the unwatched pull stopped", || async {
        let c = th.get("/api/v1/cameras/gate").await?;
        Ok((c["pull"]["active"] == false && c["health"]["state"] == "idle").then_some(()))
    })
    .await?;
    assert_eq!(th.metric("hub_camera_pulls").await?, 0.0);
    // A viewer coming back starts it again, from a key frame.
    let mut c = open(&th, "gate", &th.admin_token, None).await?;
    let (_, frames) = watch(&mut c, 2).await?;
    assert_eq!(frames[0].0, 0x0200_0000);
    assert_eq!(th.get("/api/v1/cameras/gate").await?["starts"], 2);
    drop(c);
    th.stop().await;
    drop(sim);
    Ok(())
}

/// A camera pulled by GStreamer's rtspsrc feeds the live view too: the same fragments from a
/// key frame, its codec from the stream's parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_pulled_camera_is_viewed_live_as_well() -> anyhow::Result<()> {
    let (th, sim) = gate_hub("rtsp_client = \"gstreamer\"\nlatency_ms = 200\n", |_| {}).await?;
    let mut ws = open(&th, "gate", &th.admin_token, None).await?;
    let (codec, frames) = watch(&mut ws, 12).await?;
    assert!(codec.starts_with("avc1."), "{codec}");
    assert_eq!(frames[0].0, 0x0200_0000, "from a key frame: {frames:?}");
    assert!(frames.iter().skip(1).any(|f| f.0 == 0x0101_0000), "delta frames follow");
    drop(ws);
    th.stop().await;
    drop(sim);
    Ok(())
}

/// A live socket and an event stream end soon after their credential is revoked (they re-check
/// it every `http.stream_recheck`); they do not outlive a logout or a disabled account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_live_socket_and_its_event_stream() -> anyhow::Result<()> {
    let (th, sim) = gate_hub("", |c| c.http.stream_recheck = Duration::from_secs(1)).await?;
    let r = th
        .http
        .post(format!("{}/api/v1/tokens", th.base))
        .json(&json!({"name": "wall screen", "roles": ["admin"], "expires_in_days": 1}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "token: {}", r.status());
    let t: Value = r.json().await?;
    let token = t["token"].as_str().unwrap().to_owned();
    let mut ws = open(&th, "gate", &token, None).await?;
    let stream = tests::client_with_token(&token)
        .get(format!("{}/api/v1/findings/stream", th.base))
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let ended = tokio::spawn(async move {
        let mut stream = stream;
        while let Ok(Some(_)) = stream.chunk().await {}
    });
    // While the token holds, the re-checks pass: 30 frames of the 10 fps camera span about
    // three of them, and the socket and the stream stay open.
    watch(&mut ws, 30).await?;
    assert!(!ended.is_finished(), "the stream ended while its token held");
    let r = th.http.delete(format!("{}/api/v1/tokens/{}", th.base, t["id"])).send().await?;
    assert!(r.status().is_success(), "revoke: {}", r.status());
    tokio::time::timeout(Duration::from_secs(10), ended).await??;
    // The socket closes too (after the frames already sent).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the live socket outlived its revoked token");
    th.stop().await;
    drop(sim);
    Ok(())
}
