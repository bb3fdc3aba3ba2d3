//! Push delivery of record events (docs/records.md, "Push"): a worker claims due deliveries
//! from the outbox by lease, signs each CloudEvent by Standard Webhooks, posts it (no
//! redirects, a timeout, only to the allowed networks), and stores the outcome; retries
//! follow [`SCHEDULE`] with ±20 % jitter. Several hubs may run workers on one database: the
//! leases share the work, and a crashed worker's lease expires. Subscriptions of transport
//! `mqtt` are handed to the department's connected MQTT subscriber instead ([`mqtt`]).

pub mod mqtt;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Clock, UnixMs};
use ipnet::IpNet;

use crate::auth::networks::AllowList;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::error::Error;
use crate::store::Store;
use crate::store::records::{Attempt, Claimed, Outcome};

/// Waits after the first, second, … failed attempt (the first attempt is immediate): ten
/// attempts over about three days, as Standard Webhooks' reference schedule.
pub const SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// Bounds of an honoured `Retry-After`.
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// When to try again after `attempts` failed attempts (None: give up), with ±20 % jitter
/// (`jitter` in [-1, 1]); a `Retry-After` within bounds replaces the schedule's wait.
pub fn retry_at(
    now: UnixMs,
    attempts: i64,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<UnixMs> {
    let base = *SCHEDULE.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    let wait = match retry_after {
        Some(r) => r.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX),
        None => base.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0)),
    };
    Some(now + wait.as_millis() as i64)
}

/// When to try an MQTT delivery again after `attempts` failed ones (None: give up). Each
/// SUBSCRIBE of the department offers its pending deliveries again, so a subscriber that
/// reconnects often would spend the schedule's ten attempts in minutes: an MQTT delivery is
/// given up by age instead, once the schedule's whole span (about three days) has passed since
/// it was queued; between attempts it waits as the schedule says (its last step repeating).
pub fn mqtt_retry_at(
    now: UnixMs,
    created_at: UnixMs,
    attempts: i64,
    jitter: f64,
) -> Option<UnixMs> {
    let span: Duration = SCHEDULE.iter().sum();
    let step = attempts.clamp(1, SCHEDULE.len() as i64);
    (now - created_at < span.as_millis() as i64).then(|| retry_at(now, step, None, jitter))?
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str, now: UnixMs) -> Option<Duration> {
    if let Ok(s) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let ms = t.timestamp_millis() - now;
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// Endpoints' allow-list.
fn allow_list(networks: &[IpNet]) -> AllowList<'_> {
    AllowList { networks, what: "endpoints", setting: "delivery.networks" }
}

/// Checks an endpoint URL: http or https, no credentials, and its host's every address within
/// `networks`. Returns the addresses.
pub async fn check_destination(url: &str, networks: &[IpNet]) -> Result<Vec<IpAddr>, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?}: only http and https endpoints are delivered to"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{url:?}: credentials in the URL are refused (the signature authenticates)"
        ));
    }
    let port = u.port_or_known_default().unwrap_or(443);
    allow_list(networks).resolve(&u, port).await
}

/// The client's resolver: names resolve only to allowed addresses, at every connection (a
/// name that changes to an outside address after the check is refused too).
struct AllowListResolver {
    networks: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for AllowListResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let networks = self.networks.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            allow_list(&networks)
                .admits(&ips)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

/// The `webhook-signature` header: one `v1,…` per signing key, space-separated.
pub fn signature(keys: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let w = standardwebhooks::Webhook::new(k)
            .map_err(|e| format!("a signing key is unusable: {e}"))?;
        out.push(w.sign(id, timestamp, body).map_err(|e| e.to_string())?);
    }
    Ok(out.join(" "))
}

/// A new secret: `whsec_` and base64 of 24 random bytes.
pub fn new_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b))
}

/// The worker's handle: wake it after a change that queued deliveries.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The delivery worker of one hub.
pub struct Worker {
    pub store: Store,
    pub cfg: config::Delivery,
    pub networks: Arc<Vec<IpNet>>,
    pub waker: Waker,
    pub clock: Arc<dyn Clock>,
    /// This hub's name on its leases.
    pub owner: String,
    pub metrics: common::metrics::Registry,
    /// The departments' MQTT subscribers (embedded MQTT mode only).
    pub feeds: Option<Arc<mqtt::Feeds>>,
}

/// Attempts finished but not stored yet are stored in batches of at most this many.
const FINISH_BATCH: usize = 256;

