//! Outbound feeds on the gateway: subscribers that are not devices (a department's system that
//! reads its record events over MQTT instead of receiving webhooks).
//!
//! A feed login is recognised by its username ([`FeedDirectory::claims`]); the hub checks the
//! password and hands the gateway a [`FeedLogin`]: the topic prefix the subscriber may subscribe
//! under and a bounded queue of [`FeedMessage`]s. The gateway serves such a connection itself,
//! never relaying it to rumqttd: the hub must learn that the *subscriber* took a message (its
//! PUBACK), not just that a broker queued it in memory. So:
//!
//! - messages are taken from the hub's queue once a filter is subscribed (QoS 1 or 2 asked;
//!   QoS 0 is refused: delivered must mean acknowledged); each goes out as a QoS 1 PUBLISH
//!   when one of the connection's filters matches its topic, and its `done` is answered `Ok` at
//!   the subscriber's PUBACK;
//! - a message no filter matches is answered at once with an error naming the topic; one the
//!   hub has given up on (its attempt timed out) is not sent late, and its PUBACK slot is freed;
//! - a subscriber silent past 1.5 × its keep-alive, or one that takes no bytes for 30 s, is
//!   disconnected;
//! - a connection that ends (or a subscriber that never acknowledges) drops the pending
//!   `done`s: the hub keeps those messages and offers them again (its durable outbox);
//! - sessions are not persistent: the outbox, not the connection, holds what is owed;
//! - a feed publishes nothing: a PUBLISH closes the connection; it holds at most
//!   [`MAX_FILTERS`] filters.
//!
//! At most [`MAX_INFLIGHT`] messages await a PUBACK per connection; the hub's queue to it is
//! bounded, and a full queue makes the hub's sender wait (its delivery attempt then times out
//! and is retried).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Most messages awaiting the subscriber's PUBACK on one connection.
pub const MAX_INFLIGHT: usize = 64;
/// Most topic filters one connection holds; more are refused in the SUBACK.
pub const MAX_FILTERS: usize = 32;

/// One message for a feed subscriber.
#[derive(Debug)]
pub struct FeedMessage {
    pub topic: String,
    pub payload: Bytes,
    /// Answered `Ok` at the subscriber's PUBACK, `Err` when no filter of the connection
    /// matches; dropped unanswered when the connection ends first.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What a successful feed login gives the gateway.
pub struct FeedLogin {
    /// Who it is, for the log.
    pub name: String,
    /// Topic filters must start with this.
    pub prefix: String,
    /// The messages to deliver; when the hub drops the sender the connection ends.
    pub messages: mpsc::Receiver<FeedMessage>,
    /// Called after each SUBSCRIBE that granted a filter (the hub offers what is owed now).
    pub on_subscribe: Box<dyn Fn() + Send + Sync>,
}

/// Why a feed login was refused.
#[derive(Debug)]
pub enum FeedRefusal {
    /// CONNACK 4 (bad user name or password), with the reason for the log.
    Credentials(String),
    /// CONNACK 5 (not authorised).
    NotAuthorised(String),
    /// CONNACK 3 (server unavailable), e.g. the database is away.
    Unavailable(String),
}

pub type FeedFuture<'a> = futures::future::BoxFuture<'a, Result<FeedLogin, FeedRefusal>>;

/// The hub's side of feed logins.
pub trait FeedDirectory: Send + Sync + 'static {
    /// Whether this username names a feed subscriber rather than a device.
    fn claims(&self, username: &str) -> bool;
    fn login<'a>(&'a self, username: &'a str, password: &'a str, addr: IpAddr) -> FeedFuture<'a>;
}

/// Encodes one packet (into `out`, cleared first).
fn encode(p: &Packet, out: &mut BytesMut) -> Result<(), FeedEnd> {
    out.clear();
    p.write(out, usize::MAX).map(|_| ()).map_err(|e| FeedEnd::Protocol(format!("encoding: {e:?}")))
}

