//! Provisions devices into Mosquitto's dynamic-security plugin (external mode).
//!
//! With an external broker the hub no longer sees CONNECT, so the broker must authenticate the
//! devices and confine each to its own topics. Mosquitto 2.0 ships a plugin for that
//! (`mosquitto_dynamic_security.so`), administered by JSON commands published on
//! [`CONTROL_TOPIC`] by a client with the plugin's admin role; the answers come on
//! [`RESPONSE_TOPIC`], in order, one message per command message.
//!
//! Per device the hub keeps one client (username = device id, password = its secret) and one
//! role `hub-device/{site}/{id}` allowing publish and subscribe on `sites/{site}/devices/{id}/#`
//! only. Everything else is denied by the plugin's default ACL (publishClientSend and subscribe
//! deny), so a device's publish on another device's topic is dropped by the broker and never
//! reaches the hub (MQTT 3.1.1 has no way to tell the device; Mosquitto logs "Denied PUBLISH").
//!
//! Only the plaintext secret can be provisioned: the hub stores an argon2 hash, so it provisions
//! at registration (`POST /api/v1/devices` makes the secret) and removes at deletion. Devices
//! whose secret it never saw (the configuration file's, or registered before provisioning was
//! turned on) are the operator's to create with `mosquitto_ctrl dynsec createClient`
//! (docs/guide.md); [`Provisioner::clients`] lets the hub name them at start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Shutdown;
use futures::future::BoxFuture;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::{Error, topic};

/// Where the plugin takes commands.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where the plugin answers them.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";

/// Keeps the broker's accounts in step with the hub's devices. The hub calls it through an
/// `Arc<dyn Provisioner>`, so it needs no MQTT client of its own.
pub trait Provisioner: Send + Sync + 'static {
    /// Creates or updates the device's broker account with `secret`, confined to its topics.
    fn provision<'a>(
        &'a self,
        device: &'a str,
        site: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Deletes the device's account and role (absent ones are not an error); the broker
    /// disconnects a device that is connected with it.
    fn remove<'a>(&'a self, device: &'a str, site: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The usernames the broker knows.
    fn clients(&self) -> BoxFuture<'_, Result<Vec<String>, Error>>;
}

/// The name of a device's role: its ACLs follow from the name, so an existing role is reused.
/// Device and site ids hold no `/`, so names of different devices never collide.
pub fn role_name(site: &str, device: &str) -> String {
    format!("hub-device/{site}/{device}")
}

/// Settings of the admin connection.
#[derive(Debug, Clone)]
pub struct DynsecConfig {
    /// `mqtt://host:port` of the broker.
    pub url: String,
    /// Client id of the admin connection (unique per hub process).
    pub client_id: String,
    /// A client with the plugin's admin role (`mosquitto_ctrl dynsec init` makes one).
    pub username: String,
    pub password: String,
    /// How long one command may take, connecting included.
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct Responses {
    responses: Vec<Response>,
}

/// One answer of the plugin.
#[derive(Debug, Deserialize)]
struct Response {
    command: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "correlationData")]
    correlation: Option<String>,
    #[serde(default)]
    data: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Response>>>>>;

