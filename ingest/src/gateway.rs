//! The embedded broker's front door: authenticates each device and enforces its topic ACL.
//!
//! rumqttd has no per-topic ACL and its auth callback cannot answer with a CONNACK reason, so
//! devices never reach it directly. Each device connection is relayed by this gateway to rumqttd
//! on a loopback listener that only the gateway can log in to. The gateway parses just enough of
//! MQTT 3.1.1 to:
//!
//! - refuse bad credentials with CONNACK 4 (unknown device, wrong secret) and a will on a foreign
//!   topic with CONNACK 5;
//! - force the broker-side client id to the device id (no session stealing);
//! - drop (and count, and log) a PUBLISH outside `sites/{own site}/devices/{own id}/`, answering
//!   QoS 1 with a PUBACK as MQTT 3.1.1 brokers do; a denied QoS 2 publish closes the connection;
//! - drop a PUBLISH whose payload exceeds `max_payload` the same way;
//! - rewrite `v1/devices/me/telemetry` to the device's own telemetry topic;
//! - hand the device's own QoS 0/1 telemetry straight to the hub's pipeline queue (the hub is
//!   the only consumer of telemetry; skipping the broker saves a TCP hop and the broker's
//!   routing per message), with the PUBACK it is owed: the hub's writer gives it once the
//!   reading is committed ([`crate::ack`]). QoS 2 telemetry still goes through rumqttd.
//!   The gateway's PUBACKs and rumqttd's (for the device's other topics) may interleave out of
//!   order; clients match acks by packet id;
//! - answer a SUBSCRIBE to foreign topics with failure return codes;
//! - hand a login whose username the hub's [`FeedDirectory`] claims (`department:…`) to
//!   [`crate::feed`], which serves it without rumqttd (record events acknowledged end to end).
//!
//! Everything else (acks, pings, keep-alive, sessions, wills) is relayed byte for byte and left
//! to rumqttd.
//!
//! Before authentication ([`limits`]): a connection over `max_connections` or over its source
//! address's rate (token bucket) is closed at accept. argon2 runs on one dedicated thread fed by
//! a bounded queue (full: CONNACK 3, counted `busy`), never on the async workers or the blocking
//! pool, and only on a cache miss: a device whose (hash, secret) verified before logs in without
//! it. Repeated wrong secrets (more than 3 per device id, 10 per source address) lock the id and
//! the address out for a growing time; while
//! locked, logins are refused with CONNACK 3 without running argon2 (counted `throttled`), except
//! for a secret already verified, so a storm against a public device id cannot lock the device
//! itself out.

mod limits;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::Shutdown;
use common::metrics::{Counter, Gauge, Registry, names};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Login, Packet};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::ack::{Ack, AckSink};
use crate::feed::{FeedDirectory, FeedRefusal};
use crate::{DeviceDirectory, Error, Inbound, topic};

/// Frames larger than this close the connection instead of being buffered and dropped.
const HARD_FRAME_LIMIT: usize = 1 << 20;
/// A client must send CONNECT within this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// argon2 threads: one keeps a login storm to one core's worth of CPU.
const ARGON2_THREADS: usize = 1;
/// Verifications waiting for the argon2 thread; when full a login is refused as busy.
const ARGON2_QUEUE: usize = 16;
/// Most successful verifications remembered (device id → digest).
const VERIFIED_MAX: usize = 100_000;
/// Wrong secrets for one device id before it is locked out (a mistyped or rotated secret).
const FREE_FAILURES_PER_DEVICE: u32 = 3;
/// Wrong secrets from one address before it is locked out: many devices may share an address
/// (NAT), and a locked address delays the logins of those not verified since the hub started.
const FREE_FAILURES_PER_ADDRESS: u32 = 10;

/// Where the gateway listens and where it relays to.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: String,
    /// The embedded broker's loopback listener.
    pub broker: SocketAddr,
    /// Credentials of the loopback listener.
    pub internal_username: String,
    pub internal_password: String,
    pub max_payload: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// New connections per second and burst per source address.
    pub connections_per_ip_per_second: f64,
    pub connection_burst: u32,
    /// Lock-out after the first wrong secret (doubling per failure) and its cap.
    pub login_failure_delay: Duration,
    pub login_failure_max_delay: Duration,
}

