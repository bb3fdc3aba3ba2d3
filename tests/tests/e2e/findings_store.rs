//! Finding deduplication and life cycle in the store, on SQLite and on PostgreSQL.

use std::sync::Arc;

use common::{FindingState, Severity};
use hub::auth::Scope;
use hub::store::{AuditEntry, Batch, CameraRow, EvidenceRow, FindingHit, Store};

fn audit() -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        address: "-".into(),
        action: "finding.transition".into(),
        target: "finding".into(),
        before: None,
        after: None,
    }
}

fn hit(key: &str, ts: i64) -> FindingHit {
    FindingHit {
        dedup_key: key.into(),
        site_id: "s1".into(),
        device_id: Some("d1".into()),
        camera_id: None,
        rule: "r".into(),
        kind: "threshold".into(),
        severity: Severity::Major,
        item_code: Some("12345678901234".into()),
        region: Some("610100".into()),
        summary: "test".into(),
        first_seen: ts,
        last_seen: ts,
        count: 1,
        last_value: Some(ts as f64),
        details: "{}".into(),
        evidence: Vec::new(),
    }
}

async fn dedup_under_concurrency_and_life_cycle(store: Store) -> anyhow::Result<()> {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let batch = Batch {
                    findings: vec![hit("s1|d1|r|threshold", t * 100 + i)],
                    ..Default::default()
                };
                store.write_batch(&batch, 0).await?;
            }
            Ok::<_, hub::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let open = store
        .findings(&hub::store::FindingFilter { limit: 100, ..Default::default() }, &Scope::All)
        .await?;
    assert_eq!(open.len(), 1, "one finding for one key: {open:?}");
    let f = &open[0];
    assert_eq!(f.count, 200);
    assert_eq!((f.first_seen, f.last_seen), (0, 724));

    // active → acknowledged → cleared; other moves are refused.
    let acked =
        store.transition(f.id, FindingState::Acknowledged, 1, &Scope::All, &audit()).await?;
    assert_eq!(acked.state, "acknowledged");
    let again = store
        .transition(f.id, FindingState::Acknowledged, 2, &Scope::All, &audit())
        .await
        .unwrap_err();
    assert_eq!(again.kind(), common::ErrorKind::Conflict, "{again}");
    // A repeat while acknowledged still folds into it.
    let c = store
        .write_batch(
            &Batch { findings: vec![hit("s1|d1|r|threshold", 900)], ..Default::default() },
            3,
        )
        .await?
        .changes;
    assert_eq!((c[0].id, c[0].opened, c[0].count), (f.id, false, 201));
    store.transition(f.id, FindingState::Cleared, 4, &Scope::All, &audit()).await?;
    // After clearing, the same condition opens a new finding.
    let c = store
        .write_batch(
            &Batch { findings: vec![hit("s1|d1|r|threshold", 1000)], ..Default::default() },
            5,
        )
        .await?
        .changes;
    assert!(c[0].opened && c[0].id != f.id && c[0].count == 1, "{c:?}");
    let missing = store
        .transition(999_999, FindingState::Cleared, 6, &Scope::All, &audit())
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), common::ErrorKind::NotFound);

    // Retention deletes readings by arrival time, and nothing else.
    let readings = (0..10)
        .map(|i| hub::store::ReadingRow {
            device_id: "d1".into(),
            ts: i,
            received_at: i * 1000,
            vals: "{\"t\":1}".into(),
            device_clock: true,
        })
        .collect::<Vec<_>>();
    let w =
        store.write_batch(&Batch { readings: readings.clone(), ..Default::default() }, 7).await?;
    assert_eq!(w.readings, 10);
    // Sent again (a lost PUBACK): the device's own (device, ts) is stored once.
    let again = store.write_batch(&Batch { readings, ..Default::default() }, 7).await?;
    assert_eq!(again.readings, 0, "a reading sent twice is stored once");
    assert_eq!(store.count_readings().await?, 10);
    // Readings stamped with the hub's clock have no such key: both are kept.
    let hub_clock = |v: &str| hub::store::ReadingRow {
        device_id: "d2".into(),
        ts: 50,
        received_at: 50_000,
        vals: v.into(),
        device_clock: false,
    };
    let w = store
        .write_batch(
            &Batch {
                readings: vec![hub_clock("{\"t\":1}"), hub_clock("{\"t\":2}")],
                ..Default::default()
            },
            7,
        )
        .await?;
    assert_eq!(w.readings, 2);
    // Retention goes in bounded chunks.
    assert_eq!(store.delete_readings_before(4000, 3).await?, 3);
    assert_eq!(store.delete_readings_before(4000, 3).await?, 1);
    assert_eq!(store.delete_readings_before(4000, 3).await?, 0);
    assert_eq!(store.count_readings().await?, 8);
    assert_eq!(store.readings("d1", None, None, 100).await?.last().map(|r| r.ts), Some(4));

    // Evidence commits with its finding; each occurrence keeps its own.
    let mut h = hit("s1|cam|v|detection", 2000);
    h.camera_id = Some("cam".into());
    h.evidence = vec![EvidenceRow {
        captured_at: 2000,
        frame_path: "d/a-frame.jpg".into(),
        annotated_path: "d/a-annotated.jpg".into(),
        details: "{\"detections\":[]}".into(),
        missing: None,
    }];
    let first = store
        .write_batch(&Batch { findings: vec![h.clone()], ..Default::default() }, 8)
        .await?
        .changes;
    h.evidence[0].captured_at = 2001;
    let second =
        store.write_batch(&Batch { findings: vec![h], ..Default::default() }, 9).await?.changes;
    assert_eq!(first[0].id, second[0].id);
    let ev = store.evidence(&[first[0].id]).await?;
    assert_eq!(ev.iter().map(|e| e.captured_at).collect::<Vec<_>>(), vec![2000, 2001]);
    assert_eq!(ev[0].annotated_path, "d/a-annotated.jpg");
    assert!(store.evidence(&[]).await?.is_empty());
    // Retention removes old evidence rows and returns their files; the finding stays.
    let gone = store.delete_evidence_before(2001).await?;
    assert_eq!(gone, ["d/a-frame.jpg", "d/a-annotated.jpg"]);
    assert_eq!(store.evidence(&[first[0].id]).await?.len(), 1);
    assert!(store.finding(first[0].id, &Scope::All).await?.is_some());

    // Cameras: insert once, replace, delete.
    let site: config::Site = toml::from_str(
        "id = \"s1\"\nname = \"S\"\nregion = \"610100\"\nindustry = \"food\"\n\
         entity_name = \"E\"\nuscc = \"91350100M000100Y43\"",
    )?;
    store.upsert_site(&site).await?;
    let mut cam = CameraRow {
        id: "cam".into(),
        site_id: "s1".into(),
        spec: "{}".into(),
        source: "api".into(),
        created_at: 1,
        updated_at: 1,
    };
    assert!(store.upsert_camera(&cam, false).await?);
    assert!(!store.upsert_camera(&cam, false).await?, "an existing camera is not overwritten");
    cam.spec = "{\"x\":1}".into();
    store.upsert_camera(&cam, true).await?;
    assert_eq!(store.cameras().await?[0].spec, "{\"x\":1}");
    assert!(store.delete_camera("cam").await?);
    assert!(store.cameras().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_dedup_and_life_cycle_on_sqlite() -> anyhow::Result<()> {
    let dir = tests::scratch_dir("store");
    let store = Store::connect("sqlite://hub.db", &dir, 8).await?;
    dedup_under_concurrency_and_life_cycle(store).await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_dedup_and_life_cycle_on_postgres() -> anyhow::Result<()> {
    let url = tests::fresh_postgres_database().await?;
    let store = Store::connect(&url, std::path::Path::new("."), 8).await?;
    dedup_under_concurrency_and_life_cycle(store).await
}
