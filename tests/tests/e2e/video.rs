//! The video path end to end: a simulated RTSP camera serving a shared clip → key-frame decode
//! → FastestDet → zone rule → a finding with JPEG evidence; cameras managed through the API;
//! a killed camera raises an offline finding.

use std::time::Duration;

use devices::camera::{Clip, SimCamera};
use hub::StartOptions;
use serde_json::{Value, json};
use tests::{TestHub, config_with, model_search_path, shared_data, small_site, wait_for};

const ZONE_RULE: &str = r#"
[[cameras.zones]]
name = "floor-left"
polygon = [[0.0, 0.4], [0.5, 0.4], [0.5, 1.0], [0.0, 1.0]]
[[cameras.rules]]
id = "person-in-zone"
model = "fastestdet"
labels = ["person"]
min_score = 0.5
zone = "floor-left"
cooldown = "1h"
severity = "major"
item_code = "11610100000001"
summary = "person in the restricted floor zone"
"#;

async fn send(th: &TestHub, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", th.base);
    let mut req = match method {
        "POST" => th.http.post(url),
        "PATCH" => th.http.patch(url),
        "DELETE" => th.http.delete(url),
        _ => th.http.get(url),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn bytes(th: &TestHub, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let r = th.http.get(format!("{}{path}", th.base)).send().await?;
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, ct, r.bytes().await?.to_vec()))
}

fn jpeg_size(b: &[u8]) -> (u16, u16) {
    let mut d = jpeg_decoder::Decoder::new(b);
    d.decode().expect("a JPEG");
    let i = d.info().expect("JPEG info");
    (i.width, i.height)
}

/// The dock camera's person in the floor zone becomes a finding with JPEG evidence.
async fn clip_becomes_a_finding_with_evidence(th: &TestHub) -> anyhow::Result<()> {
    // The person on the left of the floor becomes one finding with evidence.
    let f = wait_for(Duration::from_secs(60), "a video finding", || async move {
        let items = th.all_findings("camera=dock&rule=person-in-zone").await?;
        Ok(items.into_iter().find(|f| f["evidence"].as_array().is_some_and(|e| !e.is_empty())))
    })
    .await?;
    assert_eq!(f["kind"], "detection");
    assert_eq!(f["severity"], "major");
    assert_eq!(f["item_code"], "11610100000001");
    assert_eq!(f["region"], "610100");
    let ev = &f["evidence"][0];
    let dets = ev["detections"]["detections"].as_array().expect("detections");
    assert!(
        dets.iter().any(|d| d["label"] == "person" && d["matched"] == true),
        "the evidence names the person: {ev}"
    );
    for key in ["annotated_url", "frame_url"] {
        let (status, ct, body) = bytes(th, ev[key].as_str().unwrap()).await?;
        assert_eq!((status, ct.as_str()), (200, "image/jpeg"), "{key}");
        assert_eq!(jpeg_size(&body), (480, 270), "{key}");
    }
    let (status, ct, _) = bytes(th, &format!("/api/v1/findings/{}/evidence", f["id"])).await?;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    let files = std::fs::read_dir(th.dir.join("evidence"))?.count();
    assert!(files >= 1, "evidence is stored under data_dir/evidence");

    Ok(())
}