struct Counters {
    connections: Arc<Gauge>,
    auth_no_credentials: Arc<Counter>,
    auth_unknown_device: Arc<Counter>,
    auth_bad_secret: Arc<Counter>,
    auth_bad_will: Arc<Counter>,
    auth_throttled: Arc<Counter>,
    auth_busy: Arc<Counter>,
    /// Feed logins (department subscribers) refused: wrong or foreign token.
    auth_feed: Arc<Counter>,
    refused_max_connections: Arc<Counter>,
    refused_rate: Arc<Counter>,
    argon2_runs: Arc<Counter>,
    acl_publish: Arc<Counter>,
    acl_subscribe: Arc<Counter>,
    oversized: Arc<Counter>,
    /// Telemetry handed to the pipeline directly (same series as the broker link's count).
    received: Arc<Counter>,
}

impl Counters {
    fn new(r: &Registry) -> Self {
        let auth = |reason| {
            r.counter(
                names::MQTT_AUTH_FAILURES,
                "MQTT connections refused, by reason",
                &[("reason", reason)],
            )
        };
        let acl = |what| {
            r.counter(
                names::MQTT_ACL_DENIED,
                "MQTT packets dropped because the topic belongs to someone else",
                &[("packet", what)],
            )
        };
        Self {
            connections: r.gauge(names::MQTT_CONNECTIONS, "Open device connections", &[]),
            auth_no_credentials: auth("no_credentials"),
            auth_unknown_device: auth("unknown_device"),
            auth_bad_secret: auth("bad_secret"),
            auth_bad_will: auth("foreign_will_topic"),
            auth_throttled: auth("throttled"),
            auth_busy: auth("busy"),
            auth_feed: auth("feed_refused"),
            refused_max_connections: r.counter(
                names::MQTT_CONNECTIONS_REFUSED,
                "MQTT connections closed at accept, by reason",
                &[("reason", "max_connections")],
            ),
            refused_rate: r.counter(
                names::MQTT_CONNECTIONS_REFUSED,
                "MQTT connections closed at accept, by reason",
                &[("reason", "rate")],
            ),
            argon2_runs: r.counter(
                names::MQTT_ARGON2_RUNS,
                "argon2 verifications run by the MQTT gateway",
                &[],
            ),
            acl_publish: acl("publish"),
            acl_subscribe: acl("subscribe"),
            received: r.counter(
                names::MQTT_MESSAGES,
                "MQTT messages by direction and outcome",
                &[("direction", "in"), ("outcome", "received")],
            ),
            oversized: r.counter(
                names::MQTT_OVERSIZED,
                "PUBLISH packets dropped because the payload exceeds mqtt.max_payload",
                &[],
            ),
        }
    }
}

struct Ctx {
    cfg: GatewayConfig,
    /// Where the device's own QoS 0/1 telemetry goes, bypassing the broker.
    direct: Option<mpsc::Sender<Inbound>>,
    directory: Arc<dyn DeviceDirectory>,
    /// Subscribers that are not devices (department feeds), when the hub serves any.
    feeds: Option<Arc<dyn FeedDirectory>>,
    counters: Counters,
    /// device id → digest of (secret hash, secret) last verified, so reconnects skip argon2.
    /// At most [`VERIFIED_MAX`] entries.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    limits: Mutex<Limits>,
    argon2: Argon2Pool,
}

/// Per-address connection rate and login lock-outs.
struct Limits {
    rate: limits::Buckets<IpAddr>,
    by_device: limits::Lockouts<String>,
    by_addr: limits::Lockouts<IpAddr>,
}

/// One (hash, secret, reply) to verify.
type Argon2Job = (String, String, tokio::sync::oneshot::Sender<bool>);

/// A fixed set of threads running argon2, fed by a bounded queue.
struct Argon2Pool {
    tx: std::sync::mpsc::SyncSender<Argon2Job>,
}