impl Worker {
    pub fn client(&self) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.cfg.timeout)
            .connect_timeout(self.cfg.timeout)
            .dns_resolver(Arc::new(AllowListResolver { networks: self.networks.clone() }))
            .user_agent(concat!("supervision-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("building the delivery client: {e}")))
    }

    /// Runs until `shutdown`.
    pub async fn run(&self, shutdown: common::Shutdown) -> Result<(), Error> {
        let client = self.client()?;
        let conc = self.cfg.concurrency.max(1);
        let lease = self.cfg.lease.as_millis() as i64;
        let disable_after = self.cfg.disable_after.as_millis() as i64;
        let help = "record event delivery attempts, by outcome";
        let counters: Vec<(&str, Arc<common::metrics::Counter>)> =
            ["delivered", "gone", "retry", "failed"]
                .into_iter()
                .map(|o| {
                    (
                        o,
                        self.metrics.counter(
                            "hub_delivery_attempts_total",
                            help,
                            &[("outcome", o)],
                        ),
                    )
                })
                .collect();
        let mut inflight: JoinSet<Attempt> = JoinSet::new();
        let mut done: Vec<Attempt> = Vec::new();
        let mut backoff = Duration::from_millis(200);
        loop {
            if shutdown.is_triggered() {
                // Unstored outcomes are lost with the leases: those deliveries are sent again
                // (same webhook-id) once the leases expire.
                return Ok(());
            }
            let mut claimed_some = false;
            // Claim in batches: when a quarter of the slots is free (or all are), not for
            // every single one.
            if inflight.len() + conc.div_ceil(4) <= conc || inflight.is_empty() {
                let now = self.clock.now_ms();
                match self
                    .store
                    .claim_deliveries(&self.owner, now, lease, (conc - inflight.len()) as i64)
                    .await
                {
                    Ok(v) => {
                        claimed_some = !v.is_empty();
                        for c in v {
                            let client = client.clone();
                            let clock = self.clock.clone();
                            let networks = self.networks.clone();
                            let feeds = self.feeds.clone();
                            let timeout = self.cfg.timeout;
                            inflight.spawn(async move {
                                if c.subscription.transport == common::Transport::Mqtt {
                                    publish(feeds.as_deref(), timeout, clock.as_ref(), c).await
                                } else {
                                    send(&client, &networks, clock.as_ref(), c).await
                                }
                            });
                        }
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        warn!(error = %e, "claiming deliveries failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                }
            }
            if inflight.is_empty() && done.is_empty() {
                if claimed_some {
                    continue;
                }
                tokio::select! {
                    _ = self.waker.0.notified() => {}
                    _ = tokio::time::sleep(self.cfg.poll) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            if !inflight.is_empty() && done.len() < FINISH_BATCH {
                tokio::select! {
                    r = inflight.join_next() => if let Some(Ok(a)) = r { done.push(a) },
                    _ = self.waker.0.notified(), if inflight.len() < conc => {}
                    _ = tokio::time::sleep(self.cfg.poll), if inflight.len() < conc => {}
                    _ = shutdown.cancelled() => {}
                }
                while let Some(r) = inflight.try_join_next() {
                    if let Ok(a) = r {
                        done.push(a);
                    }
                }
            }
            if !done.is_empty() {
                let now = self.clock.now_ms();
                match self.store.finish_deliveries(&self.owner, &done, now, disable_after).await {
                    Ok(()) => {
                        for a in &done {
                            let outcome = match a.outcome {
                                Outcome::Delivered { .. } => "delivered",
                                Outcome::Gone { .. } => "gone",
                                Outcome::Failed { retry_at: Some(_), .. } => "retry",
                                Outcome::Failed { retry_at: None, .. } => "failed",
                            };
                            if let Some((_, c)) = counters.iter().find(|(o, _)| *o == outcome) {
                                c.inc();
                            }
                        }
                        done.clear();
                    }
                    Err(e) => {
                        warn!(error = %e, pending = done.len(), "storing delivery outcomes failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    }
}

/// One attempt on an MQTT subscription: delivered at the subscriber's PUBACK.
async fn publish(
    feeds: Option<&mqtt::Feeds>,
    timeout: Duration,
    clock: &dyn Clock,
    c: Claimed,
) -> Attempt {
    let started = Instant::now();
    let now = clock.now_ms();
    let r = match feeds {
        Some(f) => {
            let topic = mqtt::topic(&c.subscription.department_id, c.subscription.id);
            let payload = bytes::Bytes::from(c.event.clone().into_bytes());
            f.publish(&c.subscription.department_id, topic, payload, timeout).await
        }
        None => Err("this hub serves no MQTT subscribers (mqtt.mode is not embedded)".to_owned()),
    };
    let outcome = match r {
        Ok(()) => Outcome::Delivered { status: None },
        Err(error) => {
            let jitter = rand::random::<f64>() * 2.0 - 1.0;
            Outcome::Failed {
                status: None,
                retry_at: mqtt_retry_at(now, c.created_at, c.attempts + 1, jitter),
                error,
            }
        }
    };
    debug!(delivery = c.id, ?outcome, "MQTT delivery attempt");
    Attempt { latency_ms: started.elapsed().as_millis() as i64, claimed: c, outcome }
}

/// One attempt.
async fn send(
    client: &reqwest::Client,
    networks: &[IpNet],
    clock: &dyn Clock,
    c: Claimed,
) -> Attempt {
    let started = Instant::now();
    let now = clock.now_ms();
    let attempts = c.attempts + 1;
    let jitter = rand::random::<f64>() * 2.0 - 1.0;
    let fail = |status: Option<i64>, error: String, retry_after: Option<Duration>| {
        Outcome::Failed { status, retry_at: retry_at(now, attempts, retry_after, jitter), error }
    };
    let outcome = 'o: {
        // IP literals do not pass the resolver: check them here (names are checked by it).
        if let Ok(u) = url::Url::parse(&c.subscription.url) {
            let lit: Option<IpAddr> = match u.host() {
                Some(url::Host::Ipv4(a)) => Some(a.into()),
                Some(url::Host::Ipv6(a)) => Some(a.into()),
                _ => None,
            };
            if let Some(ip) = lit
                && let Err(e) = allow_list(networks).admits(&[ip])
            {
                break 'o fail(None, format!("refused: {e}"), None);
            }
        }
        let id = crate::records::event_id(c.transition_id);
        let ts = now / 1000;
        let keys: Vec<&str> =
            c.subscription.signing_keys(now).iter().map(|k| k.secret.as_str()).collect();
        let sig = match signature(&keys, &id, ts, c.event.as_bytes()) {
            Ok(s) => s,
            Err(e) => break 'o fail(None, e, None),
        };
        let r = client
            .post(&c.subscription.url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(c.event.clone())
            .send()
            .await;
        match r {
            Ok(resp) => {
                let status = resp.status();
                let code = i64::from(status.as_u16());
                if status.is_success() {
                    break 'o Outcome::Delivered { status: Some(code) };
                }
                if status == reqwest::StatusCode::GONE {
                    break 'o Outcome::Gone { status: code };
                }
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now));
                let what = if status.is_redirection() {
                    format!("HTTP {code}: a redirect (not followed; deliver to the final URL)")
                } else {
                    let body = resp.text().await.unwrap_or_default();
                    let body: String = body.chars().take(200).collect();
                    format!(
                        "HTTP {code}{}",
                        if body.is_empty() { String::new() } else { format!(": {body}") }
                    )
                };
                fail(Some(code), what, retry_after)
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out (delivery.timeout)".to_owned()
                } else {
                    // The innermost cause says the most (refused, reset, outside the networks).
                    let mut s = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(x) = src {
                        s = x.to_string();
                        src = x.source();
                    }
                    s
                };
                fail(None, what, None)
            }
        }
    };
    debug!(delivery = c.id, ?outcome, "delivery attempt");
    Attempt { latency_ms: started.elapsed().as_millis() as i64, claimed: c, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spans_about_three_days_then_gives_up() {
        let total: Duration = SCHEDULE.iter().sum();
        assert!((Duration::from_secs(3 * 86400)..Duration::from_secs(4 * 86400)).contains(&total));
        assert_eq!(retry_at(0, 1, None, 0.0), Some(5_000));
        assert_eq!(retry_at(0, 1, None, 1.0), Some(6_000));
        assert_eq!(retry_at(0, 1, None, -1.0), Some(4_000));
        assert_eq!(retry_at(0, 9, None, 0.0), Some(24 * 3600 * 1000));
        assert_eq!(retry_at(0, 10, None, 0.0), None);
    }

    #[test]
    fn mqtt_deliveries_are_given_up_by_age_not_by_count() {
        let span = SCHEDULE.iter().sum::<Duration>().as_millis() as i64;
        // Twenty quick reconnects an hour in: still kept, at the last step's wait.
        assert_eq!(mqtt_retry_at(3_600_000, 0, 20, 0.0), Some(3_600_000 + 24 * 3_600_000));
        assert_eq!(mqtt_retry_at(10, 0, 1, 0.0), Some(10 + 5_000));
        assert_eq!(mqtt_retry_at(span - 1, 0, 3, 0.0), Some(span - 1 + 30 * 60_000));
        assert_eq!(mqtt_retry_at(span, 0, 3, 0.0), None);
    }

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(retry_at(0, 1, Some(Duration::from_secs(0)), 0.0), Some(1_000));
        assert_eq!(retry_at(0, 1, Some(Duration::from_secs(90)), 0.0), Some(90_000));
        assert_eq!(retry_at(0, 2, Some(Duration::from_secs(10 * 86400)), 0.0), Some(86_400_000));
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        let at = chrono::DateTime::parse_from_rfc2822("Wed, 02 Dec 2026 08:00:10 GMT").unwrap();
        let now = at.timestamp_millis() - 10_000;
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 08:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The specification's example key and message.
        let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let s = signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = signature(&[key, key], "m", 1, b"x").unwrap();
        assert_eq!(two.split(' ').count(), 2);
    }

    #[tokio::test]
    async fn destinations_outside_the_networks_are_refused() {
        let nets: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(check_destination("http://127.0.0.1:9/x", &nets).await.is_ok());
        let e = check_destination("http://8.8.8.8/x", &nets).await.unwrap_err();
        assert!(e.contains("outside the networks"), "{e}");
        assert!(
            check_destination("ftp://127.0.0.1/", &nets).await.unwrap_err().contains("only http")
        );
        assert!(check_destination("http://u:p@127.0.0.1/", &nets).await.is_err());
    }
}
