//! The message record: how one message is laid out inside a (non-control) record batch.
//!
//! ```text
//! size  field
//!  1    flags          bit 0: key present, bit 1: ttl present, bit 2: id present,
//!                      bit 3: dedupe key present
//!  1    reserved       0
//!  2    header_count
//! 16    id             only when flag bit 2 is set (publisher-made id)
//! 16    dedupe_key     only when flag bit 3 is set: what the broker deduplicates the message
//!                      on instead of its id
//!  4    ttl_ms         only when flag bit 1 is set; expiry = batch timestamp + ttl
//!  2+n  key            u16 length, bytes; only when flag bit 0 is set
//!       headers        header_count × { u16 name length, name (UTF-8), u32 value length, value }
//!       payload        the rest of the record
//! ```
//!
//! A message without a publisher-made id gets one derived from its partition and offset, so ids
//! cost nothing unless a publisher wants them for deduplication.
//!
//! The dedupe key exists for copies the broker makes (dead letters, invalid messages, redrives):
//! a copy keeps the message's id, for the application, while the target channel deduplicates it
//! on a key derived from where it was copied from. Deduplicating copies on their id would drop a
//! second message that happens to reuse an id once the first one's copy is stored, and would
//! lose it, as its source is settled by the move.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const FLAG_KEY: u8 = 0b001;
pub(crate) const FLAG_TTL: u8 = 0b010;
pub(crate) const FLAG_ID: u8 = 0b100;
pub(crate) const FLAG_DEDUPE_KEY: u8 = 0b1000;

/// Why a record is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The record ends before a field it declares.
    #[error("message record truncated in {0}")]
    Truncated(&'static str),
    /// A header name is not UTF-8.
    #[error("header name is not UTF-8")]
    HeaderName,
    /// A field is longer than its length prefix can say.
    #[error("{0} too long")]
    TooLong(&'static str),
}

/// A message as a publisher writes it. Borrowed fields: encoding copies each once, into the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// Publisher-made id, used for deduplication; `None` lets the broker derive one.
    pub id: Option<[u8; 16]>,
    /// Deduplicate on this instead of `id` (see the [module docs](self)).
    pub dedupe_key: Option<[u8; 16]>,
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Time to live in milliseconds, counted from the broker's append time.
    pub ttl_ms: Option<u32>,
    /// Application headers.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub payload: Bytes,
}

impl NewMessage {
    /// A message with only a payload.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// What picks the message's partition, the same in every client and the broker: its key,
    /// so one key's messages keep their order; without one, what the broker deduplicates it on
    /// (its dedupe key, else its id), so duplicates meet their original; `None` means any.
    pub fn partition_key(&self) -> Option<&[u8]> {
        self.key
            .as_deref()
            .or(self.dedupe_key.as_ref().map(|k| &k[..]))
            .or(self.id.as_ref().map(|id| &id[..]))
    }

    /// Bytes the record body will take.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| 6 + k.len() + v.len())
            .sum();
        4 + self.id.map_or(0, |_| 16)
            + self.dedupe_key.map_or(0, |_| 16)
            + self.ttl_ms.map_or(0, |_| 4)
            + self.key.as_ref().map_or(0, |k| 2 + k.len())
            + headers
            + self.payload.len()
    }

    /// Writes the record body (without its length prefix).
    ///
    /// # Errors
    /// [`MessageError::TooLong`] when a key, header name or header count overflows its prefix.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), MessageError> {
        let mut flags = 0;
        flags |= if self.key.is_some() { FLAG_KEY } else { 0 };
        flags |= if self.ttl_ms.is_some() { FLAG_TTL } else { 0 };
        flags |= if self.id.is_some() { FLAG_ID } else { 0 };
        flags |= if self.dedupe_key.is_some() {
            FLAG_DEDUPE_KEY
        } else {
            0
        };
        let count =
            u16::try_from(self.headers.len()).map_err(|_| MessageError::TooLong("headers"))?;
        out.reserve(self.encoded_len());
        out.put_u8(flags);
        out.put_u8(0);
        out.put_u16_le(count);
        if let Some(id) = &self.id {
            out.put_slice(id);
        }
        if let Some(dedupe_key) = &self.dedupe_key {
            out.put_slice(dedupe_key);
        }
        if let Some(ttl) = self.ttl_ms {
            out.put_u32_le(ttl);
        }
        if let Some(key) = &self.key {
            let len = u16::try_from(key.len()).map_err(|_| MessageError::TooLong("key"))?;
            out.put_u16_le(len);
            out.put_slice(key);
        }
        for (name, value) in &self.headers {
            let len =
                u16::try_from(name.len()).map_err(|_| MessageError::TooLong("header name"))?;
            let vlen =
                u32::try_from(value.len()).map_err(|_| MessageError::TooLong("header value"))?;
            out.put_u16_le(len);
            out.put_slice(name.as_bytes());
            out.put_u32_le(vlen);
            out.put_slice(value);
        }
        out.put_slice(&self.payload);
        Ok(())
    }
}