impl Argon2Pool {
    /// The threads end when the pool (its sender) is dropped.
    fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Argon2Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("mqtt-argon2-{i}")).spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((hash, password, reply)) = job else { return };
                    use argon2::{PasswordHash, PasswordVerifier};
                    let ok = PasswordHash::new(&hash)
                        .map(|h| {
                            argon2::Argon2::default()
                                .verify_password(password.as_bytes(), &h)
                                .is_ok()
                        })
                        .unwrap_or(false);
                    let _ = reply.send(ok);
                }
            })?;
        }
        Ok(Self { tx })
    }
}

/// What checking a login's secret found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ok,
    Wrong,
    /// The device id or the source address is locked out after wrong secrets.
    Throttled,
    /// The argon2 queue is full.
    Busy,
}

/// A bound gateway; [`Gateway::run`] serves it.
pub struct Gateway {
    listener: TcpListener,
    ctx: Arc<Ctx>,
}

impl Gateway {
    /// Binds the listener. With `direct`, a device's QoS 0/1 telemetry is handed to that queue
    /// (acknowledged once the hub has stored it) instead of being routed through the broker;
    /// when the queue is full the device's connection waits.
    pub async fn bind(
        cfg: GatewayConfig,
        directory: Arc<dyn DeviceDirectory>,
        feeds: Option<Arc<dyn FeedDirectory>>,
        direct: Option<mpsc::Sender<Inbound>>,
        metrics: &Registry,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|source| Error::Listen { addr: cfg.listen.clone(), source })?;
        let argon2 = Argon2Pool::start(ARGON2_THREADS, ARGON2_QUEUE)
            .map_err(|e| Error::Broker(format!("cannot start the gateway's argon2 thread: {e}")))?;
        let limits = Limits {
            rate: limits::Buckets::new(cfg.connections_per_ip_per_second, cfg.connection_burst),
            by_device: limits::Lockouts::new(
                cfg.login_failure_delay,
                cfg.login_failure_max_delay,
                FREE_FAILURES_PER_DEVICE,
            ),
            by_addr: limits::Lockouts::new(
                cfg.login_failure_delay,
                cfg.login_failure_max_delay,
                FREE_FAILURES_PER_ADDRESS,
            ),
        };
        let ctx = Ctx {
            direct,
            counters: Counters::new(metrics),
            cfg,
            directory,
            feeds,
            verified: Mutex::new(HashMap::new()),
            limits: Mutex::new(limits),
            argon2,
        };
        Ok(Self { listener, ctx: Arc::new(ctx) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Accepts connections until shutdown; each runs in its own task.
    pub async fn run(self, shutdown: Shutdown) {
        info!(addr = %self.local_addr(), "MQTT gateway listening");
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ctx = self.ctx.clone();
            // Limits before anything is read: over them the socket is just closed.
            if ctx.counters.connections.get() >= ctx.cfg.max_connections as i64 {
                ctx.counters.refused_max_connections.inc();
                debug!(%peer, "MQTT connection over mqtt.max_connections closed");
                continue;
            }
            let allowed = ctx
                .limits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rate
                .take(&peer.ip(), Instant::now());
            if !allowed {
                ctx.counters.refused_rate.inc();
                debug!(%peer, "MQTT connection over the address's rate closed");
                continue;
            }
            // Counted here, not in the task: the next accept sees it at once.
            ctx.counters.connections.add(1);
            let _ = stream.set_nodelay(true);
            let stop = shutdown.clone();
            tokio::spawn(
                async move {
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => {}
                        r = serve(stream, peer.ip(), &ctx) => {
                            if let Err(e) = r {
                                debug!(error = %e, "connection closed");
                            }
                        }
                    }
                    ctx.counters.connections.add(-1);
                }
                .instrument(info_span!("mqtt", %peer)),
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed MQTT: {0}")]
    Malformed(&'static str),
    #[error("no CONNECT within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("frame of {0} bytes exceeds the hard limit")]
    TooLarge(usize),
}

/// Parses a fixed header: (header length, remaining length), or None when more bytes are needed.
fn frame_header(buf: &[u8]) -> Result<Option<(usize, usize)>, ConnError> {
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, len)));
        }
    }
    Err(ConnError::Malformed("remaining length longer than 4 bytes"))
}

