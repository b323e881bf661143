//! The reader task: splits the socket's bytes into frames, hands answers to the callers that
//! wait for them and pushed deliveries to their consumers.
//!
//! Reply slots arrive from the writer task through a single-producer queue, always before the
//! frame they answer is written, so an answer whose slot is not found after draining that queue
//! has no waiter (a request sent without one) and is dropped.

use std::collections::HashMap;

use bytes::BytesMut;
use sluice_protocol::request::opcode;
use sluice_protocol::{Delivery as WireDelivery, Frame, FrameDecoder};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{DeliverySink, Inbound, Route};

/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;

/// What the writer tells the reader before it writes a frame.
pub(super) enum Registration {
    /// Send the answer with this correlation id here.
    Reply(u64, oneshot::Sender<Frame>),
    /// Change delivery routing.
    Route(Route),
}

/// Runs until the socket closes, a frame is malformed or the connection is cancelled. On exit,
/// every waiting caller sees its reply slot dropped, which reads as "disconnected".
pub(super) async fn run(
    mut socket: OwnedReadHalf,
    mut buf: BytesMut,
    decoder: FrameDecoder,
    registrations: mpsc::UnboundedReceiver<Registration>,
    closed: CancellationToken,
) {
    let mut router = Router::new(registrations);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => router.dispatch(frame),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed frame from broker; closing connection");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            read = socket.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "read from broker failed");
                break;
            }
        }
    }
    closed.cancel();
    router.registrations.close();
}

/// Where frames go.
struct Router {
    /// Reply slots and routes from the writer.
    registrations: mpsc::UnboundedReceiver<Registration>,
    /// Callers waiting for an answer, by correlation id.
    replies: HashMap<u64, oneshot::Sender<Frame>>,
    /// Consumer inboxes, by consumer id, with their tags.
    consumers: HashMap<u64, (u64, DeliverySink)>,
}

impl Router {
    fn new(registrations: mpsc::UnboundedReceiver<Registration>) -> Self {
        Self {
            registrations,
            replies: HashMap::new(),
            consumers: HashMap::new(),
        }
    }

    fn dispatch(&mut self, frame: Frame) {
        self.drain_registrations();
        if frame.is_push() {
            self.push(frame);
        } else if frame.is_response() {
            match self.replies.remove(&frame.correlation_id) {
                Some(slot) => {
                    let _ = slot.send(frame);
                }
                None => tracing::trace!(id = frame.correlation_id, "answer nobody waits for"),
            }
        }
    }

    fn push(&mut self, frame: Frame) {
        if frame.opcode != opcode::DELIVERY {
            tracing::debug!(opcode = frame.opcode, "ignoring unknown pushed frame");
            return;
        }
        let delivery = match WireDelivery::decode(frame.body) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "malformed delivery from broker");
                return;
            }
        };
        let id = delivery.consumer_id;
        if let Some((tag, sink)) = self.consumers.get(&id) {
            if sink.send(Inbound::Delivery(*tag, delivery)).is_err() {
                self.consumers.remove(&id);
            }
        }
    }

    fn drain_registrations(&mut self) {
        while let Ok(registration) = self.registrations.try_recv() {
            match registration {
                Registration::Reply(id, slot) => {
                    self.replies.insert(id, slot);
                }
                Registration::Route(Route::Attach {
                    consumer_id,
                    tag,
                    sink,
                }) => {
                    self.consumers.insert(consumer_id, (tag, sink));
                }
                Registration::Route(Route::Detach(id)) => {
                    self.consumers.remove(&id);
                }
            }
        }
    }
}
