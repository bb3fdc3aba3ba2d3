//! Camera ingest against real GStreamer RTSP servers serving a shared clip without re-encoding:
//! key-frame-only decoding, a killed camera goes offline and comes back while another keeps
//! delivering, a bad URL gives a clear health error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::CameraId;
use common::metrics::Counter;
use devices::camera::{Clip, SimCamera};
use ingest::camera::{Analysis, Camera, CameraSpec, CameraState, Frame, RtspClient};
use tests::wait_for;
use tokio::sync::mpsc;

fn shared_clip(name: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/videos")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: the shared clips live in ../shared/data beside the project (DEVELOPERS.md)",
        p.display()
    );
    p
}

/// A short stall timeout, so that stalled cameras reconnect quickly in these tests.
const STALL: Duration = Duration::from_secs(3);

fn camera(id: &str, url: String, client: RtspClient) -> (Camera, mpsc::Receiver<Frame>) {
    let (tx, rx) = mpsc::channel(64);
    let spec = CameraSpec {
        id: CameraId::new(id).unwrap(),
        url,
        latency_ms: 200,
        analysis: Analysis::Keyframes,
        client,
        stall_timeout: STALL,
        live: None,
    };
    (Camera::start(spec, tx, Arc::new(Counter::default())), rx)
}

/// Each named test body (an `async fn(RtspClient)`) becomes a module with one test per RTSP
/// client: `name::native` and `name::gstreamer`.
macro_rules! on_both_clients {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use ingest::camera::RtspClient;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn native() -> anyhow::Result<()> {
                super::$name(RtspClient::Native).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gstreamer() -> anyhow::Result<()> {
                super::$name(RtspClient::Gstreamer).await
            }
        }
    )*};
}

on_both_clients!(
    cameras_decode_key_frames_and_recover_while_others_keep_delivering,
    a_bad_url_gives_a_clear_health_error,
    wrong_credentials_give_a_clear_health_error_and_right_ones_connect,
    one_server_many_mounts_stalled_and_garbage_cameras_leave_the_others_alone,
    sampled_decoding_keeps_n_frames_a_second,
);

/// Frames received so far (without waiting).
fn drain(rx: &mut mpsc::Receiver<Frame>, into: &mut Vec<Frame>) {
    while let Ok(f) = rx.try_recv() {
        into.push(f);
    }
}

async fn cameras_decode_key_frames_and_recover_while_others_keep_delivering(
    client: RtspClient,
) -> anyhow::Result<()> {
    // 480×270 at 15 fps with a key frame every 15 frames.
    let clip = Clip::from_mp4(&shared_clip("intel_worker-zone-detection_from-gif.mp4"))?;
    assert!(clip.keyframes() >= 4, "{clip:?}");
    let sim1 = SimCamera::start(&clip, 0, "cam1")?;
    let sim2 = SimCamera::start(&clip, 0, "cam2")?;
    let port1 = sim1.port;
    let (cam1, mut rx1) = camera("cam1", sim1.url(), client);
    let (cam2, mut rx2) = camera("cam2", sim2.url(), client);
    let (mut f1, mut f2) = (Vec::new(), Vec::new());

    wait_for(Duration::from_secs(20), "three analysed frames from each camera", || {
        drain(&mut rx1, &mut f1);
        drain(&mut rx2, &mut f2);
        let done = f1.len() >= 3 && f2.len() >= 3;
        async move { Ok(done.then_some(())) }
    })
    .await?;
    let f = &f1[0];
    assert_eq!((f.width, f.height, f.rgb.len()), (480, 270, 480 * 270 * 3));
    let h = cam1.health();
    assert_eq!(h.state, CameraState::Online);
    // Key frames only: one decoded frame per GOP of 15 input frames.
    assert!(h.frames_in >= 15 * (h.frames_decoded.saturating_sub(1)), "{h:?}");
    assert!(h.frames_decoded * 5 <= h.frames_in + 5, "decoded {h:?}");
    assert!(h.last_keyframe_at.is_some());

    // Kill camera 1: it goes offline with an error; camera 2 keeps its session and delivers.
    // Counts, not rates over a window, so a loaded machine cannot fail it: camera 2 never
    // reconnects and delivers another 45 units (3 s of its clip) after camera 1 went offline.
    let reconnects = cam2.health().reconnects;
    sim1.stop();
    wait_for(Duration::from_secs(15), "camera 1 offline", || {
        let h = cam1.health();
        async move { Ok((h.state == CameraState::Offline && h.last_error.is_some()).then_some(())) }
    })
    .await?;
    let at_outage = cam2.health().frames_in;
    wait_for(Duration::from_secs(30), "45 more input units from camera 2", || {
        let n = cam2.health().frames_in;
        async move { Ok((n >= at_outage + 45).then_some(())) }
    })
    .await?;
    let h2 = cam2.health();
    assert_eq!((h2.state, h2.reconnects), (CameraState::Online, reconnects), "{h2:?}");
    drain(&mut rx2, &mut f2);
    let before = f2.len();
    wait_for(Duration::from_secs(10), "camera 2 delivering during the outage", || {
        drain(&mut rx2, &mut f2);
        let n = f2.len();
        async move { Ok((n >= before + 2).then_some(())) }
    })
    .await?;

    // Camera 1's server returns on the same address: the camera comes back by itself. How
    // fast is a measurement (printed here, `hub bench cameras` reports it), not an assertion:
    // a loaded CI machine may take longer than an idle one.
    let sim1 = SimCamera::start(&clip, port1, "cam1")?;
    let returned = std::time::Instant::now();
    drain(&mut rx1, &mut f1);
    let seen = f1.len();
    wait_for(Duration::from_secs(30), "camera 1 back online", || {
        let ok = cam1.health().state == CameraState::Online;
        async move { Ok(ok.then_some(())) }
    })
    .await?;
    eprintln!("camera 1 back online {:?} after its server returned", returned.elapsed());
    // …and analysing again (the next key frame).
    wait_for(Duration::from_secs(30), "camera 1's frames again", || {
        drain(&mut rx1, &mut f1);
        let ok = f1.len() > seen;
        async move { Ok(ok.then_some(())) }
    })
    .await?;
    cam1.stop();
    cam2.stop();
    drop((sim1, sim2));
    Ok(())
}