/// Takes the next complete frame off `buf`, reading from `rd` as needed. None at clean EOF.
pub(crate) async fn next_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Option<Bytes>, ConnError> {
    loop {
        if let Some((hl, rl)) = frame_header(buf)? {
            if hl + rl > HARD_FRAME_LIMIT {
                return Err(ConnError::TooLarge(hl + rl));
            }
            if buf.len() >= hl + rl {
                return Ok(Some(buf.split_to(hl + rl).freeze()));
            }
            buf.reserve(hl + rl - buf.len());
        }
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(ConnError::Malformed("truncated")) };
        }
    }
}

fn write_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if len == 0 {
            break;
        }
    }
}

fn connack(code: ConnectReturnCode) -> Bytes {
    let mut b = BytesMut::new();
    // Writing a 4-byte CONNACK into a BytesMut cannot fail.
    let _ = ConnAck::new(code, false).write(&mut b);
    b.freeze()
}

/// A PUBLISH's topic, QoS, packet id and the byte range of its payload within the frame.
struct PublishView<'a> {
    topic: &'a [u8],
    qos: u8,
    pkid: u16,
    payload_start: usize,
}

fn view_publish(frame: &[u8], header_len: usize) -> Result<PublishView<'_>, ConnError> {
    let qos = (frame[0] >> 1) & 3;
    let body = &frame[header_len..];
    if body.len() < 2 {
        return Err(ConnError::Malformed("PUBLISH without topic"));
    }
    let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let mut at = 2 + tl;
    if body.len() < at {
        return Err(ConnError::Malformed("PUBLISH topic truncated"));
    }
    let topic = &body[2..at];
    let mut pkid = 0;
    if qos > 0 {
        if body.len() < at + 2 {
            return Err(ConnError::Malformed("PUBLISH packet id truncated"));
        }
        pkid = u16::from_be_bytes([body[at], body[at + 1]]);
        at += 2;
    }
    Ok(PublishView { topic, qos, pkid, payload_start: header_len + at })
}

/// Re-encodes a PUBLISH with another topic.
fn rewrite_publish(frame: &[u8], view: &PublishView<'_>, topic: &str, out: &mut BytesMut) {
    let payload = &frame[view.payload_start..];
    let pkid_len = if view.qos > 0 { 2 } else { 0 };
    let remaining = 2 + topic.len() + pkid_len + payload.len();
    out.put_u8(frame[0]);
    write_remaining_length(out, remaining);
    out.put_u16(topic.len() as u16);
    out.put_slice(topic.as_bytes());
    if view.qos > 0 {
        out.put_u16(view.pkid);
    }
    out.put_slice(payload);
}

fn ack_for(qos: u8, pkid: u16) -> Option<Bytes> {
    (qos == 1).then(|| Bytes::copy_from_slice(&crate::ack::puback(pkid)))
}

/// (packet id, filters) of a SUBSCRIBE frame.
fn subscribe_filters(frame: &[u8], header_len: usize) -> Result<(u16, Vec<&[u8]>), ConnError> {
    let mut body = &frame[header_len..];
    if body.len() < 2 {
        return Err(ConnError::Malformed("SUBSCRIBE without packet id"));
    }
    let pkid = body.get_u16();
    let mut filters = Vec::new();
    while !body.is_empty() {
        if body.len() < 2 {
            return Err(ConnError::Malformed("SUBSCRIBE filter truncated"));
        }
        let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
        if body.len() < 2 + n + 1 {
            return Err(ConnError::Malformed("SUBSCRIBE filter truncated"));
        }
        filters.push(&body[2..2 + n]);
        body = &body[2 + n + 1..];
    }
    Ok((pkid, filters))
}