/// A decoded message record; every field is a zero-copy slice of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// Publisher-made id, if any.
    pub id: Option<[u8; 16]>,
    /// What the broker deduplicated the message on instead of its id, if not on the id.
    pub dedupe_key: Option<[u8; 16]>,
    /// Partitioning key, if any.
    pub key: Option<Bytes>,
    /// Time to live in milliseconds from the batch timestamp, if any.
    pub ttl_ms: Option<u32>,
    /// Application headers, in the order written.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub payload: Bytes,
}

impl MessageView {
    /// Parses one record body.
    ///
    /// # Errors
    /// [`MessageError`] when the record is cut short or a header name is not UTF-8.
    pub fn decode(mut rec: Bytes) -> Result<Self, MessageError> {
        need(&rec, 4, "flags")?;
        let flags = rec.get_u8();
        rec.advance(1);
        let count = rec.get_u16_le();
        let id = take_16(&mut rec, flags & FLAG_ID != 0, "id")?;
        let dedupe_key = take_16(&mut rec, flags & FLAG_DEDUPE_KEY != 0, "dedupe key")?;
        let ttl_ms = if flags & FLAG_TTL != 0 {
            need(&rec, 4, "ttl")?;
            Some(rec.get_u32_le())
        } else {
            None
        };
        let key = if flags & FLAG_KEY != 0 {
            need(&rec, 2, "key length")?;
            let len = rec.get_u16_le() as usize;
            need(&rec, len, "key")?;
            Some(rec.split_to(len))
        } else {
            None
        };
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            headers.push(decode_header(&mut rec)?);
        }
        Ok(Self {
            id,
            dedupe_key,
            key,
            ttl_ms,
            headers,
            payload: rec,
        })
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Back to a publishable message (used by dead-lettering and redrive). The dedupe key stays
    /// behind: it belongs to the stored copy, and whoever publishes again sets its own.
    pub fn into_new(self) -> NewMessage {
        NewMessage {
            id: self.id,
            dedupe_key: None,
            key: self.key,
            ttl_ms: self.ttl_ms,
            headers: self.headers,
            payload: self.payload,
        }
    }
}

/// The next 16 bytes of `rec` when `present`.
fn take_16(
    rec: &mut Bytes,
    present: bool,
    what: &'static str,
) -> Result<Option<[u8; 16]>, MessageError> {
    if !present {
        return Ok(None);
    }
    need(rec, 16, what)?;
    let mut bytes = [0; 16];
    rec.copy_to_slice(&mut bytes);
    Ok(Some(bytes))
}

fn decode_header(rec: &mut Bytes) -> Result<(String, Bytes), MessageError> {
    need(rec, 2, "header name length")?;
    let len = rec.get_u16_le() as usize;
    need(rec, len, "header name")?;
    let name = std::str::from_utf8(&rec[..len])
        .map_err(|_| MessageError::HeaderName)?
        .to_owned();
    rec.advance(len);
    need(rec, 4, "header value length")?;
    let vlen = rec.get_u32_le() as usize;
    need(rec, vlen, "header value")?;
    Ok((name, rec.split_to(vlen)))
}

