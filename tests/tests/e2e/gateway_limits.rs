//! The embedded gateway's limits before authentication: a storm of wrong-password logins for a
//! public device id is counted, rate-limited and locked out (argon2 runs for few of them), while
//! the real device, whose secret was verified before, keeps connecting and its readings are
//! stored.

use std::time::{Duration, Instant};

use hub::StartOptions;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
};
use tests::{TestHub, config_with, secret_of, small_site, wait_for};

use crate::bad_input::publish;

enum Outcome {
    Accepted(Box<(AsyncClient, EventLoop)>),
    Refused(ConnectReturnCode),
    /// Closed before a CONNACK (over the connection limits) or timed out.
    Closed,
}

async fn try_connect(addr: &str, device: &str, secret: &str) -> Outcome {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut mo = MqttOptions::new(
        format!("{device}-{}", rand::random::<u32>()),
        host,
        port.parse().expect("port"),
    );
    mo.set_credentials(device, secret);
    mo.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(mo, 64);
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match first {
        Ok(Ok(())) => Outcome::Accepted(Box::new((client, el))),
        Ok(Err(ConnectionError::ConnectionRefused(code))) => Outcome::Refused(code),
        _ => Outcome::Closed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_storm_is_throttled_and_the_device_still_reports() -> anyhow::Result<()> {
    let mut cfg = config_with(&small_site(&[("lim-ok", "fridge")]))?;
    cfg.mqtt.connections_per_ip_per_second = 100.0;
    cfg.mqtt.connection_burst = 100;
    cfg.mqtt.login_failure_delay = Duration::from_millis(500);
    cfg.mqtt.login_failure_max_delay = Duration::from_secs(10);
    let th = TestHub::start(cfg, StartOptions::default()).await?;
    // The hub is stopped whether the checks pass or not (a hub dropped unstopped keeps the
    // test's runtime waiting).
    let r = async {
        let addr = th.mqtt_addr();
        let secret = secret_of("lim-ok");

        // The device has logged in before (its secret is verified and remembered).
        match try_connect(&addr, "lim-ok", &secret).await {
            Outcome::Accepted(c) => c.0.disconnect().await?,
            _ => anyhow::bail!("lim-ok could not log in before the storm"),
        }

        // The storm: four clients on 127.0.0.1 guessing lim-ok's secret, for at most 3 s / 600 tries.
        let deadline = Instant::now() + Duration::from_secs(3);
        let storm = (0..4).map(|w| {
            let addr = addr.clone();
            async move {
                let (mut tries, mut refused, mut closed) = (0u32, 0u32, 0u32);
                while Instant::now() < deadline && tries < 150 {
                    tries += 1;
                    match try_connect(&addr, "lim-ok", &format!("guess-{w}-{tries}")).await {
                        Outcome::Accepted(..) => anyhow::bail!("a wrong password logged in"),
                        Outcome::Refused(_) => refused += 1,
                        Outcome::Closed => closed += 1,
                    }
                }
                Ok::<_, anyhow::Error>((tries, refused, closed))
            }
        });
        // Meanwhile the device reconnects three times and publishes 10 QoS 1 readings each time;
        // a connection closed by the rate limit is retried, as a device would.
        let device = async {
            for round in 0..3 {
                let (c, mut el) = wait_for(Duration::from_secs(15), "lim-ok to log in", || async {
                    Ok(match try_connect(&addr, "lim-ok", &secret).await {
                        Outcome::Accepted(c) => Some(*c),
                        Outcome::Refused(code) => anyhow::bail!("lim-ok refused with {code:?}"),
                        Outcome::Closed => None,
                    })
                })
                .await?;
                for i in 0..10 {
                    let body = format!(r#"{{"values":{{"temperature_c":4.{round}{i}}}}}"#);
                    publish(&c, &mut el, "sites/s1/devices/lim-ok/telemetry", body.into_bytes())
                        .await?;
                }
                c.disconnect().await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        let storm: Vec<_> = storm.map(tokio::spawn).collect();
        device.await?;
        let (mut tries, mut refused, mut closed) = (0, 0, 0);
        for task in storm {
            let (t, r, c) = task.await??;
            (tries, refused, closed) = (tries + t, refused + r, closed + c);
        }

        wait_for(Duration::from_secs(10), "lim-ok's 30 readings stored", || async {
            Ok((th.metric("hub_readings_stored_total").await? == 30.0).then_some(()))
        })
        .await?;
        let m = |s: &'static str| th.metric(s);
        let bad = m("hub_mqtt_auth_failures_total{reason=\"bad_secret\"}").await?;
        let throttled = m("hub_mqtt_auth_failures_total{reason=\"throttled\"}").await?;
        let busy = m("hub_mqtt_auth_failures_total{reason=\"busy\"}").await?;
        let rate = m("hub_mqtt_connections_refused_total{reason=\"rate\"}").await?;
        let argon2 = m("hub_mqtt_argon2_runs_total").await?;
        let summary = format!(
            "{tries} tries ({refused} refused, {closed} closed): bad_secret {bad}, throttled \
         {throttled}, busy {busy}, rate {rate}, argon2 {argon2}"
        );
        anyhow::ensure!(tries >= 50, "the storm ran: {summary}");
        anyhow::ensure!(
            f64::from(refused) == bad + throttled + busy,
            "every CONNACK refusal counted: {summary}"
        );
        anyhow::ensure!(
            rate >= f64::from(closed),
            "connections closed at accept are counted: {summary}"
        );
        anyhow::ensure!(
            bad >= 1.0 && throttled > 0.0,
            "wrong secrets locked the device out: {summary}"
        );
        // One run for the first login, then one per lock-out period at most (0.5 s doubling).
        anyhow::ensure!(argon2 <= 1.0 + bad && argon2 * 10.0 < f64::from(tries), "{summary}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    th.stop().await;
    r
}