impl Ctx {
    /// Checks the device's secret: a secret verified before is accepted from the cache (even
    /// while the device or address is locked out); otherwise argon2 runs on the pool unless a
    /// lock-out applies.
    async fn verify(&self, device: &str, addr: IpAddr, secret_hash: &str, password: &str) -> Check {
        let digest: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(secret_hash.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.finalize().into()
        };
        if self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(device) == Some(&digest) {
            return Check::Ok;
        }
        {
            let l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if l.by_device.locked(&device.to_owned(), now) || l.by_addr.locked(&addr, now) {
                return Check::Throttled;
            }
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        // argon2 takes tens of milliseconds of CPU by design: on its own thread, bounded.
        if self.argon2.tx.try_send((secret_hash.to_owned(), password.to_owned(), reply)).is_err() {
            return Check::Busy;
        }
        self.counters.argon2_runs.inc();
        let ok = answer.await.unwrap_or(false);
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            l.by_device.clear(&device.to_owned());
            l.by_addr.clear(&addr);
            drop(l);
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= VERIFIED_MAX
                && !v.contains_key(device)
                && let Some(k) = v.keys().next().cloned()
            {
                v.remove(&k);
            }
            v.insert(device.into(), digest);
            Check::Ok
        } else {
            let now = Instant::now();
            let locked_for = l.by_device.fail(&device.to_owned(), now);
            l.by_addr.fail(&addr, now);
            drop(l);
            debug!(device, %addr, ?locked_for, "wrong secret: device and address locked out");
            Check::Wrong
        }
    }
}

async fn refuse(
    wr: &mut OwnedWriteHalf,
    code: ConnectReturnCode,
    counter: &Counter,
    why: &'static str,
) -> Result<(), ConnError> {
    counter.inc();
    let _ = wr.write_all(&connack(code)).await;
    let _ = wr.shutdown().await;
    Err(ConnError::Refused(why))
}

