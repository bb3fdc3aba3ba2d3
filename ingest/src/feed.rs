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

use bytes::{Buf, BufMut, Bytes, BytesMut};
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

/// A QoS 1 PUBLISH frame.
pub(crate) fn publish_frame(topic: &str, pkid: u16, payload: &[u8], out: &mut BytesMut) {
    out.put_u8(0x32);
    super::gateway::write_remaining_length(out, 2 + topic.len() + 2 + payload.len());
    out.put_u16(topic.len() as u16);
    out.put_slice(topic.as_bytes());
    out.put_u16(pkid);
    out.put_slice(payload);
}

/// (packet id, [(filter, requested QoS)]) of a SUBSCRIBE (`with_qos`) or UNSUBSCRIBE frame
/// (QoS 0 there).
fn filters(frame: &[u8], header_len: usize, with_qos: bool) -> Option<(u16, Vec<(String, u8)>)> {
    let mut body = &frame[header_len..];
    if body.len() < 2 {
        return None;
    }
    let pkid = body.get_u16();
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let tail = usize::from(with_qos);
        if body.len() < 2 + n + tail {
            return None;
        }
        let qos = if with_qos { body[2 + n] } else { 0 };
        out.push((String::from_utf8(body[2..2 + n].to_vec()).ok()?, qos));
        body = &body[2 + n + tail..];
    }
    Some((pkid, out))
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
    write(&mut wr, &[0x20, 2, 0, 0]).await?;
    // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods without a packet ends it.
    let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut deadline = idle.map(|d| tokio::time::Instant::now() + d);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut subscribed: Vec<String> = Vec::new();
    let mut inflight: HashMap<u16, oneshot::Sender<Result<(), String>>> = HashMap::new();
    let mut next_pkid: u16 = 0;
    let mut out = BytesMut::with_capacity(4096);
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
                out.clear();
                publish_frame(&m.topic, next_pkid, &m.payload, &mut out);
                write(&mut wr, &out).await?;
                inflight.insert(next_pkid, m.done);
                continue;
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        deadline = idle.map(|d| tokio::time::Instant::now() + d);
        let hl = super::gateway::frame_header(&frame).ok().flatten().map_or(2, |(hl, _)| hl);
        match frame[0] >> 4 {
            // PUBACK: the subscriber has the message.
            4 => {
                let pkid = frame.get(hl..hl + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                if let Some(done) = pkid.and_then(|p| inflight.remove(&p)) {
                    let _ = done.send(Ok(()));
                }
            }
            8 => {
                let (pkid, fs) = filters(&frame, hl, true)
                    .ok_or_else(|| FeedEnd::Protocol("malformed SUBSCRIBE".into()))?;
                let mut codes = Vec::with_capacity(fs.len());
                for (f, qos) in fs {
                    if qos > 2 {
                        return Err(FeedEnd::Protocol(format!("SUBSCRIBE with QoS {qos}")));
                    }
                    let room = subscribed.len() < MAX_FILTERS || subscribed.contains(&f);
                    // Events go out at QoS 1 (delivered means acknowledged): a QoS 0
                    // subscription cannot be granted (2 is granted as 1).
                    if qos >= 1
                        && room
                        && f.starts_with(&login.prefix)
                        && rumqttc::mqttbytes::valid_filter(&f)
                    {
                        codes.push(1u8);
                        if !subscribed.contains(&f) {
                            subscribed.push(f);
                        }
                    } else {
                        tracing::warn!(feed = %login.name, filter = %f, qos, prefix = %login.prefix, "feed SUBSCRIBE refused: outside its prefix, invalid, QoS 0, or over {MAX_FILTERS} filters");
                        codes.push(0x80);
                    }
                }
                out.clear();
                out.put_u8(0x90);
                super::gateway::write_remaining_length(&mut out, 2 + codes.len());
                out.put_u16(pkid);
                out.put_slice(&codes);
                write(&mut wr, &out).await?;
                if codes.contains(&1) {
                    (login.on_subscribe)();
                }
            }
            10 => {
                let (pkid, fs) = filters(&frame, hl, false)
                    .ok_or_else(|| FeedEnd::Protocol("malformed UNSUBSCRIBE".into()))?;
                subscribed.retain(|s| !fs.iter().any(|(f, _)| f == s));
                let [a, b] = pkid.to_be_bytes();
                write(&mut wr, &[0xb0, 2, a, b]).await?;
            }
            12 => write(&mut wr, &[0xd0, 0]).await?,
            14 => return Ok(()),
            3 => return Err(FeedEnd::Protocol("a feed subscriber may not publish".into())),
            t => return Err(FeedEnd::Protocol(format!("unexpected packet type {t}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_and_unsubscribe_filters_parse() {
        // SUBSCRIBE pkid 7, "a/#" QoS 1, "b" QoS 0.
        let f = [0x82, 12, 0, 7, 0, 3, b'a', b'/', b'#', 1, 0, 1, b'b', 0];
        assert_eq!(filters(&f, 2, true), Some((7, vec![("a/#".into(), 1), ("b".into(), 0)])));
        let u = [0xa2, 7, 0, 9, 0, 3, b'a', b'/', b'#'];
        assert_eq!(filters(&u, 2, false), Some((9, vec![("a/#".into(), 0)])));
        assert_eq!(filters(&f[..8], 2, true), None);
    }

    /// A served feed connection over loopback TCP, driven by raw frames.
    #[tokio::test]
    async fn a_connection_acknowledges_matches_and_caps_filters() {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
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
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [0x20, 2, 0, 0], "CONNACK accepted");
        // A message queued before any SUBSCRIBE waits for one (it is not refused).
        let (done, early) = oneshot::channel();
        tx.send(FeedMessage {
            topic: "departments/d/records/9".into(),
            payload: "{}".into(),
            done,
        })
        .await
        .unwrap();
        // One own filter, one foreign, one at QoS 0, then MAX_FILTERS - 1 more own ones and one
        // over the cap.
        let mut fs = vec![
            ("departments/d/#".to_owned(), 1),
            ("departments/e/#".to_owned(), 1),
            ("departments/d/q0".to_owned(), 0),
        ];
        fs.extend((0..MAX_FILTERS).map(|i| (format!("departments/d/{i}"), 2)));
        let mut body = BytesMut::new();
        body.put_u16(5);
        for (f, qos) in &fs {
            body.put_u16(f.len() as u16);
            body.put_slice(f.as_bytes());
            body.put_u8(*qos);
        }
        let mut frame = BytesMut::new();
        frame.put_u8(0x82);
        super::super::gateway::write_remaining_length(&mut frame, body.len());
        frame.put_slice(&body);
        client.write_all(&frame).await.unwrap();
        // Type, one byte of remaining length, packet id, one code per filter.
        let mut ack = vec![0u8; 1 + 1 + 2 + fs.len()];
        client.read_exact(&mut ack).await.unwrap();
        let codes = &ack[ack.len() - fs.len()..];
        assert_eq!((codes[0], codes[1], codes[2]), (1, 0x80, 0x80), "own, foreign, QoS 0");
        assert!(codes[3..fs.len() - 1].iter().all(|c| *c == 1), "QoS 2 granted as 1: {codes:?}");
        assert_eq!(codes[fs.len() - 1], 0x80, "over MAX_FILTERS");
        assert_eq!(subscribed.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The early message goes out now (packet id 1) and is done at its PUBACK.
        let mut out = BytesMut::new();
        publish_frame("departments/d/records/9", 1, b"{}", &mut out);
        let mut got = vec![0u8; out.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, out.to_vec());
        client.write_all(&[0x40, 2, 0, 1]).await.unwrap();
        assert_eq!(early.await.unwrap(), Ok(()));
        // A matching message goes out at QoS 1 and is done at the PUBACK.
        let (done, answer) = oneshot::channel();
        tx.send(FeedMessage {
            topic: "departments/d/records/1".into(),
            payload: "{}".into(),
            done,
        })
        .await
        .unwrap();
        let mut out = BytesMut::new();
        publish_frame("departments/d/records/1", 2, b"{}", &mut out);
        let mut got = vec![0u8; out.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, out.to_vec());
        client.write_all(&[0x40, 2, 0, 2]).await.unwrap();
        assert_eq!(answer.await.unwrap(), Ok(()));
        // One the hub gave up on while queued is not sent; the next one is.
        let (done, gone) = oneshot::channel();
        drop(gone);
        tx.send(FeedMessage {
            topic: "departments/d/records/2".into(),
            payload: "{}".into(),
            done,
        })
        .await
        .unwrap();
        let (done, answer) = oneshot::channel();
        tx.send(FeedMessage {
            topic: "departments/d/records/3".into(),
            payload: "{}".into(),
            done,
        })
        .await
        .unwrap();
        let mut out = BytesMut::new();
        publish_frame("departments/d/records/3", 3, b"{}", &mut out);
        let mut got = vec![0u8; out.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, out.to_vec(), "records/2 was given up and skipped");
        client.write_all(&[0x40, 2, 0, 3]).await.unwrap();
        assert_eq!(answer.await.unwrap(), Ok(()));
        // A topic no filter matches is answered at once.
        let (done, answer) = oneshot::channel();
        tx.send(FeedMessage { topic: "departments/x".into(), payload: "{}".into(), done })
            .await
            .unwrap();
        assert!(answer.await.unwrap().unwrap_err().contains("has not subscribed"));
        // A ping is answered; a PUBLISH from the subscriber ends the connection.
        client.write_all(&[0xc0, 0]).await.unwrap();
        let mut pong = [0u8; 2];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0xd0, 0]);
        client.write_all(&[0x30, 3, 0, 1, b'a']).await.unwrap();
        assert!(matches!(task.await.unwrap(), Err(FeedEnd::Protocol(_))));
    }

    #[test]
    fn publish_frames_parse_back() {
        let mut out = BytesMut::new();
        publish_frame("departments/d/records/1", 300, b"{}", &mut out);
        let p = rumqttc::mqttbytes::v4::Packet::read(&mut out, 1 << 20).unwrap();
        let rumqttc::mqttbytes::v4::Packet::Publish(p) = p else { panic!("not a PUBLISH") };
        assert_eq!(
            (p.topic.as_str(), p.pkid, &p.payload[..]),
            ("departments/d/records/1", 300, &b"{}"[..])
        );
        assert_eq!(p.qos, rumqttc::mqttbytes::QoS::AtLeastOnce);
    }
}