/// An admin connection to the dynamic-security plugin.
pub struct Dynsec {
    cfg: DynsecConfig,
    client: AsyncClient,
    /// Connected with the response subscription acknowledged.
    ready: watch::Receiver<bool>,
    /// Why the connection is down, for error messages.
    last_error: Arc<Mutex<Option<String>>>,
    pending: Pending,
    next_batch: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dynsec {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Correlation data of command `i` of batch `batch`: answers carry it back.
fn correlation(batch: u64, i: usize) -> String {
    format!("hub:{batch}:{i}")
}

fn batch_of(correlation: &str) -> Option<u64> {
    correlation.strip_prefix("hub:")?.split(':').next()?.parse().ok()
}

impl Dynsec {
    /// Starts the admin connection (it connects, and reconnects with backoff, in the
    /// background until shutdown or drop; commands wait for it up to the timeout).
    pub fn connect(cfg: DynsecConfig, shutdown: Shutdown) -> Result<Self, Error> {
        let (host, port) = crate::external::host_port(&cfg.url)?;
        let mut opts = MqttOptions::new(&cfg.client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_session(true);
        opts.set_credentials(&cfg.username, &cfg.password);
        // Commands are a few per registration; 16 queued requests is plenty, a full queue
        // makes the caller wait.
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let (ready_tx, ready) = watch::channel(false);
        let last_error = Arc::new(Mutex::new(None));
        let pending: Pending = Arc::default();
        let task = tokio::spawn({
            let (client, pending, last_error) =
                (client.clone(), pending.clone(), last_error.clone());
            let url = cfg.url.clone();
            async move {
                let mut backoff = crate::backoff::Backoff::new(
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                loop {
                    let ev = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            let _ = client.try_disconnect();
                            return;
                        }
                        ev = eventloop.poll() => ev,
                    };
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(c)))
                            if c.code == ConnectReturnCode::Success =>
                        {
                            backoff.reset();
                            let _ = client.try_subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            *last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            info!(url = %url, "connected to Mosquitto's dynamic-security plugin");
                            let _ = ready_tx.send(true);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE_TOPIC => {
                            deliver(&pending, &p.payload);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = ready_tx.send(false);
                            let msg = match &e {
                                rumqttc::ConnectionError::ConnectionRefused(code) => format!(
                                    "the broker refused the admin login ({code:?}): check \
                                     mqtt.dynsec_username / HUB_MQTT_DYNSEC_PASSWORD"
                                ),
                                e => e.to_string(),
                            };
                            *last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(msg.clone());
                            let wait = backoff.next();
                            warn!(url = %url, error = %msg, retry_in = ?wait, "dynamic-security admin connection failed");
                            tokio::select! {
                                biased;
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(wait) => {}
                            }
                        }
                    }
                }
            }
        });
        Ok(Self { cfg, client, ready, last_error, pending, next_batch: AtomicU64::new(1), task })
    }

    fn error(&self, command: &str, message: impl Into<String>) -> Error {
        Error::Dynsec {
            url: self.cfg.url.clone(),
            command: command.into(),
            message: message.into(),
        }
    }

