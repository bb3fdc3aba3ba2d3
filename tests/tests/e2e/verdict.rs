//! Human verification: an operator verifies a finding (true, ready to become a supervision
//! record) or dismisses it as a false positive with a reason from the list; a verdict is given
//! once, audited, filterable, and announced on the event stream, which resumes from
//! `Last-Event-ID`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{client_with_token, config_with, create_token, wait_for};

use crate::access::{collect, two_sites, world};

async fn post(
    c: &reqwest::Client,
    url: String,
    body: Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let r = c.post(url).json(&body).send().await?;
    Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
}

/// The ids of a stream's events so far.
fn event_ids(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

async fn verdicts(cfg: config::Config) -> anyhow::Result<()> {
    let w = world(cfg).await?;
    let th = &w.th;
    let (xian, _, _) = w.ids["xian-1"];
    let (xy, _, _) = w.ids["xy-1"];
    let op = client_with_token(
        &create_token(&th.hub.store, &["duty_operator"], Some("duty"), None).await?,
    );
    let stream = |c: reqwest::Client, last: Option<String>| {
        let base = th.base.clone();
        async move {
            let mut r = c.get(format!("{base}/api/v1/findings/stream"));
            if let Some(id) = last {
                r = r.header("last-event-id", id);
            }
            let r = r.send().await?;
            anyhow::ensure!(r.status() == StatusCode::OK, "stream: {}", r.status());
            Ok(collect(r))
        }
    };
    let live = stream(op.clone(), None).await?;
    let url = |id: i64, action: &str| format!("{}/api/v1/findings/{id}/{action}", th.base);

    // Verify: acknowledged as well, with who; once only.
    let (s, f) =
        post(&op, url(xian, "verify"), json!({"note": "  worker without a helmet "})).await?;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(
        (f["verdict"].as_str(), f["state"].as_str()),
        (Some("verified"), Some("acknowledged"))
    );
    assert_eq!(f["verdict_note"], "worker without a helmet", "trimmed: {f}");
    assert!(f["verdict_by"].as_str().unwrap().starts_with("token:"), "{f}");
    assert!(f["verdict_at"].is_string() && f["acknowledged_at"].is_string(), "{f}");
    let (s, b) = post(&op, url(xian, "dismiss"), json!({"reason": "animal"})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("already verified"), "{b}");

    // Dismiss: a reason from the list; `other` needs a note; notes are bounded.
    for (body, needle) in [
        (json!({"reason": "other"}), "note: required"),
        (json!({"reason": "other", "note": "   "}), "note: required"),
        (json!({"reason": "a ghost"}), "reason"),
        (json!({"reason": "animal", "note": "x".repeat(2001)}), "at most 2000"),
        (json!({"reason": "animal", "colour": 1}), "colour"),
        (json!({}), "reason"),
    ] {
        let (s, b) = post(&op, url(xy, "dismiss"), body.clone()).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(b["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {b}");
    }
    let unchanged = th.get(&format!("/api/v1/findings/{xy}")).await?;
    assert_eq!(
        (unchanged["verdict"].as_str(), unchanged["state"].as_str()),
        (Some("unverified"), Some("active"))
    );
    let (s, f) =
        post(&op, url(xy, "dismiss"), json!({"reason": "animal", "note": "a cat"})).await?;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!((f["verdict"].as_str(), f["state"].as_str()), (Some("dismissed"), Some("cleared")));
    assert_eq!(
        (f["verdict_reason"].as_str(), f["verdict_note"].as_str()),
        (Some("animal"), Some("a cat"))
    );

    // Filterable by verdict; a bad verdict name is a clear 400.
    let dismissed = th.all_findings("verdict=dismissed").await?;
    assert_eq!(dismissed.iter().map(|f| f["id"].as_i64().unwrap()).collect::<Vec<_>>(), vec![xy]);
    let ids = |v: Vec<Value>| v.iter().filter_map(|f| f["id"].as_i64()).collect::<Vec<_>>();
    let unverified = ids(th.all_findings("verdict=unverified").await?);
    assert!(!unverified.contains(&xian) && !unverified.contains(&xy), "{unverified:?}");
    assert_eq!(ids(th.all_findings("verdict=verified,dismissed").await?).len(), 2);
    let r = th.http.get(format!("{}/api/v1/findings?verdict=maybe", th.base)).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await?;
    assert!(b["error"]["message"].as_str().unwrap().contains("unknown verdict \"maybe\""), "{b}");

    // Audited with before and after.
    for (id, action, verdict, state) in [
        (xian, "finding.verify", "verified", "acknowledged"),
        (xy, "finding.dismiss", "dismissed", "cleared"),
    ] {
        let a = th.get(&format!("/api/v1/audit?action={action}&target=finding:{id}")).await?;
        let row = &a["items"][0];
        assert_eq!(row["before"]["verdict"], "unverified", "{a}");
        assert_eq!(row["after"]["verdict"], verdict, "{a}");
        assert_eq!(row["after"]["state"], state, "{a}");
        assert!(row["actor"].as_str().unwrap().starts_with("token:"), "{a}");
    }

    // Another screen's stream carried both changes, as the finding's JSON.
    let text = wait_for(Duration::from_secs(10), "both verdicts on the stream", || async {
        let t = live.lock().unwrap().clone();
        Ok((t.contains("\"change\":\"verified\"") && t.contains("\"change\":\"dismissed\""))
            .then_some(t))
    })
    .await?;
    // A client that reconnects with the first change's id gets the changes since, at once.
    let first = *event_ids(&text).first().expect("event ids on the stream");
    let resumed = stream(op.clone(), Some(first.to_string())).await?;
    wait_for(Duration::from_secs(10), "the resumed stream to replay both changes", || async {
        let t = resumed.lock().unwrap().clone();
        Ok((t.contains("\"verdict\":\"verified\"")
            && t.contains("\"verdict\":\"dismissed\"")
            && t.contains("\"change\":\"replayed\""))
        .then_some(()))
    })
    .await?;
    // An id this stream did not give: not refused (EventSource would give up), told to reload.
    let odd = stream(op.clone(), Some("yesterday".into())).await?;
    wait_for(Duration::from_secs(10), "a lagged event for an unknown id", || async {
        Ok(odd.lock().unwrap().contains("event: lagged").then_some(()))
    })
    .await?;

    // Departments read findings but give no verdicts.
    let dept = client_with_token(
        &create_token(&th.hub.store, &["department"], Some("xian-food"), None).await?,
    );
    let (s, _) = post(&dept, url(xian, "verify"), json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    w.th.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_verify_or_dismiss_once_audited_and_streamed_sqlite() -> anyhow::Result<()> {
    verdicts(config_with(&two_sites())?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_verify_or_dismiss_once_audited_and_streamed_postgres() -> anyhow::Result<()> {
    let mut cfg = config_with(&two_sites())?;
    cfg.database.url = tests::fresh_postgres_database().await?;
    verdicts(cfg).await
}
