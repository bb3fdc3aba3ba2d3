//! Record events over MQTT (docs/records.md, "MQTT"): a department's system logs in to the
//! hub's MQTT gateway as `department:ID` with one of the department's API tokens (role
//! `department`) as password, subscribes under `departments/ID/`, and receives each event of an
//! `mqtt` subscription on `departments/ID/records/SUBSCRIPTION` as a QoS 1 PUBLISH whose
//! payload is the CloudEvent. A delivery counts as delivered at the subscriber's PUBACK
//! (ingest::feed), so the outbox keeps whatever a disconnected or silent subscriber did not
//! take, on the webhooks' retry schedule; a subscription's pending deliveries are offered
//! again at once when its department subscribes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use common::Clock;
use ingest::feed::{FeedDirectory, FeedFuture, FeedLogin, FeedMessage, FeedRefusal, MAX_INFLIGHT};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::Waker;
use crate::auth::{Auth, Role};
use crate::error::Error;
use crate::store::Store;

/// The username prefix of a department's feed login.
pub const USER_PREFIX: &str = "department:";

/// Most subscribers of one department connected at once; more are refused with CONNACK 3.
pub const MAX_SESSIONS: usize = 8;

/// The topic of a subscription's events.
pub fn topic(department: &str, subscription: i64) -> String {
    format!("departments/{department}/records/{subscription}")
}

/// The departments' connected feeds.
pub struct Feeds {
    store: Store,
    auth: Arc<Auth>,
    clock: Arc<dyn Clock>,
    waker: Waker,
    /// department id → its connections' queues (closed ones pruned on use). Removing one
    /// ends its connection.
    sessions: Arc<Mutex<HashMap<String, Vec<mpsc::Sender<FeedMessage>>>>>,
}

impl Feeds {
    pub fn new(store: Store, auth: Arc<Auth>, clock: Arc<dyn Clock>, waker: Waker) -> Self {
        Self { store, auth, clock, waker, sessions: Arc::default() }
    }

    /// Hands one event to a connected feed of the department and waits for its subscriber's
    /// PUBACK (at most `timeout`); the error says why it was not taken.
    pub async fn publish(
        &self,
        department: &str,
        topic: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), String> {
        let senders: Vec<_> = {
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let v = s.entry(department.to_owned()).or_default();
            v.retain(|tx| !tx.is_closed());
            v.clone()
        };
        if senders.is_empty() {
            return Err(format!(
                "no MQTT subscriber of department {department} is connected (log in to the \
                 hub's MQTT gateway as {USER_PREFIX}{department} with a department token and \
                 subscribe to {topic})"
            ));
        }
        // One deadline for the whole attempt, however many connections are tried: it must end
        // within its lease.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut why: Vec<String> = Vec::new();
        for (i, tx) in senders.iter().enumerate() {
            let (done, answer) = oneshot::channel();
            let msg = FeedMessage { topic: topic.clone(), payload: payload.clone(), done };
            let attempt = async {
                tx.send(msg).await.map_err(|_| "its connection closed".to_owned())?;
                answer.await.map_err(|_| "its connection ended before its PUBACK".to_owned())?
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => why.push(format!("subscriber {}: {e}", i + 1)),
                Err(_) => {
                    why.push(format!(
                        "subscriber {}: no PUBACK within {timeout:?} (delivery.timeout)",
                        i + 1
                    ));
                    break;
                }
            }
        }
        Err(why.join("; "))
    }

    async fn login_department(
        &self,
        username: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<FeedLogin, FeedRefusal> {
        let department = username.strip_prefix(USER_PREFIX).unwrap_or_default().to_owned();
        let (store, auth, clock) = (self.store.clone(), self.auth.clone(), self.clock.clone());
        check(&store, &auth, clock.as_ref(), &department, password, addr).await?;
        let (tx, rx) = mpsc::channel(MAX_INFLIGHT);
        {
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let v = s.entry(department.clone()).or_default();
            v.retain(|tx| !tx.is_closed());
            if v.len() >= MAX_SESSIONS {
                return Err(FeedRefusal::Unavailable(format!(
                    "department {department} has {MAX_SESSIONS} MQTT subscribers connected already"
                )));
            }
            v.push(tx.clone());
        }
        // Like the HTTP streams, a connection lives only while its token holds: checked every
        // http.stream_recheck; revoked, expired or moved, the hub drops the queue and the
        // gateway ends the connection. While the database is away it is kept. The check holds
        // no sender of its own (that would keep the queue open).
        let weak = tx.downgrade();
        drop(tx);
        let (sessions, d, pw) = (self.sessions.clone(), department.clone(), password.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(auth.recheck_every).await;
                if weak.upgrade().is_none_or(|tx| tx.is_closed()) {
                    return;
                }
                match check(&store, &auth, clock.as_ref(), &d, &pw, addr).await {
                    Ok(()) | Err(FeedRefusal::Unavailable(_)) => {}
                    Err(why) => {
                        warn!(department = %d, reason = ?why, "MQTT subscriber's token no longer holds; disconnecting");
                        let mut s = sessions.lock().unwrap_or_else(|e| e.into_inner());
                        if let (Some(v), Some(tx)) = (s.get_mut(&d), weak.upgrade()) {
                            v.retain(|x| !x.same_channel(&tx));
                        }
                        return;
                    }
                }
            }
        });
        let (store, waker, clock, d) =
            (self.store.clone(), self.waker.clone(), self.clock.clone(), department.clone());
        let on_subscribe = Box::new(move || {
            let (store, waker, clock, d) = (store.clone(), waker.clone(), clock.clone(), d.clone());
            tokio::spawn(async move {
                match store.offer_mqtt_now(&d, clock.now_ms()).await {
                    Ok(_) => waker.wake(),
                    Err(e) => {
                        warn!(department = %d, error = %e, "offering pending MQTT deliveries failed; they follow the retry schedule")
                    }
                }
            });
        });
        Ok(FeedLogin {
            name: username.to_owned(),
            prefix: format!("departments/{department}/"),
            messages: rx,
            on_subscribe,
        })
    }
}

/// Whether `password` is a token of `department` with the department role.
async fn check(
    store: &Store,
    auth: &Auth,
    clock: &dyn Clock,
    department: &str,
    password: &str,
    addr: IpAddr,
) -> Result<(), FeedRefusal> {
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {password}"))
        .map_err(|_| FeedRefusal::Credentials("the password is not a token".into()))?;
    headers.insert(header::AUTHORIZATION, bearer);
    let now = clock.now_ms();
    let principal =
        match crate::auth::authenticate(store, auth, &headers, &addr.to_string(), now).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(FeedRefusal::Credentials("no token".into())),
            Err(Error::Unauthenticated(why)) => return Err(FeedRefusal::Credentials(why)),
            Err(e) => return Err(FeedRefusal::Unavailable(e.to_string())),
        };
    let own = principal.department.as_ref().is_some_and(|d| d.id == department);
    if !own || !principal.has(Role::Department) {
        return Err(FeedRefusal::NotAuthorised(format!(
            "{} is not a department token of {department:?}",
            principal.actor
        )));
    }
    Ok(())
}

impl FeedDirectory for Feeds {
    fn claims(&self, username: &str) -> bool {
        username.starts_with(USER_PREFIX)
    }

    fn login<'a>(&'a self, username: &'a str, password: &'a str, addr: IpAddr) -> FeedFuture<'a> {
        Box::pin(self.login_department(username, password, addr))
    }
}
