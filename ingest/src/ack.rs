//! Acknowledgements owed to devices, given only once what they acknowledge is stored.
//!
//! The durability promise of the sensor path: a QoS 1 PUBACK means the reading (or, for a
//! refused message, its refusal) is committed. The sources attach an [`Ack`] to each
//! [`crate::Inbound`]; the hub's writer calls [`Ack::done`] after the batch that holds it
//! commits. A crash before that loses nothing acknowledged: the device (or the external
//! broker's persistent session) sends the message again, and the store keeps one copy of a
//! reading that carries its own `ts` (a unique key on device and time).
//!
//! Batches commit in the order they were received, so one connection's acks leave in the
//! order of its PUBLISHes, as MQTT 3.1.1 (4.6) asks.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::Notify;

/// An acknowledgement to give once the message it belongs to is stored.
#[derive(Debug)]
pub struct Ack(Inner);

#[derive(Debug)]
enum Inner {
    /// A device connection of the embedded gateway.
    Gateway { sink: Arc<AckSink>, pkid: u16 },
    /// A message of the external broker, acknowledged manually.
    External { client: AsyncClient, pkid: u16 },
}

impl Ack {
    pub(crate) fn gateway(sink: Arc<AckSink>, pkid: u16) -> Self {
        Self(Inner::Gateway { sink, pkid })
    }

    pub(crate) fn external(client: AsyncClient, pkid: u16) -> Self {
        Self(Inner::External { client, pkid })
    }

    /// Gives the acknowledgement. Never blocks: a connection that has gone away simply never
    /// writes it (the device resends on its next session).
    pub fn done(self) {
        match self.0 {
            Inner::Gateway { sink, pkid } => sink.push(pkid),
            Inner::External { client, pkid } => {
                let mut p = Publish::new("", QoS::AtLeastOnce, Vec::new());
                p.pkid = pkid;
                // The client's request queue is bounded; when it is full the broker resends
                // the message after reconnecting and the unique key keeps one copy.
                let _ = client.try_ack(&p);
            }
        }
    }
}

/// An MQTT 3.1.1 PUBACK of packet `pkid`.
pub(crate) fn puback(pkid: u16) -> [u8; 4] {
    let [hi, lo] = pkid.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// PUBACKs of one gateway connection waiting to be written to the device's socket.
#[derive(Debug, Default)]
pub(crate) struct AckSink {
    pending: Mutex<BytesMut>,
    ready: Notify,
}

impl AckSink {
    fn push(&self, pkid: u16) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.put_slice(&puback(pkid));
        }
        self.ready.notify_one();
    }

    /// Waits until acks are pending, then takes them all.
    pub(crate) async fn next(&self) -> BytesMut {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if !p.is_empty() {
                    return p.split();
                }
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_leave_in_the_order_they_were_given() {
        let sink = Arc::new(AckSink::default());
        for pkid in [7u16, 8, 300] {
            Ack::gateway(sink.clone(), pkid).done();
        }
        let bytes = sink.next().await;
        assert_eq!(&bytes[..], &[0x40, 2, 0, 7, 0x40, 2, 0, 8, 0x40, 2, 1, 44]);
    }
}