fn need(rec: &Bytes, n: usize, what: &'static str) -> Result<(), MessageError> {
    if rec.len() < n {
        Err(MessageError::Truncated(what))
    } else {
        Ok(())
    }
}

/// The payload of a message record, found without decoding (or allocating for) the rest.
pub fn payload_of(record: &[u8]) -> Option<&[u8]> {
    let flags = *record.first()?;
    let count = u16::from_le_bytes(record.get(2..4)?.try_into().ok()?);
    let mut at = 4;
    at += fixed_fields_len(flags);
    if flags & FLAG_KEY != 0 {
        at += 2 + u16::from_le_bytes(record.get(at..at + 2)?.try_into().ok()?) as usize;
    }
    for _ in 0..count {
        at += 2 + u16::from_le_bytes(record.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 4 + u32::from_le_bytes(record.get(at..at + 4)?.try_into().ok()?) as usize;
    }
    record.get(at..)
}

/// Bytes taken by the id, dedupe key and ttl fields that `flags` declare.
fn fixed_fields_len(flags: u8) -> usize {
    let mut len = 0;
    len += if flags & FLAG_ID != 0 { 16 } else { 0 };
    len += if flags & FLAG_DEDUPE_KEY != 0 { 16 } else { 0 };
    len += if flags & FLAG_TTL != 0 { 4 } else { 0 };
    len
}

/// The publisher-made id of a message record, read without decoding the rest of it.
pub fn peek_id(record: &[u8]) -> Option<[u8; 16]> {
    let flags = *record.first()?;
    if flags & FLAG_ID == 0 {
        return None;
    }
    record.get(4..20)?.try_into().ok()
}

/// What the broker deduplicates a message record on: its dedupe key if it has one, else its
/// publisher-made id; read without decoding the rest of it.
pub fn peek_dedupe_key(record: &[u8]) -> Option<[u8; 16]> {
    let flags = *record.first()?;
    if flags & FLAG_DEDUPE_KEY == 0 {
        return peek_id(record);
    }
    let at = 4 + if flags & FLAG_ID != 0 { 16 } else { 0 };
    record.get(at..at + 16)?.try_into().ok()
}

/// The TTL of a message record in milliseconds, read without decoding the rest of it.
pub fn peek_ttl(record: &[u8]) -> Option<u32> {
    let flags = *record.first()?;
    if flags & FLAG_TTL == 0 {
        return None;
    }
    // The ttl is the last of the fixed fields.
    let end = 4 + fixed_fields_len(flags);
    let bytes = record.get(end - 4..end)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The id of a message that has none of its own: partition and offset, big-endian, so ids sort
/// like positions.
pub fn derived_id(partition: u32, offset: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[4..8].copy_from_slice(&partition.to_be_bytes());
    id[8..].copy_from_slice(&offset.to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_key_is_the_key_else_the_dedupe_key_else_the_id() {
        let mut m = NewMessage::new("p");
        assert_eq!(m.partition_key(), None);
        m.id = Some([1; 16]);
        assert_eq!(m.partition_key(), Some(&[1; 16][..]));
        m.dedupe_key = Some([2; 16]);
        assert_eq!(m.partition_key(), Some(&[2; 16][..]));
        m.key = Some(Bytes::from("k"));
        assert_eq!(m.partition_key(), Some(&b"k"[..]));
    }

    fn full() -> NewMessage {
        NewMessage {
            id: Some([7; 16]),
            dedupe_key: None,
            key: Some(Bytes::from("k")),
            ttl_ms: Some(1500),
            headers: vec![("content-type".into(), Bytes::from("application/json"))],
            payload: Bytes::from("{}"),
        }
    }

    fn encode(m: &NewMessage) -> Bytes {
        let mut out = BytesMut::new();
        m.encode(&mut out).unwrap();
        assert_eq!(out.len(), m.encoded_len());
        out.freeze()
    }

    #[test]
    fn messages_round_trip_with_and_without_optional_fields() {
        for m in [full(), NewMessage::new("plain")] {
            let view = MessageView::decode(encode(&m)).unwrap();
            assert_eq!(view.into_new(), m);
        }
    }

    #[test]
    fn every_truncated_prefix_fails_cleanly() {
        let bytes = encode(&full());
        // The payload is the tail, so only cuts inside the fixed fields and headers must fail.
        let payload_at = bytes.len() - 2;
        for cut in 0..payload_at {
            assert!(
                MessageView::decode(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn record_layout_is_pinned() {
        let m = NewMessage {
            key: Some(Bytes::from("k")),
            headers: vec![("h".into(), Bytes::from("v"))],
            payload: Bytes::from("p"),
            ..NewMessage::default()
        };
        let expected: &[u8] = &[1, 0, 1, 0, 1, 0, b'k', 1, 0, b'h', 1, 0, 0, 0, b'v', b'p'];
        assert_eq!(&encode(&m)[..], expected);
    }

    #[test]
    fn the_payload_is_found_without_decoding() {
        assert_eq!(payload_of(&encode(&full())), Some(&b"{}"[..]));
        assert_eq!(payload_of(&encode(&NewMessage::new("x"))), Some(&b"x"[..]));
        let bytes = encode(&full());
        for cut in 0..bytes.len() - 2 {
            assert_eq!(payload_of(&bytes[..cut]), None, "cut {cut}");
        }
    }

    #[test]
    fn the_id_is_peeked_without_decoding() {
        assert_eq!(peek_id(&encode(&full())), Some([7; 16]));
        assert_eq!(peek_id(&encode(&NewMessage::new("x"))), None);
        assert_eq!(peek_id(&encode(&full())[..10]), None);
    }

    #[test]
    fn the_ttl_is_peeked_without_decoding() {
        assert_eq!(peek_ttl(&encode(&full())), Some(1500));
        let no_id = NewMessage { id: None, ..full() };
        assert_eq!(peek_ttl(&encode(&no_id)), Some(1500));
        assert_eq!(peek_ttl(&encode(&NewMessage::new("x"))), None);
        assert_eq!(peek_ttl(&encode(&full())[..6]), None);
    }

    #[test]
    fn a_dedupe_key_travels_beside_the_id_and_is_what_dedupe_peeks() {
        let copy = NewMessage {
            dedupe_key: Some([9; 16]),
            ..full()
        };
        let bytes = encode(&copy);
        let view = MessageView::decode(bytes.clone()).unwrap();
        assert_eq!(view.id, Some([7; 16]));
        assert_eq!(view.dedupe_key, Some([9; 16]));
        assert_eq!(view.ttl_ms, Some(1500));
        assert_eq!(view.header("content-type").unwrap(), "application/json");
        assert_eq!(view.payload, "{}");
        assert_eq!(peek_id(&bytes), Some([7; 16]));
        assert_eq!(peek_dedupe_key(&bytes), Some([9; 16]));
        assert_eq!(peek_ttl(&bytes), Some(1500));
        assert_eq!(payload_of(&bytes), Some(&b"{}"[..]));
        for cut in 0..bytes.len() - 2 {
            assert!(
                MessageView::decode(bytes.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(peek_dedupe_key(&bytes[..30]), None);
        // Without a key, dedupe goes by the id; a copy published again carries no key.
        let no_id = NewMessage { id: None, ..copy };
        assert_eq!(peek_dedupe_key(&encode(&no_id)), Some([9; 16]));
        assert_eq!(peek_id(&encode(&no_id)), None);
        assert_eq!(peek_dedupe_key(&encode(&full())), Some([7; 16]));
        assert_eq!(peek_dedupe_key(&encode(&NewMessage::new("x"))), None);
        assert_eq!(view.into_new(), full());
    }

    #[test]
    fn derived_ids_order_like_offsets() {
        assert!(derived_id(0, 1) < derived_id(0, 2));
        assert!(derived_id(0, u64::MAX) < derived_id(1, 0));
    }
}