/// How a feed connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FeedEnd {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// A write the subscriber does not take within this long ends the connection (it stopped
/// reading; its session slot is freed).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the connection looks for messages the hub gave up on and for the hub ending it.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8]) -> Result<(), FeedEnd> {
    tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes))
        .await
        .map_err(|_| {
            FeedEnd::Protocol(format!("the subscriber took nothing for {WRITE_TIMEOUT:?}"))
        })?
        .map_err(FeedEnd::Io)
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Serves one logged-in feed connection until it disconnects, breaks the protocol, stays
/// silent past its keep-alive, stops reading, or the hub ends the feed. `buf` holds what was
/// read after the CONNECT. Messages are taken from the hub only once a filter is subscribed
/// (until then they wait in the queue), and never once the hub has given up on one.
pub(crate) async fn serve(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mut buf: BytesMut,
    keep_alive: u16,
    mut login: FeedLogin,
) -> Result<(), FeedEnd> {
    // CONNACK: accepted, no session present (sessions are not kept; the outbox is).
    let mut out = BytesMut::with_capacity(4096);
    encode(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)), &mut out)?;
    write(&mut wr, &out).await?;
    // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods without a packet ends it.
    let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut deadline = idle.map(|d| tokio::time::Instant::now() + d);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut subscribed: Vec<String> = Vec::new();
    let mut inflight: HashMap<u16, oneshot::Sender<Result<(), String>>> = HashMap::new();
    let mut next_pkid: u16 = 0;
    loop {
        let frame = tokio::select! {
            f = super::gateway::next_frame(&mut rd, &mut buf) => {
                f.map_err(|e| FeedEnd::Protocol(e.to_string()))?
            }
            _ = until(deadline) => {
                return Err(FeedEnd::Protocol("silent past its keep-alive".into()));
            }
            _ = housekeeping.tick() => {
                // The hub gave up waiting for these PUBACKs (its attempt timed out and will be
                // retried): their slots are free again.
                inflight.retain(|_, done| !done.is_closed());
                if login.messages.is_closed() {
                    return Ok(());
                }
                continue;
            }
            m = login.messages.recv(), if !subscribed.is_empty() && inflight.len() < MAX_INFLIGHT => {
                let Some(m) = m else { return Ok(()) };
                // Given up by the hub while queued: sent now it could overtake a retry.
                if m.done.is_closed() {
                    continue;
                }
                if !subscribed.iter().any(|f| rumqttc::mqttbytes::matches(&m.topic, f)) {
                    let _ = m.done.send(Err(format!(
                        "the subscriber has not subscribed to {} (subscribe to {}#)",
                        m.topic, login.prefix
                    )));
                    continue;
                }
                // Packet ids 1..=65535, skipping any still awaiting a PUBACK.
                loop {
                    next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                    if !inflight.contains_key(&next_pkid) {
                        break;
                    }
                }
                let mut p = Publish::from_bytes(m.topic, QoS::AtLeastOnce, m.payload);
                p.pkid = next_pkid;
                encode(&Packet::Publish(p), &mut out)?;
                write(&mut wr, &out).await?;
                inflight.insert(next_pkid, m.done);
                continue;
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        deadline = idle.map(|d| tokio::time::Instant::now() + d);
        // A QoS above 2 in a SUBSCRIBE is malformed too.
        let packet = Packet::read(&mut BytesMut::from(&frame[..]), frame.len())
            .map_err(|e| FeedEnd::Protocol(format!("malformed packet: {e:?}")))?;
        let answer = match packet {
            // The subscriber has the message.
            Packet::PubAck(a) => {
                if let Some(done) = inflight.remove(&a.pkid) {
                    let _ = done.send(Ok(()));
                }
                continue;
            }
            Packet::Subscribe(sub) => {
                let mut codes = Vec::with_capacity(sub.filters.len());
                for f in sub.filters {
                    let room = subscribed.len() < MAX_FILTERS || subscribed.contains(&f.path);
                    // Events go out at QoS 1 (delivered means acknowledged): a QoS 0
                    // subscription cannot be granted (2 is granted as 1).
                    if f.qos != QoS::AtMostOnce
                        && room
                        && f.path.starts_with(&login.prefix)
                        && rumqttc::mqttbytes::valid_filter(&f.path)
                    {
                        codes.push(SubscribeReasonCode::Success(QoS::AtLeastOnce));
                        if !subscribed.contains(&f.path) {
                            subscribed.push(f.path);
                        }
                    } else {
                        tracing::warn!(feed = %login.name, filter = %f.path, qos = ?f.qos, prefix = %login.prefix, "feed SUBSCRIBE refused: outside its prefix, invalid, QoS 0, or over {MAX_FILTERS} filters");
                        codes.push(SubscribeReasonCode::Failure);
                    }
                }
                let granted = codes.iter().any(|c| *c != SubscribeReasonCode::Failure);
                encode(&Packet::SubAck(SubAck::new(sub.pkid, codes)), &mut out)?;
                write(&mut wr, &out).await?;
                if granted {
                    (login.on_subscribe)();
                }
                continue;
            }
            Packet::Unsubscribe(u) => {
                subscribed.retain(|s| !u.topics.contains(s));
                Packet::UnsubAck(UnsubAck::new(u.pkid))
            }
            Packet::PingReq => Packet::PingResp,
            Packet::Disconnect => return Ok(()),
            Packet::Publish(_) => {
                return Err(FeedEnd::Protocol("a feed subscriber may not publish".into()));
            }
            other => return Err(FeedEnd::Protocol(format!("unexpected {other:?}"))),
        };
        encode(&answer, &mut out)?;
        write(&mut wr, &out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{PubAck, Subscribe, SubscribeFilter};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    async fn send(client: &mut TcpStream, p: Packet) {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        client.write_all(&b).await.unwrap();
    }

    async fn receive(client: &mut TcpStream, buf: &mut BytesMut) -> Packet {
        loop {
            match Packet::read(buf, usize::MAX) {
                Ok(p) => return p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    assert!(client.read_buf(buf).await.unwrap() > 0, "closed");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// Queues a message for the connection; the receiver learns how it ended.
    async fn queue(
        tx: &mpsc::Sender<FeedMessage>,
        topic: &str,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, answer) = oneshot::channel();
        tx.send(FeedMessage { topic: topic.into(), payload: "{}".into(), done }).await.unwrap();
        answer
    }

    /// The next packet is a QoS 1 PUBLISH of `topic` with `pkid`; acknowledges it.
    async fn take(client: &mut TcpStream, buf: &mut BytesMut, topic: &str, pkid: u16) {
        let Packet::Publish(p) = receive(client, buf).await else { panic!("not a PUBLISH") };
        assert_eq!((p.topic.as_str(), p.pkid, p.qos), (topic, pkid, QoS::AtLeastOnce));
        assert_eq!(&p.payload[..], b"{}");
        send(client, Packet::PubAck(PubAck::new(pkid))).await;
    }

    /// A served feed connection over loopback TCP, driven by a client's packets.
    #[tokio::test]
    async fn a_connection_acknowledges_matches_and_caps_filters() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let (rd, wr) = server.into_split();
        let (tx, rx) = mpsc::channel(4);
        let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = subscribed.clone();
        let login = FeedLogin {
            name: "t".into(),
            prefix: "departments/d/".into(),
            messages: rx,
            on_subscribe: Box::new(move || {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        };
        let task = tokio::spawn(serve(rd, wr, BytesMut::new(), 0, login));
        let mut buf = BytesMut::new();
        let Packet::ConnAck(c) = receive(&mut client, &mut buf).await else { panic!("CONNACK") };
        assert_eq!(c.code, ConnectReturnCode::Success);
        // A message queued before any SUBSCRIBE waits for one (it is not refused).
        let early = queue(&tx, "departments/d/records/9").await;
        // One own filter, one foreign, one at QoS 0, then MAX_FILTERS - 1 more own ones and one
        // over the cap.
        let mut fs = vec![
            SubscribeFilter::new("departments/d/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("departments/e/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("departments/d/q0".into(), QoS::AtMostOnce),
        ];
        fs.extend(
            (0..MAX_FILTERS)
                .map(|i| SubscribeFilter::new(format!("departments/d/{i}"), QoS::ExactlyOnce)),
        );
        let n = fs.len();
        send(&mut client, Packet::Subscribe(Subscribe { pkid: 5, filters: fs })).await;
        let Packet::SubAck(ack) = receive(&mut client, &mut buf).await else { panic!("SUBACK") };
        let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
        let codes = &ack.return_codes;
        assert_eq!(ack.pkid, 5);
        assert_eq!(codes[..3], [ok, SubscribeReasonCode::Failure, SubscribeReasonCode::Failure]);
        assert!(codes[3..n - 1].iter().all(|c| *c == ok), "QoS 2 granted as 1: {codes:?}");
        assert_eq!(codes[n - 1], SubscribeReasonCode::Failure, "over MAX_FILTERS");
        assert_eq!(subscribed.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The early message goes out now (packet id 1) and is done at its PUBACK.
        take(&mut client, &mut buf, "departments/d/records/9", 1).await;
        assert_eq!(early.await.unwrap(), Ok(()));
        let answer = queue(&tx, "departments/d/records/1").await;
        take(&mut client, &mut buf, "departments/d/records/1", 2).await;
        assert_eq!(answer.await.unwrap(), Ok(()));
        // One the hub gave up on while queued is not sent; the next one is.
        drop(queue(&tx, "departments/d/records/2").await);
        let answer = queue(&tx, "departments/d/records/3").await;
        take(&mut client, &mut buf, "departments/d/records/3", 3).await;
        assert_eq!(answer.await.unwrap(), Ok(()), "records/2 was given up and skipped");
        // A topic no filter matches is answered at once.
        let answer = queue(&tx, "departments/x").await;
        assert!(answer.await.unwrap().unwrap_err().contains("has not subscribed"));
        // Unsubscribed from its catch-all, the records' topics no longer match.
        let mut u = rumqttc::mqttbytes::v4::Unsubscribe::new("departments/d/#");
        u.pkid = 6;
        send(&mut client, Packet::Unsubscribe(u)).await;
        assert_eq!(receive(&mut client, &mut buf).await, Packet::UnsubAck(UnsubAck::new(6)));
        let answer = queue(&tx, "departments/d/records/4").await;
        assert!(answer.await.unwrap().unwrap_err().contains("has not subscribed"));
        // A ping is answered; a PUBLISH from the subscriber ends the connection.
        send(&mut client, Packet::PingReq).await;
        assert_eq!(receive(&mut client, &mut buf).await, Packet::PingResp);
        send(&mut client, Packet::Publish(Publish::new("a", QoS::AtMostOnce, "x"))).await;
        assert!(matches!(task.await.unwrap(), Err(FeedEnd::Protocol(_))));
    }
}
