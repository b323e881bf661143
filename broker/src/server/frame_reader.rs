//! Frames in: the read half of a connection, a read buffer and the frame decoder.
//!
//! Owns reading bytes and cutting them into [`Frame`]s. Reads fill the buffer in large chunks,
//! so frames that arrive together cost one syscall, and every complete frame already buffered is
//! handed out without touching the socket. Knows nothing about requests, sessions or timeouts.

use bytes::BytesMut;
use sluice_protocol::frame::FRAME_HEADER_LEN;
use sluice_protocol::{Frame, FrameDecoder, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Spare room the buffer gets before each read: the size of one read syscall at most.
const READ_CHUNK: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes do not form a valid frame header; the stream cannot be resynchronised.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    CutOff {
        /// Bytes of the incomplete frame that did arrive.
        buffered: usize,
    },
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The read half of the socket.
    stream: R,
    /// Bytes read but not yet handed out as frames; frame bodies are zero-copy slices of it.
    buffer: BytesMut,
    /// Splits the buffer into frames and enforces the size limit before allocating.
    decoder: FrameDecoder,
    /// The decoder's limit, so a read never reserves more than one frame may take.
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing frames longer than `max_frame` bytes.
    pub fn new(stream: R, max_frame: usize) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(READ_CHUNK),
            decoder: FrameDecoder::new(max_frame),
            max_frame,
        }
    }

    /// The next frame already in the buffer, without reading.
    ///
    /// # Errors
    /// [`ReadError::Protocol`] when the buffered header is invalid.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        Ok(self.decoder.decode(&mut self.buffer)?)
    }

    /// Reads once from the socket into the buffer. `Ok(false)` is a clean end of stream.
    ///
    /// Cancel safe: bytes are either in the buffer or still in the socket.
    ///
    /// # Errors
    /// [`ReadError::CutOff`] when the stream ends inside a frame, [`ReadError::Io`] when the
    /// socket fails.
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        self.reserve();
        if self.stream.read_buf(&mut self.buffer).await? > 0 {
            return Ok(true);
        }
        match self.buffer.len() {
            0 => Ok(false),
            buffered => Err(ReadError::CutOff { buffered }),
        }
    }

    /// Reads until a whole frame is buffered and returns it; `Ok(None)` at a clean end of
    /// stream. Cancel safe, like [`FrameReader::fill`].
    ///
    /// # Errors
    /// As [`FrameReader::buffered_frame`] and [`FrameReader::fill`].
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Gives the stream back, dropping whatever is buffered.
    pub fn into_inner(self) -> R {
        self.stream
    }

    /// Makes room for one large read, or for the rest of the frame being received when it is
    /// larger (never beyond the frame limit: the decoder refuses longer frames on its own).
    ///
    /// Once every frame cut from the buffer is gone, its allocation is reused (the bytes not
    /// yet handed out, part of one frame at most, move to its front) if it is large enough;
    /// otherwise they move to a fresh buffer. `BytesMut::reserve` grew a too-small allocation
    /// in place with `realloc` instead, copying everything ever read into it, handed-out
    /// frames included, and kept it at its largest: a memcpy of up to megabytes on the
    /// connection task, led by the broker's profile under `sluice-bench`.
    fn reserve(&mut self) {
        let frame_len = self.pending_frame_len().min(self.max_frame);
        let wanted = frame_len.saturating_sub(self.buffer.len()).max(READ_CHUNK);
        let room = self.buffer.capacity() - self.buffer.len();
        if room >= wanted || self.buffer.try_reclaim(wanted) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buffer.len() + wanted);
        fresh.extend_from_slice(&self.buffer);
        self.buffer = fresh;
    }

    /// Length of the frame at the front of the buffer, once its length field is there.
    fn pending_frame_len(&self) -> usize {
        match self.buffer.get(..4) {
            Some(&[a, b, c, d]) => 4 + u32::from_le_bytes([a, b, c, d]) as usize,
            _ => FRAME_HEADER_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    fn encoded(frames: &[Frame]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frames.iter().for_each(|f| f.encode(&mut buf));
        buf.to_vec()
    }

    fn frame(corr: u64) -> Frame {
        Frame::request(12, corr, Bytes::from_static(b"\xc0"))
    }

    #[tokio::test]
    async fn frames_that_arrive_together_are_all_buffered_by_one_read() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&encoded(&[frame(1), frame(2), frame(3)]))
            .await
            .unwrap();
        let mut reader = FrameReader::new(server, 1024);
        assert!(reader.fill().await.unwrap());
        for corr in 1..=3 {
            assert_eq!(reader.buffered_frame().unwrap(), Some(frame(corr)));
        }
        assert_eq!(reader.buffered_frame().unwrap(), None);
    }

    #[tokio::test]
    async fn a_clean_end_of_stream_is_none() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&encoded(&[frame(7)])).await.unwrap();
        drop(client);
        let mut reader = FrameReader::new(server, 1024);
        assert_eq!(reader.read_frame().await.unwrap(), Some(frame(7)));
        assert_eq!(reader.read_frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&encoded(&[frame(7)])[..10]).await.unwrap();
        drop(client);
        let err = FrameReader::new(server, 1024)
            .read_frame()
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::CutOff { buffered: 10 }), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_without_reserving_it() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let mut reader = FrameReader::new(server, 1024);
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(
            err,
            ReadError::Protocol(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(reader.buffer.capacity() <= 2 * READ_CHUNK);
    }

    #[tokio::test]
    async fn frames_across_many_reads_come_out_whole_and_the_buffer_stays_one_read_large() {
        // Frames that straddle reads, some kept alive (as the tail cache keeps batches) and
        // some dropped at once, so the buffer is sometimes shared and sometimes not.
        let frames: Vec<Frame> = (0..400u64)
            .map(|i| {
                let len = 1000 + (i as usize * 7919) % (READ_CHUNK * 3 / 4);
                Frame::request(30, i, Bytes::from(vec![i as u8; len]))
            })
            .collect();
        let bytes = encoded(&frames);
        let (mut client, server) = tokio::io::duplex(7919);
        tokio::spawn(async move { client.write_all(&bytes).await });
        let mut reader = FrameReader::new(server, 1 << 20);
        let mut kept = Vec::new();
        for (i, want) in frames.iter().enumerate() {
            let got = reader.read_frame().await.unwrap().expect("a frame");
            assert_eq!(&got, want);
            assert!(
                reader.buffer.capacity() <= 2 * READ_CHUNK,
                "the buffer grew to {}",
                reader.buffer.capacity()
            );
            if i % 50 < 10 {
                kept.push((i, got));
            }
        }
        assert_eq!(reader.read_frame().await.unwrap(), None);
        // Frames kept while the reader went on (and reused or replaced its buffer) are intact.
        for (i, got) in kept {
            assert_eq!(got, frames[i], "frame {i}");
        }
    }

    #[tokio::test]
    async fn a_frame_larger_than_one_read_chunk_is_reassembled() {
        let big = Frame::request(30, 9, Bytes::from(vec![7u8; 3 * READ_CHUNK]));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let bytes = encoded(std::slice::from_ref(&big));
        tokio::spawn(async move { client.write_all(&bytes).await });
        let mut reader = FrameReader::new(server, 4 * READ_CHUNK);
        assert_eq!(reader.read_frame().await.unwrap(), Some(big));
    }
}
