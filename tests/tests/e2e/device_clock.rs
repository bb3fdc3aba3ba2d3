//! A device's clock cannot silence its rules: a reading whose `ts` lies outside the window around
//! the hub's clock (`pipeline.max_clock_skew_ahead`, `pipeline.max_reading_age`) is refused,
//! counted and logged with the device, and the device's next good reading still raises findings.

use std::time::Duration;

use hub::StartOptions;
use tests::{TestHub, config_with, secret_of, small_site, wait_for};

use crate::bad_input::{connect, publish};
use crate::logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_reading_is_refused_and_does_not_silence_the_device() -> anyhow::Result<()> {
    let logs = logs::capture();
    let mut cfg = config_with(&small_site(&[("clk-a", "fridge")]))?;
    // The shipped window (the helper widens the age for tests that replay history).
    let defaults = config::Pipeline::default();
    cfg.pipeline.max_clock_skew_ahead = defaults.max_clock_skew_ahead;
    cfg.pipeline.max_reading_age = defaults.max_reading_age;
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    // The hub is stopped whether the checks pass or not (a hub dropped unstopped keeps the
    // test's runtime waiting).
    let r = async {
        let (c, mut el) =
            connect(&th.mqtt_addr(), "clk-a", &secret_of("clk-a")).await?.expect("clk-a connects");
        let topic = "sites/s1/devices/clk-a/telemetry";

        // 2100-01-01, then 1970: both outside the window.
        publish(
            &c,
            &mut el,
            topic,
            br#"{"ts":4102444800000,"values":{"temperature_c":4.0}}"#.to_vec(),
        )
        .await?;
        publish(&c, &mut el, topic, br#"{"ts":1000,"values":{"temperature_c":4.0}}"#.to_vec())
            .await?;
        // 25 °C now (no ts: the time of arrival) is above the critical threshold of a fridge.
        publish(&c, &mut el, topic, br#"{"values":{"temperature_c":25.0}}"#.to_vec()).await?;

        let findings =
            wait_for(Duration::from_secs(10), "the critical finding of clk-a", || async {
                let f = th.all_findings("device=clk-a").await?;
                Ok((!f.is_empty()).then_some(f))
            })
            .await?;
        anyhow::ensure!(
            findings.iter().any(|f| f["rule"] == "coldchain-temp-critical"),
            "the reading after the far-future one fired: {findings:?}"
        );
        let r = th.get("/api/v1/devices/clk-a/readings").await?;
        let items = r["items"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(items.len() == 1, "only the in-window reading is stored: {r}");
        anyhow::ensure!(items[0]["values"]["temperature_c"] == 25.0, "{r}");
        let refused = th.metric("hub_readings_rejected_total{reason=\"ts_out_of_window\"}").await?;
        anyhow::ensure!(refused == 2.0, "both out-of-window readings counted: {refused}");
        let lines = logs.lines_with(&["device message refused", "ts_out_of_window", "clk-a"]);
        anyhow::ensure!(!lines.is_empty(), "the refusal is logged with the device");
        anyhow::ensure!(
            lines[0].contains("4102444800000"),
            "the log line says which ts: {}",
            lines[0]
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    th.stop().await;
    r
}
