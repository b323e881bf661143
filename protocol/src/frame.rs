//! The frame: the unit on the wire. A fixed header, then a body whose meaning the opcode gives.
//!
//! ```text
//! offset size field
//!  0      4   length          bytes after this field (header rest + body)
//!  4      1   version         protocol version, 1
//!  5      1   flags           bit 0: response, bit 1: error response, bit 2: pushed (no request)
//!  6      2   opcode
//!  8      8   correlation_id  chosen by the requester, echoed by the response
//! 16      ..  body
//! ```
//!
//! Little-endian throughout. [`FrameDecoder::decode`] checks the length against its limit before
//! it allocates anything, and a clean end of input is `Ok(None)`, never an error.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Size of the fixed frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Default ceiling on one frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Flag bit: this frame answers a request.
pub const FLAG_RESPONSE: u8 = 0b001;
/// Flag bit: the answer is an error; the body is an [`crate::ErrorBody`].
pub const FLAG_ERROR: u8 = 0b010;
/// Flag bit: pushed by the broker without a request (deliveries).
pub const FLAG_PUSH: u8 = 0b100;

/// One decoded frame. The body is a zero-copy slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the sender.
    pub version: u8,
    /// Response / error / push bits.
    pub flags: u8,
    /// What the body is.
    pub opcode: u16,
    /// Pairs responses with requests on a pipelined connection.
    pub correlation_id: u64,
    /// The opcode-specific body.
    pub body: Bytes,
}

impl Frame {
    /// A request frame.
    pub fn request(opcode: u16, correlation_id: u64, body: Bytes) -> Self {
        Self {
            version: VERSION,
            flags: 0,
            opcode,
            correlation_id,
            body,
        }
    }

    /// The response to a request with this opcode and correlation id.
    pub fn response(opcode: u16, correlation_id: u64, body: Bytes) -> Self {
        Self {
            flags: FLAG_RESPONSE,
            ..Self::request(opcode, correlation_id, body)
        }
    }

    /// Whether this frame answers a request.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// Whether this frame is an error answer.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// Whether this frame was pushed by the broker.
    pub fn is_push(&self) -> bool {
        self.flags & FLAG_PUSH != 0
    }

    /// Writes the header into `dst`; the caller writes (or vectors) the body after it.
    pub fn encode_header(&self, dst: &mut BytesMut) {
        dst.reserve(FRAME_HEADER_LEN);
        dst.put_u32_le((FRAME_HEADER_LEN - 4 + self.body.len()) as u32);
        dst.put_u8(self.version);
        dst.put_u8(self.flags);
        dst.put_u16_le(self.opcode);
        dst.put_u64_le(self.correlation_id);
    }

    /// Writes header and body into `dst` (copies the body; see [`Frame::encode_header`] to avoid
    /// that for large bodies).
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_header(dst);
        dst.extend_from_slice(&self.body);
    }

    /// Total bytes on the wire.
    pub fn wire_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }
}

/// Splits a byte stream into frames, enforcing a size limit before allocating.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    /// Largest frame accepted, header included.
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// Bytes of a complete frame at the front of `src`, if one is there.
    ///
    /// # Errors
    /// [`ProtocolError::FrameTooLarge`] or [`ProtocolError::BadLength`] from the header alone.
    pub fn check(&self, src: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = 4 + u32::from_le_bytes(src[..4].try_into().expect("4 bytes")) as usize;
        if total < FRAME_HEADER_LEN {
            return Err(ProtocolError::BadLength { length: total });
        }
        if total > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                length: total,
                max: self.max_frame,
            });
        }
        Ok((src.len() >= total).then_some(total))
    }

    /// Takes one frame off the front of `src` when it is complete.
    ///
    /// # Errors
    /// [`ProtocolError`] when the header is invalid; the stream cannot be resynchronised then.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(total) = self.check(src)? else {
            src.reserve(FRAME_HEADER_LEN);
            return Ok(None);
        };
        let mut frame = src.split_to(total).freeze();
        frame.advance(4);
        let version = frame.get_u8();
        if version != VERSION {
            return Err(ProtocolError::UnsupportedVersion { version });
        }
        let flags = frame.get_u8();
        let opcode = frame.get_u16_le();
        let correlation_id = frame.get_u64_le();
        Ok(Some(Frame {
            version,
            flags,
            opcode,
            correlation_id,
            body: frame,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame::request(30, 0xABCD, Bytes::from_static(b"body"))
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = BytesMut::new();
        sample().encode(&mut buf);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame, sample());
        assert!(buf.is_empty());
    }

    #[test]
    fn every_truncated_prefix_waits_for_more() {
        let mut full = BytesMut::new();
        sample().encode(&mut full);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(
                FrameDecoder::default().decode(&mut part).unwrap(),
                None,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { .. }));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn a_length_shorter_than_the_header_is_refused() {
        let mut buf = BytesMut::from(&3u32.to_le_bytes()[..]);
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert_eq!(err, ProtocolError::BadLength { length: 7 });
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut buf = BytesMut::new();
        Frame {
            version: 9,
            ..sample()
        }
        .encode(&mut buf);
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert_eq!(err, ProtocolError::UnsupportedVersion { version: 9 });
    }

    #[test]
    fn header_layout_is_pinned() {
        let mut buf = BytesMut::new();
        Frame::response(0x0102, 3, Bytes::from_static(b"x")).encode(&mut buf);
        let expected: &[u8] = &[13, 0, 0, 0, 1, 1, 2, 1, 3, 0, 0, 0, 0, 0, 0, 0, b'x'];
        assert_eq!(&buf[..], expected);
    }
}