fn dock_config(sim: &SimCamera) -> anyhow::Result<config::Config> {
    let mut cfg = config_with(&format!(
        "{}\n[[cameras]]\nid = \"dock\"\nsite = \"s1\"\nname = \"Dock floor\"\nurl = \"{}\"\noffline_after = \"3s\"\n{ZONE_RULE}",
        small_site(&[]),
        sim.url()
    ))?;
    cfg.models.search_path = model_search_path()?;
    Ok(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_clip_becomes_a_finding_with_evidence_on_postgres() -> anyhow::Result<()> {
    let clip = Clip::from_mp4(&shared_data("videos/intel_worker-zone-detection_from-gif.mp4")?)?;
    let sim = SimCamera::start(&clip, 0, "dock")?;
    let mut cfg = dock_config(&sim)?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    clip_becomes_a_finding_with_evidence(&th).await?;
    th.stop().await;
    drop(sim);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_clip_becomes_a_finding_with_jpeg_evidence_and_cameras_are_managed_live()
-> anyhow::Result<()> {
    let clip = Clip::from_mp4(&shared_data("videos/intel_worker-zone-detection_from-gif.mp4")?)?;
    let sim = SimCamera::start(&clip, 0, "dock")?;
    let relay = SimCamera::start(&Clip::synthetic(320, 180, 10, 2)?, 0, "relay")?;
    let th = TestHub::start(dock_config(&sim)?, StartOptions::default()).await?;

    clip_becomes_a_finding_with_evidence(&th).await?;

    // Health and snapshot of the config camera.
    let (s, cam) = send(&th, "GET", "/api/v1/cameras/dock", None).await;
    assert_eq!(s, 200, "{cam}");
    assert_eq!(cam["health"]["state"], "online", "{cam}");
    assert_eq!(cam["source"], "config");
    assert_eq!(cam["analysis"], "keyframes");
    assert!(cam["stats"]["frames_analysed"].as_u64() >= Some(1), "{cam}");
    let (status, ct, body) = bytes(&th, "/api/v1/cameras/dock/snapshot").await?;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(jpeg_size(&body), (480, 270));
    let (s, body) = send(&th, "PATCH", "/api/v1/cameras/dock", Some(json!({"name": "x"}))).await;
    assert_eq!(s, 409, "config cameras change through the file: {body}");

    // Bad cameras are refused with what and where.
    for (bad, needle) in [
        (json!({"id": "b1", "site": "s1", "url": "http://x/y"}), "rtsp://"),
        (json!({"id": "b2", "site": "nowhere", "url": "rtsp://h/x"}), "site"),
        (
            json!({"id": "b3", "site": "s1", "url": "rtsp://h/x", "rules": [{"id": "r",
                "model": "fastestdet", "labels": ["persn"], "severity": "minor",
                "item_code": "11610100000001"}]}),
            "persn",
        ),
        (
            json!({"id": "b4", "site": "s1", "url": "rtsp://h/x", "rules": [{"id": "r",
                "model": "nope", "severity": "minor", "item_code": "11610100000001"}]}),
            "nope",
        ),
        (json!({"id": "b5", "site": "s1", "url": "rtsp://h/x", "colour": 1}), "colour"),
    ] {
        let (s, body) = send(&th, "POST", "/api/v1/cameras", Some(bad)).await;
        assert_eq!(s, 400, "{body}");
        assert!(body.to_string().contains(needle), "{needle}: {body}");
    }

    // A relay-only camera pulled always, added at run time: online, nothing decoded, no
    // snapshot.
    let url = relay.url().replace("rtsp://", "rtsp://viewer:pw123@");
    let (s, body) = send(
        &th,
        "POST",
        "/api/v1/cameras",
        Some(json!({"id": "gate", "site": "s1", "url": url, "analysis": "off", "pull": "always"})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert!(!body.to_string().contains("pw123"), "credentials leaked: {body}");
    let (s, _) = send(
        &th,
        "POST",
        "/api/v1/cameras",
        Some(json!({"id": "gate", "site": "s1", "url": "rtsp://h/x"})),
    )
    .await;
    assert_eq!(s, 409);
    let gate = wait_for(Duration::from_secs(30), "the relay camera online", || {
        let th = &th;
        async move {
            let c = th.get("/api/v1/cameras/gate").await?;
            Ok((c["health"]["state"] == "online" && c["health"]["frames_in"].as_u64() > Some(5))
                .then_some(c))
        }
    })
    .await?;
    assert_eq!(gate["health"]["frames_decoded"], 0, "{gate}");
    let (status, _, _) = bytes(&th, "/api/v1/cameras/gate/snapshot").await?;
    assert_eq!(status, 409);
    // Renaming it restarts only that camera: its source count grows, the dock camera's stays
    // (each started once so far).
    let starts = |c: &Value| c["starts"].as_u64();
    assert_eq!(starts(&th.get("/api/v1/cameras/dock").await?), Some(1));
    assert_eq!(starts(&gate), Some(1), "{gate}");
    let (s, body) =
        send(&th, "PATCH", "/api/v1/cameras/gate", Some(json!({"name": "Main gate"}))).await;
    assert_eq!((s, body["name"].as_str()), (200, Some("Main gate")), "{body}");
    assert!(body["url"].as_str().unwrap().contains("viewer:***@"), "{body}");
    assert_eq!(starts(&body), Some(2), "the renamed camera restarted: {body}");
    let list = th.get("/api/v1/cameras").await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(starts(&th.get("/api/v1/cameras/dock").await?), Some(1), "dock restarted");
    let (s, _) = send(&th, "DELETE", "/api/v1/cameras/gate", None).await;
    assert_eq!(s, 204);
    let (s, _) = send(&th, "GET", "/api/v1/cameras/gate", None).await;
    assert_eq!(s, 404);

    // The dock camera's server dies: the camera goes offline with an offline finding.
    sim.stop();
    let off = wait_for(Duration::from_secs(30), "a camera offline finding", || {
        let th = &th;
        async move {
            let items = th.all_findings("camera=dock&rule=camera-offline").await?;
            Ok(items.into_iter().next())
        }
    })
    .await?;
    assert_eq!(off["kind"], "offline");
    assert_eq!(th.get("/api/v1/cameras/dock").await?["health"]["state"], "offline");
    th.stop().await;
    drop(relay);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_is_reported_by_name_and_its_fixed_file_is_picked_up_at_run_time()
-> anyhow::Result<()> {
    // A model folder with FastestDet's manifest and a corrupt file beside it, and YOLOX-Nano's
    // manifest whose file comes from the shared mirror.
    let dir = tests::scratch_dir("models");
    let root = tests::project_root().join("models/vision");
    for name in ["fastestdet", "yolox-nano"] {
        std::fs::create_dir_all(dir.join(name))?;
        std::fs::copy(root.join(name).join("manifest.toml"), dir.join(name).join("manifest.toml"))?;
    }
    let corrupt = dir.join("fastestdet/fastestdet_coco80_352.onnx");
    std::fs::write(&corrupt, b"not an onnx model")?;
    let mut cfg = config_with(&small_site(&[]))?;
    cfg.models.search_path = vec![dir.clone(), shared_data("models")?];
    cfg.models.reload_interval = Duration::from_millis(200);
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let models = th.get("/api/v1/models").await?;
    assert!(names(&models, "failed").contains(&"fastestdet".to_owned()), "{models}");
    assert!(names(&models, "items").contains(&"yolox-nano".to_owned()), "{models}");
    let why = models["failed"][0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("sha256"), "the reason names the checksum: {why}");

    // The right file arrives: the library reloads without a restart.
    std::fs::copy(shared_data("models/fastestdet_coco80_352.onnx")?, &corrupt)?;
    let models = wait_for(Duration::from_secs(30), "fastestdet loaded after the fix", || {
        let th = &th;
        async move {
            let m = th.get("/api/v1/models").await?;
            Ok(names(&m, "items").contains(&"fastestdet".to_owned()).then_some(m))
        }
    })
    .await?;
    assert!(names(&models, "failed").is_empty(), "{models}");
    assert!(names(&models, "items").contains(&"yolox-nano".to_owned()), "{models}");
    th.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_adds_changes_and_removes_only_the_cameras_that_changed()
-> anyhow::Result<()> {
    let dir = tests::scratch_dir("reload");
    let path = dir.join("hub.toml");
    let camera = |id: &str, name: &str| {
        format!(
            "[[cameras]]\nid = \"{id}\"\nsite = \"s1\"\nname = \"{name}\"\nurl = \"rtsp://127.0.0.1:9/{id}\"\n"
        )
    };
    let write = |cams: &str| {
        std::fs::write(
            &path,
            format!("{}\n{}\n{cams}", config::Config::default_toml(), small_site(&[])),
        )
    };
    write(&camera("a", "A"))?;
    let cfg = config::Config::load(&path)?;
    let opts = StartOptions { config_path: Some(path.clone()), ..StartOptions::default() };
    let th = TestHub::start(cfg, opts).await?;
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    assert_eq!(ids(&th.get("/api/v1/cameras").await?), ["a"]);

    write(&format!("{}{}", camera("a", "A renamed"), camera("b", "B")))?;
    let (s, body) = send(&th, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["cameras"], json!({"added": ["b"], "changed": ["a"], "removed": []}));
    assert_eq!(th.get("/api/v1/cameras/a").await?["name"], "A renamed");
    assert_eq!(th.get("/api/v1/cameras/a").await?["starts"], 2, "a changed camera restarts");

    // Unchanged b is not restarted; a goes.
    let b_created = th.get("/api/v1/cameras/b").await?["updated_at"].clone();
    assert_eq!(th.get("/api/v1/cameras/b").await?["starts"], 1);
    write(&camera("b", "B"))?;
    let (s, body) = send(&th, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["cameras"], json!({"added": [], "changed": [], "removed": ["a"]}));
    assert_eq!(ids(&th.get("/api/v1/cameras").await?), ["b"]);
    assert_eq!(th.get("/api/v1/cameras/b").await?["updated_at"], b_created);
    assert_eq!(th.get("/api/v1/cameras/b").await?["starts"], 1, "b was restarted");

    // A bad file changes nothing and says why.
    write(&format!(
        "{}[[cameras]]\nid = \"c\"\nsite = \"s1\"\nurl = \"http://x/y\"\n",
        camera("b", "B")
    ))?;
    let (s, body) = send(&th, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.to_string().contains("rtsp://"), "{body}");
    assert_eq!(ids(&th.get("/api/v1/cameras").await?), ["b"]);
    th.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Evidence that cannot be written (a regular file where the evidence folder should be, so
/// creating it fails even for root): the finding is stored all the same, its evidence marked
/// missing with the reason, and its image URL answers 404 saying why.
async fn unwritable_evidence_still_stores_the_finding(postgres: bool) -> anyhow::Result<()> {
    let clip = Clip::from_mp4(&shared_data("videos/intel_worker-zone-detection_from-gif.mp4")?)?;
    let sim = SimCamera::start(&clip, 0, "dock")?;
    let mut cfg = dock_config(&sim)?;
    if postgres {
        cfg.database.url = tests::fresh_postgres_database().await?;
    }
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    let blocked = th.dir.join("evidence");
    std::fs::write(&blocked, b"a file where the evidence folder should be")?;
    let f = wait_for(Duration::from_secs(60), "a video finding", || async {
        let items = th.all_findings("camera=dock&rule=person-in-zone").await?;
        Ok(items.into_iter().find(|f| f["evidence"].as_array().is_some_and(|e| !e.is_empty())))
    })
    .await?;
    assert_eq!(f["state"], "active", "{f}");
    let ev = &f["evidence"][0];
    let why = ev["missing"].as_str().unwrap_or_default();
    assert!(why.contains("creating the evidence folder"), "the reason is kept: {ev}");
    assert!(ev["annotated_url"].is_null() && ev["frame_url"].is_null(), "{ev}");
    let dets = ev["detections"]["detections"].as_array().expect("detections kept");
    assert!(dets.iter().any(|d| d["label"] == "person"), "{ev}");
    let (status, body) =
        send(&th, "GET", &format!("/api/v1/findings/{}/evidence", f["id"]), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.to_string().contains("could not be written"), "{body}");
    assert!(blocked.is_file(), "nothing replaced the file");
    th.stop().await;
    drop(sim);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_evidence_still_stores_the_finding_on_sqlite() -> anyhow::Result<()> {
    unwritable_evidence_still_stores_the_finding(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_evidence_still_stores_the_finding_on_postgres() -> anyhow::Result<()> {
    unwritable_evidence_still_stores_the_finding(true).await
}