async fn serve(stream: TcpStream, addr: IpAddr, ctx: &Ctx) -> Result<(), ConnError> {
    let (mut crd, mut cwr) = stream.into_split();
    let mut cbuf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, next_frame(&mut crd, &mut cbuf))
        .await
        .map_err(|_| ConnError::ConnectTimeout)??
        .ok_or(ConnError::Malformed("closed before CONNECT"))?;
    let mut first = BytesMut::from(&first[..]);
    let Ok(Packet::Connect(mut connect)) = Packet::read(&mut first, HARD_FRAME_LIMIT) else {
        return Err(ConnError::Malformed("first packet is not a valid MQTT 3.1.1 CONNECT"));
    };
    let c = &ctx.counters;
    let Some(login) = connect.login.take() else {
        warn!("MQTT connection without username/password refused");
        return refuse(
            &mut cwr,
            ConnectReturnCode::BadUserNamePassword,
            &c.auth_no_credentials,
            "no credentials",
        )
        .await;
    };
    let device = login.username;
    if let Some(feeds) = ctx.feeds.as_ref().filter(|f| f.claims(&device)) {
        let keep_alive = connect.keep_alive;
        let feed = match feeds.login(&device, &login.password, addr).await {
            Ok(f) => f,
            Err(r) => {
                let (code, counter, why) = match &r {
                    FeedRefusal::Credentials(_) => {
                        (ConnectReturnCode::BadUserNamePassword, &c.auth_feed, "feed credentials")
                    }
                    FeedRefusal::NotAuthorised(_) => {
                        (ConnectReturnCode::NotAuthorized, &c.auth_feed, "feed not authorised")
                    }
                    FeedRefusal::Unavailable(_) => {
                        (ConnectReturnCode::ServiceUnavailable, &c.auth_busy, "feed unavailable")
                    }
                };
                warn!(user = %device, reason = ?r, "MQTT feed login refused");
                return refuse(&mut cwr, code, counter, why).await;
            }
        };
        info!(feed = %feed.name, "MQTT feed subscriber connected");
        let name = feed.name.clone();
        let r = crate::feed::serve(crd, cwr, cbuf, keep_alive, feed).await;
        info!(feed = %name, end = ?r.as_ref().err(), "MQTT feed subscriber disconnected");
        return Ok(());
    }
    let Some(creds) = ctx.directory.credentials(&device).await else {
        warn!(device = %device, "MQTT login as an unknown device refused");
        return refuse(
            &mut cwr,
            ConnectReturnCode::BadUserNamePassword,
            &c.auth_unknown_device,
            "unknown device",
        )
        .await;
    };
    match ctx.verify(&device, addr, &creds.secret_hash, &login.password).await {
        Check::Ok => {}
        Check::Wrong => {
            warn!(device = %device, "MQTT login with a wrong secret refused");
            return refuse(
                &mut cwr,
                ConnectReturnCode::BadUserNamePassword,
                &c.auth_bad_secret,
                "wrong secret",
            )
            .await;
        }
        // Not logged per login (a storm would flood the log): counted.
        Check::Throttled => {
            debug!(device = %device, "MQTT login refused: locked out after wrong secrets");
            let code = ConnectReturnCode::ServiceUnavailable;
            return refuse(&mut cwr, code, &c.auth_throttled, "locked out").await;
        }
        Check::Busy => {
            debug!(device = %device, "MQTT login refused: argon2 queue full");
            let code = ConnectReturnCode::ServiceUnavailable;
            return refuse(&mut cwr, code, &c.auth_busy, "verification queue full").await;
        }
    }
    let prefix = topic::device_prefix(creds.site.as_str(), &device);
    if let Some(will) = &connect.last_will
        && !will.topic.starts_with(&prefix)
    {
        warn!(device = %device, topic = %will.topic, "last will on a foreign topic refused");
        return refuse(
            &mut cwr,
            ConnectReturnCode::NotAuthorized,
            &c.auth_bad_will,
            "foreign will",
        )
        .await;
    }
    let own_telemetry = format!("{prefix}telemetry");

    let broker = match crate::broker::connect_internal(ctx.cfg.broker).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "embedded broker unreachable");
            let _ = cwr.write_all(&connack(ConnectReturnCode::ServiceUnavailable)).await;
            return Err(e.into());
        }
    };
    let _ = broker.set_nodelay(true);
    let (mut brd, mut bwr) = broker.into_split();
    // The broker sees the device id as client id: a device cannot take over another's session.
    connect.client_id = device.clone();
    // rumqttd refuses keep-alive 0 ("never time out"); the longest interval is the nearest.
    if connect.keep_alive == 0 {
        connect.keep_alive = u16::MAX;
    }
    connect.login = Some(Login::new(&ctx.cfg.internal_username, &ctx.cfg.internal_password));
    let mut out = BytesMut::with_capacity(4096);
    Packet::Connect(connect)
        .write(&mut out, HARD_FRAME_LIMIT)
        .map_err(|_| ConnError::Malformed("CONNECT cannot be re-encoded"))?;
    bwr.write_all(&out).await?;
    out.clear();
    debug!(device = %device, "device connected");

    // Broker → client bytes and the gateway's own acks share the client socket; each writer
    // holds the lock for whole frames only.
    let client_w = Arc::new(tokio::sync::Mutex::new(cwr));
    let relay_w = client_w.clone();
    let from_broker = async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            if brd.read_buf(&mut buf).await? == 0 {
                return Ok::<_, ConnError>(());
            }
            let n = complete_frames(&buf)?;
            if n > 0 {
                let chunk = buf.split_to(n);
                relay_w.lock().await.write_all(&chunk).await?;
            }
        }
    };
    // PUBACKs of delivered telemetry, given by the hub's writer after each commit.
    let sinks = Arc::new(AckSink::default());
    let ack_sink = sinks.clone();
    let ack_w = client_w.clone();
    let to_client_acks = async move {
        loop {
            let acks = ack_sink.next().await;
            if let Err(e) = ack_w.lock().await.write_all(&acks).await {
                return Err::<(), _>(ConnError::Io(e));
            }
        }
    };
    let mut denied_logged = 0u32;
    let direct = ctx.direct.clone();
    let own_telemetry_bytes = Bytes::from(own_telemetry.clone());
    let mut acks = BytesMut::new();
    let from_client = async move {
        loop {
            if crd.read_buf(&mut cbuf).await? == 0 {
                break;
            }
            // Walk the complete frames in place. Runs of frames relayed unchanged are written
            // straight from the read buffer; only dropped or rewritten frames break a run.
            let mut run_start = 0;
            let mut at = 0;
            while let Some((hl, rl)) = frame_header(&cbuf[at..])? {
                let len = hl + rl;
                if len > HARD_FRAME_LIMIT {
                    return Err(ConnError::TooLarge(len));
                }
                if at + len > cbuf.len() {
                    cbuf.reserve(at + len - cbuf.len());
                    break;
                }
                let frame = &cbuf[at..at + len];
                let verdict = match frame[0] >> 4 {
                    3 => {
                        let view = view_publish(frame, hl)?;
                        let payload_len = frame.len() - view.payload_start;
                        if payload_len > ctx.cfg.max_payload {
                            c.oversized.inc();
                            warn!(device = %device, bytes = payload_len, limit = ctx.cfg.max_payload, "oversized PUBLISH dropped");
                            Verdict::Drop(view.qos, ack_for(view.qos, view.pkid))
                        } else if direct.is_some()
                            && view.qos < 2
                            && (view.topic == own_telemetry.as_bytes()
                                || view.topic == topic::TB_TELEMETRY.as_bytes())
                        {
                            // The hub's own telemetry goes straight to the pipeline: no second
                            // TCP hop, no broker routing. QoS 2 keeps the broker's handshake.
                            Verdict::Deliver {
                                payload: Bytes::copy_from_slice(&frame[view.payload_start..]),
                                pkid: (view.qos == 1).then_some(view.pkid),
                            }
                        } else if view.topic.starts_with(prefix.as_bytes()) {
                            Verdict::Relay
                        } else if view.topic == topic::TB_TELEMETRY.as_bytes() {
                            let mut out = BytesMut::with_capacity(frame.len() + prefix.len());
                            rewrite_publish(frame, &view, &own_telemetry, &mut out);
                            Verdict::Replace(out.freeze())
                        } else {
                            c.acl_publish.inc();
                            // Log the first few per connection, then every 1000th.
                            denied_logged += 1;
                            if denied_logged <= 3 || denied_logged.is_multiple_of(1000) {
                                warn!(device = %device, topic = %String::from_utf8_lossy(view.topic), count = denied_logged, "PUBLISH to a topic the device does not own dropped");
                            }
                            Verdict::Drop(view.qos, ack_for(view.qos, view.pkid))
                        }
                    }
                    8 => {
                        let (pkid, filters) = subscribe_filters(frame, hl)?;
                        if filters.iter().all(|f| f.starts_with(prefix.as_bytes())) {
                            Verdict::Relay
                        } else {
                            c.acl_subscribe.inc();
                            warn!(device = %device, "SUBSCRIBE to topics the device does not own refused");
                            let mut ack = BytesMut::new();
                            ack.put_u8(0x90);
                            write_remaining_length(&mut ack, 2 + filters.len());
                            ack.put_u16(pkid);
                            ack.put_bytes(0x80, filters.len());
                            Verdict::Drop(0, Some(ack.freeze()))
                        }
                    }
                    1 => return Err(ConnError::Malformed("second CONNECT")),
                    _ => Verdict::Relay,
                };
                if !matches!(verdict, Verdict::Relay) {
                    if at > run_start {
                        bwr.write_all(&cbuf[run_start..at]).await?;
                    }
                    run_start = at + len;
                    match verdict {
                        Verdict::Replace(bytes) => bwr.write_all(&bytes).await?,
                        Verdict::Drop(2, _) => {
                            return Err(ConnError::Refused("QoS 2 PUBLISH refused"));
                        }
                        Verdict::Drop(_, ack) => {
                            acks.extend_from_slice(ack.as_deref().unwrap_or(&[]))
                        }
                        Verdict::Deliver { payload, pkid } => {
                            // The PUBACK is written once the reading's batch is committed
                            // (crate::ack): acknowledged means stored.
                            let msg = Inbound {
                                topic: own_telemetry_bytes.clone(),
                                payload,
                                received_at: crate::now_ms(),
                                ack: pkid.map(|p| Ack::gateway(sinks.clone(), p)),
                            };
                            // A full pipeline queue holds this device back (TCP backpressure).
                            if let Some(tx) = &direct
                                && tx.send(msg).await.is_err()
                            {
                                return Err(ConnError::Refused("the hub is shutting down"));
                            }
                            c.received.inc();
                        }
                        Verdict::Relay => {}
                    }
                }
                at += len;
            }
            if at > run_start {
                bwr.write_all(&cbuf[run_start..at]).await?;
            }
            cbuf.advance(at);
            // The gateway's own acknowledgements of this read, in one write.
            if !acks.is_empty() {
                client_w.lock().await.write_all(&acks).await?;
                acks.clear();
            }
        }
        let _ = bwr.shutdown().await;
        let _ = client_w.lock().await.shutdown().await;
        Ok::<_, ConnError>(())
    };
    // Whichever side ends first ends the connection. Dropping the broker socket without
    // DISCONNECT makes rumqttd publish the device's last will.
    tokio::select! {
        r = from_client => r,
        r = from_broker => r,
        r = to_client_acks => r,
    }
}

