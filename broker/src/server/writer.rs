//! Frames out: one task per connection drains its [`Outbox`](crate::channel::outbox::Outbox)
//! and writes replies and deliveries to the socket.
//!
//! Each wake-up takes everything queued, encodes headers and small bodies into one staging
//! buffer and queues large delivery tails (slices of stored batches) behind it untouched, then
//! writes the lot with vectored writes: one or two syscalls per drain, not one per frame.
//! Knows frames and [`Outgoing`] items; knows nothing about requests, sessions or channels.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sluice_protocol::frame::{FLAG_ERROR, FLAG_PUSH, FLAG_RESPONSE, FRAME_HEADER_LEN, VERSION};
use sluice_protocol::{opcode, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::channel::outbox::Outgoing;

/// Items taken from the outbox per drain.
const MAX_DRAIN: usize = 1024;
/// Tails at least this long are written from where they are instead of being copied.
const ZERO_COPY_MIN: usize = 4096;
/// Buffers handed to one `writev` at most.
const MAX_IOV: usize = 64;

/// How the connection tells its writer when to stop.
#[derive(Debug, Clone)]
pub struct WriterSignals {
    /// Cancelled once the reader is done: write the replies still due, then stop.
    pub closing: CancellationToken,
    /// Cancelled when replies still due are given up (the shutdown timeout passed).
    pub abort: CancellationToken,
    /// Replies the connection owes: one per request it admitted or answered itself.
    pub expected: Arc<AtomicU64>,
    /// Longest wait for replies still due once closing, so a lost reply cannot pin a task.
    pub drain_timeout: Duration,
}

/// Writes a connection's outgoing frames.
#[derive(Debug)]
pub struct Writer<W> {
    /// The write half of the socket.
    stream: W,
    /// Replies and deliveries queued by the connection and by partitions.
    outbox: UnboundedReceiver<Outgoing>,
    /// Items of the current drain; kept to reuse its allocation.
    items: Vec<Outgoing>,
    /// Headers and small bodies being encoded, not yet queued in `chunks`.
    staging: BytesMut,
    /// Buffers to write, in order: sealed staging and zero-copy delivery tails.
    chunks: VecDeque<Bytes>,
    /// Replies written so far, compared with [`WriterSignals::expected`] when closing.
    replies_written: u64,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// A writer of `outbox` to `stream`.
    pub fn new(stream: W, outbox: UnboundedReceiver<Outgoing>) -> Self {
        Self {
            stream,
            outbox,
            items: Vec::with_capacity(MAX_DRAIN),
            staging: BytesMut::with_capacity(64 * 1024),
            chunks: VecDeque::new(),
            replies_written: 0,
        }
    }

    /// Writes until closing, then until every reply due is written (or abort or the drain
    /// timeout), and gives the stream back.
    ///
    /// # Errors
    /// The socket's error when a write fails; the connection is dead then.
    pub async fn run(mut self, signals: WriterSignals) -> io::Result<W> {
        self.write_until_closing(&signals).await?;
        let due = self.write_replies_due(&signals);
        if tokio::time::timeout(signals.drain_timeout, due)
            .await
            .is_err()
        {
            tracing::debug!("gave up on replies still due after the drain timeout");
        }
        Ok(self.stream)
    }

    async fn write_until_closing(&mut self, signals: &WriterSignals) -> io::Result<()> {
        loop {
            tokio::select! {
                biased;
                _ = signals.abort.cancelled() => return Ok(()),
                _ = signals.closing.cancelled() => return Ok(()),
                taken = self.outbox.recv_many(&mut self.items, MAX_DRAIN) => {
                    if !self.write_drained(taken).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn write_replies_due(&mut self, signals: &WriterSignals) -> io::Result<()> {
        while self.replies_written < signals.expected.load(Ordering::Acquire) {
            tokio::select! {
                biased;
                _ = signals.abort.cancelled() => return Ok(()),
                taken = self.outbox.recv_many(&mut self.items, MAX_DRAIN) => {
                    if !self.write_drained(taken).await? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes and writes the `taken` items of one drain; `false` when the outbox is closed.
    async fn write_drained(&mut self, taken: usize) -> io::Result<bool> {
        if taken == 0 {
            return Ok(false);
        }
        let mut items = std::mem::take(&mut self.items);
        items.drain(..).for_each(|item| self.encode(item));
        self.items = items;
        self.flush().await?;
        Ok(true)
    }

    fn encode(&mut self, item: Outgoing) {
        match item {
            Outgoing::Reply {
                correlation_id,
                opcode,
                result,
            } => {
                let (flags, body) = match result {
                    Ok(response) => (FLAG_RESPONSE, response.encode_body()),
                    Err(error) => {
                        // Every error answer of an accepted connection passes here, whoever
                        // gave it: the dispatcher, a partition, or the connection refusing a
                        // frame (which also counts in sluice_protocol_errors_total).
                        // Connections refused at the limit never get a writer; they count in
                        // sluice_connections_refused_total.
                        metrics::counter!("sluice_request_errors_total", "code" => error.code.name())
                            .increment(1);
                        (FLAG_RESPONSE | FLAG_ERROR, error.encode())
                    }
                };
                put_header(&mut self.staging, flags, opcode, correlation_id, body.len());
                self.staging.extend_from_slice(&body);
                self.replies_written += 1;
            }
            Outgoing::Delivery(delivery) => {
                let head = delivery.encode_head();
                let len = head.len() + delivery.records.len();
                put_header(&mut self.staging, FLAG_PUSH, opcode::DELIVERY, 0, len);
                self.staging.extend_from_slice(&head);
                self.push_tail(delivery.records);
            }
        }
    }

    /// Queues a body tail: copied when small, written in place when large.
    fn push_tail(&mut self, tail: Bytes) {
        if tail.len() < ZERO_COPY_MIN {
            self.staging.extend_from_slice(&tail);
            return;
        }
        self.seal_staging();
        self.chunks.push_back(tail);
    }

    fn seal_staging(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Writes every queued chunk, looping over partial vectored writes.
    async fn flush(&mut self) -> io::Result<()> {
        self.seal_staging();
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = self.chunks.len().min(MAX_IOV);
            for (slice, chunk) in slices.iter_mut().zip(&self.chunks) {
                *slice = IoSlice::new(chunk);
            }
            let written = self.stream.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        self.stream.flush().await
    }

    /// Drops `written` bytes from the front of the queued chunks.
    fn consume(&mut self, mut written: usize) {
        while let Some(front) = self.chunks.front_mut() {
            if front.len() > written {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.chunks.pop_front();
        }
    }
}

/// Writes a frame header for a body of `body_len` bytes, which the caller writes after it.
fn put_header(dst: &mut BytesMut, flags: u8, opcode: u16, correlation_id: u64, body_len: usize) {
    let start = dst.len();
    let header = Frame {
        version: VERSION,
        flags,
        opcode,
        correlation_id,
        body: Bytes::new(),
    };
    header.encode_header(dst);
    // The body is not in `header`: set the length field for the body the caller appends.
    let length = (FRAME_HEADER_LEN - 4 + body_len) as u32;
    dst[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
