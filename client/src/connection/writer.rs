//! The writer task: takes requests off a queue, numbers them, registers their reply slots with
//! the reader, and writes whatever is queued with as few (vectored) syscalls as possible.
//!
//! Record-batch tails are never copied: each goes to the socket as its own I/O slice.

use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_protocol::frame::{FRAME_HEADER_LEN, VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::reader::Registration;
use super::Outgoing;

/// Most frames gathered into one write.
const MAX_FRAMES_PER_WRITE: usize = 512;
/// Most bytes gathered into one write.
const MAX_BYTES_PER_WRITE: usize = 4 << 20;
/// Most I/O slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// Writes a request frame header for a body of `body_len` bytes.
pub(crate) fn encode_header(dst: &mut BytesMut, opcode: u16, correlation_id: u64, body_len: usize) {
    dst.reserve(FRAME_HEADER_LEN);
    dst.put_u32_le((FRAME_HEADER_LEN - 4 + body_len) as u32);
    dst.put_u8(VERSION);
    dst.put_u8(0);
    dst.put_u16_le(opcode);
    dst.put_u64_le(correlation_id);
}

/// Runs until the queue closes, the socket fails or the connection is cancelled.
pub(super) async fn run(
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
    registrations: mpsc::UnboundedSender<Registration>,
    closed: CancellationToken,
) {
    let mut batch = Gather::new(registrations);
    loop {
        let first = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            next = queue.recv() => match next {
                Some(outgoing) => outgoing,
                None => break,
            },
        };
        batch.push(first);
        while batch.has_room() {
            match queue.try_recv() {
                Ok(outgoing) => batch.push(outgoing),
                Err(_) => break,
            }
        }
        if let Err(e) = batch.write_to(&mut socket).await {
            tracing::debug!(error = %e, "write to broker failed");
            break;
        }
    }
    closed.cancel();
    let _ = socket.shutdown().await;
}

/// Frames gathered for one write.
struct Gather {
    /// Reply slots and routes go to the reader through here, in frame order.
    registrations: mpsc::UnboundedSender<Registration>,
    /// Next correlation id (0 was the handshake).
    next_correlation: u64,
    /// Headers and heads, split off into `chunks` as tails interleave.
    small: BytesMut,
    /// What to write, in order.
    chunks: Vec<Bytes>,
    /// Frames gathered.
    frames: usize,
    /// Bytes gathered.
    bytes: usize,
}

impl Gather {
    fn new(registrations: mpsc::UnboundedSender<Registration>) -> Self {
        Self {
            registrations,
            next_correlation: 1,
            small: BytesMut::with_capacity(64 * 1024),
            chunks: Vec::new(),
            frames: 0,
            bytes: 0,
        }
    }

    fn has_room(&self) -> bool {
        self.frames < MAX_FRAMES_PER_WRITE && self.bytes < MAX_BYTES_PER_WRITE
    }

    fn push(&mut self, out: Outgoing) {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        if let Some(route) = out.route {
            let _ = self.registrations.send(Registration::Route(route));
        }
        if let Some(reply) = out.reply {
            let _ = self
                .registrations
                .send(Registration::Reply(correlation_id, reply));
        }
        let body_len = out.head.len() + out.tail.len();
        encode_header(&mut self.small, out.opcode, correlation_id, body_len);
        self.small.extend_from_slice(&out.head);
        if !out.tail.is_empty() {
            self.chunks.push(self.small.split().freeze());
            self.chunks.push(out.tail);
        }
        self.frames += 1;
        self.bytes += FRAME_HEADER_LEN + body_len;
    }

    async fn write_to(&mut self, socket: &mut OwnedWriteHalf) -> std::io::Result<()> {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
        let result = write_chunks(socket, &mut self.chunks).await;
        self.chunks.clear();
        self.frames = 0;
        self.bytes = 0;
        if self.small.capacity() < 4096 {
            self.small.reserve(64 * 1024);
        }
        result
    }
}

/// Writes every chunk, in order, with vectored writes.
async fn write_chunks(
    socket: &mut (impl tokio::io::AsyncWrite + Unpin),
    chunks: &mut [Bytes],
) -> std::io::Result<()> {
    let mut at = 0;
    while at < chunks.len() {
        let slices: Vec<IoSlice<'_>> = chunks[at..]
            .iter()
            .take(MAX_SLICES)
            .map(|c| IoSlice::new(c))
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let len = chunks[at].len();
            if written >= len {
                written -= len;
                at += 1;
            } else {
                chunks[at].advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_written_whole_and_in_order() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut chunks = vec![
            Bytes::from_static(b"head"),
            Bytes::from(vec![9u8; 100]),
            Bytes::from_static(b"tail"),
        ];
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut all)
                .await
                .unwrap();
            all
        });
        write_chunks(&mut a, &mut chunks).await.unwrap();
        drop(a);
        let all = reader.await.unwrap();
        assert_eq!(all.len(), 108);
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[104..], b"tail");
    }
}