/// What the gateway does with one frame from a device.
enum Verdict {
    /// Pass it on unchanged.
    Relay,
    /// Pass this instead.
    Replace(Bytes),
    /// Drop it (QoS of a PUBLISH, 0 otherwise), answering the device with the ack if any.
    Drop(u8, Option<Bytes>),
    /// Hand the device's telemetry to the hub directly; the hub acknowledges it (QoS 1: the
    /// packet id) once stored.
    Deliver { payload: Bytes, pkid: Option<u16> },
}

/// Length of the longest prefix of `buf` made of complete frames.
fn complete_frames(buf: &[u8]) -> Result<usize, ConnError> {
    let mut at = 0;
    while let Some((hl, rl)) = frame_header(&buf[at..])? {
        if at + hl + rl > buf.len() {
            break;
        }
        at += hl + rl;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_round_trips() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut b = BytesMut::new();
            b.put_u8(0x30);
            write_remaining_length(&mut b, len);
            let (hl, rl) = frame_header(&b).unwrap().unwrap();
            assert_eq!((hl, rl), (b.len(), len));
        }
        assert!(frame_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(frame_header(&[0x30, 0x80]).unwrap().is_none());
    }

    #[test]
    fn publish_rewrite_keeps_qos_packet_id_and_payload() {
        let mut frame = BytesMut::new();
        let t = topic::TB_TELEMETRY;
        frame.put_u8(0x32);
        write_remaining_length(&mut frame, 2 + t.len() + 2 + 3);
        frame.put_u16(t.len() as u16);
        frame.put_slice(t.as_bytes());
        frame.put_u16(77);
        frame.put_slice(b"abc");
        let view = view_publish(&frame, 2).unwrap();
        assert_eq!((view.qos, view.pkid, view.topic), (1, 77, t.as_bytes()));
        let mut out = BytesMut::new();
        rewrite_publish(&frame, &view, "sites/s/devices/d/telemetry", &mut out);
        let Packet::Publish(p) = Packet::read(&mut out, 1 << 20).unwrap() else { panic!() };
        assert_eq!(p.topic, "sites/s/devices/d/telemetry");
        assert_eq!((p.pkid, &p.payload[..]), (77, &b"abc"[..]));
    }

    #[test]
    fn arbitrary_frames_never_panic_the_parsers() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..50_000 {
            let len = rng.gen_range(0..40);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if let Some(b) = buf.first_mut() {
                // Mostly PUBLISH and SUBSCRIBE headers, the types the gateway looks into.
                *b = if rng.gen_bool(0.5) { 0x30 | (*b & 0x0f) } else { 0x82 };
            }
            let _ = complete_frames(&buf);
            if let Ok(Some((hl, rl))) = frame_header(&buf)
                && hl + rl <= buf.len()
            {
                let frame = &buf[..hl + rl];
                if let Ok(v) = view_publish(frame, hl) {
                    assert!(v.payload_start <= frame.len());
                }
                let _ = subscribe_filters(frame, hl);
            }
        }
    }

    #[test]
    fn subscribe_filters_are_listed() {
        let mut frame = BytesMut::new();
        let f1 = b"sites/s/devices/d/#";
        let f2 = b"sites/+/devices/+/telemetry";
        frame.put_u8(0x82);
        write_remaining_length(&mut frame, 2 + 2 + f1.len() + 1 + 2 + f2.len() + 1);
        frame.put_u16(9);
        for f in [&f1[..], &f2[..]] {
            frame.put_u16(f.len() as u16);
            frame.put_slice(f);
            frame.put_u8(1);
        }
        let (pkid, filters) = subscribe_filters(&frame, 2).unwrap();
        assert_eq!(pkid, 9);
        assert_eq!(filters, vec![&f1[..], &f2[..]]);
    }
}