async fn a_bad_url_gives_a_clear_health_error(client: RtspClient) -> anyhow::Result<()> {
    let logs = crate::logs::capture();
    let (cam, _rx) = camera("nowhere", "rtsp://admin:s3cret@127.0.0.1:9/none".into(), client);
    let h = wait_for(Duration::from_secs(15), "an error in the camera's health", || {
        let h = cam.health();
        async move { Ok(h.last_error.is_some().then_some(h)) }
    })
    .await?;
    let err = h.last_error.unwrap();
    eprintln!("{client:?} client, unreachable camera: {err}");
    assert!(!err.contains("s3cret"), "credentials leaked: {err}");
    assert_eq!(h.state, CameraState::Offline, "{err}");
    // The log line names the URL (so a missing redaction would show the password there).
    let failed = logs.lines_with(&["camera failed", "camera=nowhere"]);
    assert!(
        failed.iter().any(|l| l.contains("rtsp://admin:***@127.0.0.1:9/none")),
        "the failure is logged with the URL, password redacted: {failed:?}"
    );
    assert_eq!(logs.lines_with(&["s3cret"]), Vec::<String>::new(), "credentials leaked");
    cam.stop();
    Ok(())
}

/// `analysis = "fps"`: every unit is decoded (from the first key frame on) and N frames a
/// second are kept.
async fn sampled_decoding_keeps_n_frames_a_second(client: RtspClient) -> anyhow::Result<()> {
    // 10 fps with a key frame every 10 frames.
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::start(&clip, 0, "sampled")?;
    let (tx, mut rx) = mpsc::channel(64);
    let spec = CameraSpec {
        id: CameraId::new("sampled").unwrap(),
        url: sim.url(),
        latency_ms: 200,
        analysis: Analysis::Fps(5),
        client,
        stall_timeout: STALL,
        live: None,
    };
    let cam = Camera::start(spec, tx, Arc::new(Counter::default()));
    let mut got = Vec::new();
    wait_for(Duration::from_secs(30), "twelve sampled frames", || {
        drain(&mut rx, &mut got);
        let done = got.len() >= 12;
        async move { Ok(done.then_some(())) }
    })
    .await?;
    let h = cam.health();
    assert!(got.iter().all(|f| (f.width, f.height, f.rgb.len()) == (320, 180, 320 * 180 * 3)));
    // Half the input rate: more than every key frame (1 a second), fewer than every frame.
    assert!(h.frames_decoded * 3 >= h.keyframes_in * 4, "more than key frames: {h:?}");
    assert!(h.frames_decoded * 3 <= h.frames_in * 2 + 6, "about half the frames: {h:?}");
    cam.stop();
    drop(sim);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_camera_decodes_nothing() -> anyhow::Result<()> {
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::start(&clip, 0, "relay")?;
    let (tx, mut rx) = mpsc::channel(4);
    let spec = CameraSpec {
        id: CameraId::new("relay").unwrap(),
        url: sim.url(),
        latency_ms: 200,
        analysis: Analysis::Off,
        client: RtspClient::Native,
        stall_timeout: STALL,
        live: None,
    };
    let cam = Camera::start(spec, tx, Arc::new(Counter::default()));
    // Rates are the health's own measurement: positive once a tick has seen units (no
    // threshold that a loaded machine could miss).
    let h = wait_for(Duration::from_secs(20), "20 input frames counted and measured", || {
        let h = cam.health();
        let ok = h.state == CameraState::Online
            && h.frames_in >= 20
            && h.input_fps > 0.0
            && h.bitrate > 0.0;
        async move { Ok(ok.then_some(h)) }
    })
    .await?;
    assert_eq!(h.frames_decoded, 0, "{h:?}");
    assert!(rx.try_recv().is_err(), "no frame reaches analysis");
    cam.stop();
    drop(sim);
    Ok(())
}

async fn wrong_credentials_give_a_clear_health_error_and_right_ones_connect(
    client: RtspClient,
) -> anyhow::Result<()> {
    let logs = crate::logs::capture();
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::serve(0, &[("secured", &clip)], Some(("admin", "right-pw")))?;
    let (bad, _rx_bad) =
        camera("bad", sim.url().replace("rtsp://", "rtsp://admin:wrong-pw@"), client);
    let (good, _rx_good) =
        camera("good", sim.url().replace("rtsp://", "rtsp://admin:right-pw@"), client);
    let h = wait_for(Duration::from_secs(20), "an error in the bad camera's health", || {
        let h = bad.health();
        async move { Ok(h.last_error.is_some().then_some(h)) }
    })
    .await?;
    let err = h.last_error.unwrap();
    eprintln!("{client:?} client, wrong password: {err}");
    assert!(err.to_lowercase().contains("authoriz"), "the error says what is wrong: {err}");
    assert!(!err.contains("wrong-pw"), "credentials leaked: {err}");
    assert_ne!(h.state, CameraState::Online);
    let failed = logs.lines_with(&["camera failed", "camera=bad"]);
    assert!(
        failed.iter().any(|l| l.contains("rtsp://admin:***@")),
        "the failure is logged with the URL, password redacted: {failed:?}"
    );
    assert_eq!(logs.lines_with(&["wrong-pw"]), Vec::<String>::new(), "credentials leaked");
    wait_for(Duration::from_secs(20), "the camera with the right password online", || {
        let ok = good.health().state == CameraState::Online;
        async move { Ok(ok.then_some(())) }
    })
    .await?;
    bad.stop();
    good.stop();
    Ok(())
}

async fn one_server_many_mounts_stalled_and_garbage_cameras_leave_the_others_alone(
    client: RtspClient,
) -> anyhow::Result<()> {
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::serve(0, &[("m1", &clip), ("m2", &clip), ("m3", &clip)], None)?;
    let (c1, _r1) = camera("m1", sim.url_of("m1"), client);
    let (c2, _r2) = camera("m2", sim.url_of("m2"), client);
    let (c3, _r3) = camera("m3", sim.url_of("m3"), client);
    wait_for(Duration::from_secs(30), "three mounts online", || {
        let ok = [&c1, &c2, &c3]
            .iter()
            .all(|c| c.health().state == CameraState::Online && c.health().frames_in > 10);
        async move { Ok(ok.then_some(())) }
    })
    .await?;

    // Stall m2, feed garbage to m3.
    sim.stall("m2", true);
    sim.garbage("m3", true);
    let h2 = wait_for(Duration::from_secs(30), "the stalled camera offline", || {
        let h = c2.health();
        async move { Ok((h.state != CameraState::Online && h.last_error.is_some()).then_some(h)) }
    })
    .await?;
    assert!(h2.last_error.as_deref().is_some_and(|e| e.contains("no data")), "{h2:?}");
    // Meanwhile m1 keeps its session and delivers: 30 more units (3 s of its clip) while the
    // others are still failing. Counts, not a rate over a second, so load cannot fail it.
    let (reconnects, at_fault) = (c1.health().reconnects, c1.health().frames_in);
    wait_for(Duration::from_secs(30), "30 more input units from m1", || {
        let n = c1.health().frames_in;
        async move { Ok((n >= at_fault + 30).then_some(())) }
    })
    .await?;
    let h1 = c1.health();
    assert_eq!((h1.state, h1.reconnects), (CameraState::Online, reconnects), "{h1:?}");
    assert_ne!(c2.health().state, CameraState::Online, "m2 still stalled meanwhile");

    // Faults end: both come back by themselves and decode again.
    sim.stall("m2", false);
    sim.garbage("m3", false);
    for c in [&c2, &c3] {
        let decoded = c.health().frames_decoded;
        wait_for(Duration::from_secs(40), "a faulty camera back and decoding", || {
            let h = c.health();
            async move {
                Ok((h.state == CameraState::Online && h.frames_decoded > decoded + 1).then_some(()))
            }
        })
        .await?;
    }
    for c in [c1, c2, c3] {
        c.stop();
    }
    Ok(())
}

/// Which database a hub under test stores in.
#[derive(Debug, Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// A hub with one relay-only camera on `url` (`offline_after` = 6 s, `stall_timeout` = 2 s).
async fn outage_hub(db: Db, url: &str) -> anyhow::Result<tests::TestHub> {
    let mut cfg = tests::config_with(&format!(
        "{}\n[[cameras]]\nid = \"yard\"\nsite = \"s1\"\nurl = \"{url}\"\nanalysis = \"off\"\n\
         pull = \"always\"\noffline_after = \"6s\"\nstall_timeout = \"2s\"\n",
        tests::small_site(&[])
    ))?;
    if let Db::Postgres = db {
        cfg.database.url = tests::fresh_postgres_database().await?;
    }
    tests::TestHub::start(cfg, hub::StartOptions::default()).await
}

/// Waits until the camera delivers (online, with more input units than `after`); returns
/// its `frames_in`.
async fn yard_delivering(th: &tests::TestHub, after: u64) -> anyhow::Result<u64> {
    wait_for(Duration::from_secs(30), "camera yard online and delivering", || async move {
        let h = th.get("/api/v1/cameras/yard").await?["health"].clone();
        let n = h["frames_in"].as_u64().unwrap_or(0);
        Ok((h["state"] == "online" && n > after + 5).then_some(n))
    })
    .await
}

async fn yard_offline_findings(th: &tests::TestHub) -> anyhow::Result<Vec<serde_json::Value>> {
    th.all_findings("camera=yard&rule=camera-offline").await
}

/// A pause shorter than `offline_after` only reconnects; a longer outage raises exactly one
/// finding, cleared with the outage's duration once the camera delivers again.
async fn a_camera_outage_raises_one_finding_and_a_pause_none(db: Db) -> anyhow::Result<()> {
    let clip = Clip::synthetic(320, 180, 10, 2)?;
    let sim = SimCamera::start(&clip, 0, "yard")?;
    let port = sim.port;
    let th = outage_hub(db, &sim.url()).await?;
    let cam = th.get("/api/v1/cameras/yard").await?;
    assert_eq!((&cam["offline_after"], &cam["stall_timeout"]), (&"6s".into(), &"2s".into()));
    let n = yard_delivering(&th, 0).await?;

    // A short stop of the server (well under offline_after): the camera reconnects, no finding.
    // The outage lasts until the hub has seen the stream go and one reconnection fail.
    sim.stop();
    let lost = wait_for(Duration::from_secs(15), "camera yard losing its stream", || async {
        let h = th.get("/api/v1/cameras/yard").await?["health"].clone();
        Ok((h["state"] != "online").then(|| h["reconnects"].as_u64().unwrap_or(0)))
    })
    .await?;
    wait_for(Duration::from_secs(15), "a reconnection to the stopped server failing", || async {
        let h = th.get("/api/v1/cameras/yard").await?["health"].clone();
        Ok((h["reconnects"].as_u64().unwrap_or(0) > lost).then_some(()))
    })
    .await?;
    let sim = SimCamera::start(&clip, port, "yard")?;
    let n = yard_delivering(&th, n).await?;
    let found = yard_offline_findings(&th).await?;
    assert!(found.is_empty(), "a short pause raised a finding: {found:?}");

    // A stop longer than offline_after: one finding while it lasts…
    sim.stop();
    let open = wait_for(Duration::from_secs(30), "a camera-offline finding", || async {
        Ok(yard_offline_findings(&th).await?.into_iter().next())
    })
    .await?;
    assert_eq!((&open["state"], &open["kind"]), (&"active".into(), &"offline".into()), "{open}");
    // …cleared, with the outage's duration, once the camera is back.
    let _sim = SimCamera::start(&clip, port, "yard")?;
    yard_delivering(&th, n).await?;
    let cleared = wait_for(Duration::from_secs(15), "the offline finding cleared", || async {
        let f = yard_offline_findings(&th).await?;
        Ok(f.iter().any(|f| f["state"] == "cleared").then_some(f))
    })
    .await?;
    assert_eq!(cleared.len(), 1, "one finding per outage: {cleared:?}");
    let details = &cleared[0]["details"];
    let outage = details["outage_ms"].as_u64().unwrap_or(0);
    assert!(outage >= 6000, "the outage lasted at least offline_after: {details}");
    assert_eq!(cleared[0]["id"], open["id"], "{cleared:?}");
    th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_outage_raises_one_finding_and_a_pause_none_on_sqlite() -> anyhow::Result<()> {
    a_camera_outage_raises_one_finding_and_a_pause_none(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_outage_raises_one_finding_and_a_pause_none_on_postgres() -> anyhow::Result<()> {
    a_camera_outage_raises_one_finding_and_a_pause_none(Db::Postgres).await
}
