//! [`Message`]: a builder for the messages a producer sends.

use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::NewMessage;

/// A message to publish: payload plus optional key, id, headers and time to live.
///
/// ```
/// use std::time::Duration;
/// use sluice_client::Message;
/// let message = Message::new("{\"total\": 12}")
///     .key("customer-7")
///     .header("content-type", "application/json")
///     .ttl(Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The wire form, filled in by the builder methods.
    inner: NewMessage,
}

impl Message {
    /// A message with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            inner: NewMessage::new(payload),
        }
    }

    /// Sets the partitioning key: messages with one key go to one partition, in order.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.inner.key = Some(key.into());
        self
    }

    /// Sets a publisher-made id; the broker drops a second message with the same id within its
    /// dedupe window.
    pub fn id(mut self, id: [u8; 16]) -> Self {
        self.inner.id = Some(id);
        self
    }

    /// Sets a deduplication key: the broker then deduplicates the message on this key instead
    /// of its id, so a retry can keep the key while the message id is something else (a trace
    /// id, or a fresh id per attempt), as SQS does with `MessageDeduplicationId`. Ids and keys
    /// share one window: a message is a duplicate if its key (or, without one, its id) was
    /// stored within the window. Messages with one key go to one partition, unless a
    /// partitioning [`key`](Message::key) says otherwise.
    pub fn dedupe_key(mut self, key: [u8; 16]) -> Self {
        self.inner.dedupe_key = Some(key);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.inner.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the time to live, counted from the broker's append time (whole milliseconds, at
    /// most about 49 days).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.inner.ttl_ms = Some(u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// The wire form.
    pub fn into_inner(self) -> NewMessage {
        self.inner
    }
}

impl From<Message> for NewMessage {
    fn from(message: Message) -> Self {
        message.inner
    }
}