    /// Sends `commands` as one message and returns their answers, in order.
    async fn call(&self, mut commands: Vec<Value>) -> Result<Vec<Response>, Error> {
        let what =
            commands.iter().filter_map(|c| c["command"].as_str()).collect::<Vec<_>>().join("+");
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let mut ready = self.ready.clone();
        if tokio::time::timeout_at(deadline, ready.wait_for(|r| *r)).await.is_err() {
            let why = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(self.error(
                &what,
                format!(
                    "not connected as {:?} after {:?}: {}",
                    self.cfg.username,
                    self.cfg.timeout,
                    why.unwrap_or_else(|| "no answer from the broker".into())
                ),
            ));
        }
        let batch = self.next_batch.fetch_add(1, Ordering::Relaxed);
        for (i, c) in commands.iter_mut().enumerate() {
            c["correlationData"] = json!(correlation(batch, i));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(batch, tx);
        let body = json!({ "commands": commands }).to_string();
        let sent = async {
            self.client
                .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, body)
                .await
                .map_err(|e| self.error(&what, format!("sending the command: {e}")))?;
            rx.await.map_err(|_| self.error(&what, "the admin connection stopped"))
        };
        let answer = tokio::time::timeout_at(deadline, sent).await;
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&batch);
        let responses = match answer {
            Ok(r) => r?,
            Err(_) => {
                return Err(self.error(
                    &what,
                    format!(
                        "no answer within {:?} (is the dynamic-security plugin loaded, and does \
                         {:?} have its admin role?)",
                        self.cfg.timeout, self.cfg.username
                    ),
                ));
            }
        };
        if responses.len() != commands.len() {
            return Err(self.error(
                &what,
                format!("{} answers to {} commands", responses.len(), commands.len()),
            ));
        }
        Ok(responses)
    }

    /// Fails on an answer's error unless it is one of `tolerated`.
    fn check(&self, r: &Response, tolerated: &[&str], subject: &str) -> Result<(), Error> {
        match &r.error {
            Some(e) if !tolerated.contains(&e.as_str()) => {
                Err(self.error(&r.command, format!("{subject}: {e}")))
            }
            _ => Ok(()),
        }
    }

    async fn provision_device(&self, device: &str, site: &str, secret: &str) -> Result<(), Error> {
        let role = role_name(site, device);
        let filter = topic::device_prefix(site, device) + "#";
        let roles = json!([{ "rolename": role }]);
        let acl = |acltype: &str| {
            json!({ "command": "addRoleACL", "rolename": role, "acltype": acltype,
                    "topic": filter, "allow": true })
        };
        let r = self
            .call(vec![
                json!({ "command": "createRole", "rolename": role }),
                // An existing role keeps its ACLs ("already exists"): its name fixes them.
                acl("publishClientSend"),
                acl("subscribePattern"),
                json!({ "command": "createClient", "username": device, "password": secret,
                        "roles": roles, "textname": format!("hub device of site {site}") }),
            ])
            .await?;
        let subject = format!("device {device:?} (role {role:?})");
        self.check(&r[0], &["Role already exists"], &subject)?;
        self.check(&r[1], &["ACL with this topic already exists"], &subject)?;
        self.check(&r[2], &["ACL with this topic already exists"], &subject)?;
        if r[3].error.as_deref() == Some("Client already exists") {
            // Re-provisioning: a new secret, and only this role.
            let r = self
                .call(vec![json!({ "command": "modifyClient", "username": device,
                                   "password": secret, "roles": roles })])
                .await?;
            self.check(&r[0], &[], &subject)?;
        } else {
            self.check(&r[3], &[], &subject)?;
        }
        debug!(device, site, "device provisioned on the broker");
        Ok(())
    }

    async fn remove_device(&self, device: &str, site: &str) -> Result<(), Error> {
        let role = role_name(site, device);
        let r = self
            .call(vec![
                json!({ "command": "deleteClient", "username": device }),
                json!({ "command": "deleteRole", "rolename": role }),
            ])
            .await?;
        let subject = format!("device {device:?} (role {role:?})");
        self.check(&r[0], &["Client not found"], &subject)?;
        self.check(&r[1], &["Role not found"], &subject)?;
        debug!(device, site, "device removed from the broker");
        Ok(())
    }

    async fn list_clients(&self) -> Result<Vec<String>, Error> {
        let r = self.call(vec![json!({ "command": "listClients", "count": -1 })]).await?;
        self.check(&r[0], &[], "listing clients")?;
        let names = r[0].data["clients"]
            .as_array()
            .ok_or_else(|| self.error("listClients", format!("unexpected answer {}", r[0].data)))?;
        Ok(names.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    }
}

/// Hands a response message to the command waiting for it (answers to other admin clients'
/// commands come on the same topic and are ignored).
fn deliver(pending: &Pending, payload: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<Responses>(payload) else {
        warn!("unparsable dynamic-security response ignored");
        return;
    };
    let Some(batch) =
        msg.responses.first().and_then(|r| r.correlation.as_deref()).and_then(batch_of)
    else {
        return;
    };
    if let Some(tx) = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&batch) {
        let _ = tx.send(msg.responses);
    }
}

impl Provisioner for Dynsec {
    fn provision<'a>(
        &'a self,
        device: &'a str,
        site: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.provision_device(device, site, secret))
    }

    fn remove<'a>(&'a self, device: &'a str, site: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.remove_device(device, site))
    }

    fn clients(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(self.list_clients())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_find_their_batch() {
        assert_eq!(batch_of(&correlation(42, 3)), Some(42));
        assert_eq!(batch_of("someone-else"), None);
        let pending: Pending = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        pending.lock().unwrap().insert(7, tx);
        deliver(&pending, br#"{"responses":[{"command":"x","correlationData":"hub:8:0"}]}"#);
        assert!(rx.try_recv().is_err(), "another batch's answer is not ours");
        deliver(
            &pending,
            br#"{"responses":[{"command":"createRole","correlationData":"hub:7:0"},
                {"command":"createClient","error":"Client already exists","correlationData":"hub:7:1"}]}"#,
        );
        let r = rx.try_recv().expect("delivered");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].error.as_deref(), Some("Client already exists"));
    }

    #[test]
    fn roles_are_per_site_and_device() {
        assert_eq!(role_name("s1", "d-1"), "hub-device/s1/d-1");
        assert_ne!(role_name("a-b", "c"), role_name("a", "b-c"));
    }
}
