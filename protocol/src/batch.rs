//! The record batch: the unit that clients encode, the broker stores and replication ships.
//!
//! A batch is built once by its producer and then travels as the same bytes everywhere: the
//! leader checks its CRC and stamps the fields in front of the CRC-covered area (offsets, term,
//! timestamps), the log stores it as is, and consumers receive it as is. Nothing here knows about
//! channels, cursors or files.
//!
//! ```text
//! offset size field             written by
//!  0      8   base_offset       leader: offset of the first record
//!  8      8   entry_index       leader: position of this batch in the partition's log
//! 16      8   term              leader: generation that appended it
//! 24      8   first_timestamp   leader: append time, ms since the Unix epoch
//! 32      8   max_timestamp     leader: latest timestamp in the batch
//! 40      4   length            producer: whole batch, header included
//! 44      4   crc32c            producer: CRC32C of bytes 48..length
//! ---------------------------- CRC-covered from here on ---------------------------
//! 48      1   magic             1
//! 49      1   attributes        bit 0: control batch (commands; consumes no offsets)
//! 50      2   reserved          0
//! 52      4   record_count      > 0
//! 56      8   producer_id       0 when the producer has no session
//! 64      2   producer_epoch
//! 66      2   reserved          0
//! 68      4   base_sequence     producer's sequence number of the first record
//! 72      ..  records           record_count × { u32 length, length bytes }
//! ```
//!
//! All integers are little-endian. The stamped fields sit outside the CRC so the leader can
//! write them in place without touching the payload; the log checks their continuity instead
//! (each batch starts where the previous one ended).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::message;

/// Size of the fixed batch header in bytes.
pub const HEADER_LEN: usize = 72;
/// The only batch format version so far.
pub const MAGIC: u8 = 1;
/// Attribute bit: the records are state-machine commands, not messages.
pub const ATTR_CONTROL: u8 = 0b0000_0001;

const BASE_OFFSET: usize = 0;
const ENTRY_INDEX: usize = 8;
const TERM: usize = 16;
const FIRST_TIMESTAMP: usize = 24;
const MAX_TIMESTAMP: usize = 32;
const LENGTH: usize = 40;
const CRC: usize = 44;
const CRC_START: usize = 48;
const MAGIC_AT: usize = 48;
const ATTRIBUTES: usize = 49;
const RECORD_COUNT: usize = 52;
const PRODUCER_ID: usize = 56;
const PRODUCER_EPOCH: usize = 64;
const BASE_SEQUENCE: usize = 68;

/// Why a byte string is not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or than the length field promises.
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// The length field disagrees with the bytes given.
    #[error("batch length field says {declared} bytes, but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    /// Unknown format version.
    #[error("unknown batch magic {0}")]
    BadMagic(u8),
    /// The CRC32C does not match the contents.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// A batch must hold at least one record.
    #[error("batch holds no records")]
    Empty,
    /// The record framing does not add up to the batch length or record count.
    #[error("malformed records: {0}")]
    Records(&'static str),
}

/// A validated record batch over shared bytes. Cloning is cheap (reference counted).
#[derive(Clone)]
pub struct RecordBatch {
    /// The whole batch, header included, exactly as it travels and is stored.
    bytes: Bytes,
    /// The first byte of every record (a message's flags) OR-ed together, when known: worked
    /// out by the full check and by the builder, which see every record anyway, while the
    /// batch is in the caches. Lets the broker skip walking a batch's records for ids or TTLs
    /// it does not have: walked later, once the batch has left the caches, that cost a miss
    /// per record. `None` for a batch read back with [`RecordBatch::from_bytes_crc_only`].
    record_flags: Option<u8>,
}

impl PartialEq for RecordBatch {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for RecordBatch {}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("entry_index", &self.entry_index())
            .field("term", &self.term())
            .field("records", &self.record_count())
            .field("control", &self.is_control())
            .field("len", &self.len())
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the length field of a batch that starts at `b`, if the header is there.
pub fn peek_length(b: &[u8]) -> Option<usize> {
    (b.len() >= HEADER_LEN).then(|| u32_at(b, LENGTH) as usize)
}

impl RecordBatch {
    /// Checks header, length, CRC and record framing of `bytes`, which must hold exactly one
    /// batch.
    ///
    /// # Errors
    /// Any [`BatchError`] describing the first problem found.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, BatchError> {
        let mut batch = Self::from_bytes_crc_only(bytes)?;
        batch.record_flags = Some(batch.check_records()?);
        Ok(batch)
    }

    /// Checks header, length and CRC only; enough for bytes read back from our own log.
    ///
    /// # Errors
    /// Any [`BatchError`] except [`BatchError::Records`].
    pub fn from_bytes_crc_only(bytes: Bytes) -> Result<Self, BatchError> {
        let have = bytes.len();
        let declared = peek_length(&bytes).ok_or(BatchError::Truncated {
            need: HEADER_LEN,
            have,
        })?;
        if declared < HEADER_LEN || declared != have {
            return Err(BatchError::LengthMismatch {
                declared,
                actual: have,
            });
        }
        if bytes[MAGIC_AT] != MAGIC {
            return Err(BatchError::BadMagic(bytes[MAGIC_AT]));
        }
        let stored = u32_at(&bytes, CRC);
        let computed = crc32c::crc32c(&bytes[CRC_START..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        if u32_at(&bytes, RECORD_COUNT) == 0 {
            return Err(BatchError::Empty);
        }
        Ok(Self {
            bytes,
            record_flags: None,
        })
    }

    /// Checks the record framing; returns the records' first bytes OR-ed together.
    fn check_records(&self) -> Result<u8, BatchError> {
        let mut rest = &self.bytes[HEADER_LEN..];
        let mut flags = 0;
        for _ in 0..self.record_count() {
            if rest.len() < 4 {
                return Err(BatchError::Records("record length cut off"));
            }
            let len = rest.get_u32_le() as usize;
            if rest.len() < len {
                return Err(BatchError::Records("record body cut off"));
            }
            flags |= rest.first().filter(|_| len > 0).copied().unwrap_or(0);
            rest.advance(len);
        }
        if !rest.is_empty() {
            return Err(BatchError::Records("bytes after the last record"));
        }
        Ok(flags)
    }

    /// Whether some message of this batch may have a TTL: false only when known not to.
    pub fn may_have_ttls(&self) -> bool {
        self.record_flags
            .is_none_or(|flags| flags & message::FLAG_TTL != 0)
    }

    /// Whether some message of this batch may have an id or a dedupe key: false only when
    /// known not to.
    pub fn may_have_dedupe_keys(&self) -> bool {
        self.record_flags
            .is_none_or(|flags| flags & (message::FLAG_ID | message::FLAG_DEDUPE_KEY) != 0)
    }

    /// The batch bytes, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Gives up the batch bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid batch has a header and at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> u64 {
        u64_at(&self.bytes, BASE_OFFSET)
    }

    /// Position of this batch in its partition's log.
    pub fn entry_index(&self) -> u64 {
        u64_at(&self.bytes, ENTRY_INDEX)
    }

    /// Generation (Raft term) that appended the batch.
    pub fn term(&self) -> u64 {
        u64_at(&self.bytes, TERM)
    }

    /// Append time of the batch, ms since the Unix epoch.
    pub fn first_timestamp(&self) -> i64 {
        u64_at(&self.bytes, FIRST_TIMESTAMP) as i64
    }

    /// Latest timestamp in the batch, ms since the Unix epoch.
    pub fn max_timestamp(&self) -> i64 {
        u64_at(&self.bytes, MAX_TIMESTAMP) as i64
    }

    /// Number of records in the batch.
    pub fn record_count(&self) -> u32 {
        u32_at(&self.bytes, RECORD_COUNT)
    }

    /// Whether the records are commands rather than messages.
    pub fn is_control(&self) -> bool {
        self.bytes[ATTRIBUTES] & ATTR_CONTROL != 0
    }

    /// How many offsets the batch occupies: its record count for messages, 0 for commands.
    pub fn offset_count(&self) -> u64 {
        if self.is_control() {
            0
        } else {
            u64::from(self.record_count())
        }
    }

    /// One past the offset of the last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset() + self.offset_count()
    }

    /// Producer session id; 0 when the producer opened none.
    pub fn producer_id(&self) -> u64 {
        u64_at(&self.bytes, PRODUCER_ID)
    }

    /// Producer session epoch.
    pub fn producer_epoch(&self) -> u16 {
        u16::from_le_bytes([self.bytes[PRODUCER_EPOCH], self.bytes[PRODUCER_EPOCH + 1]])
    }

    /// Producer sequence number of the first record.
    pub fn base_sequence(&self) -> u32 {
        u32_at(&self.bytes, BASE_SEQUENCE)
    }

    /// Writes the leader-owned fields in place. The CRC does not cover them, so the payload is
    /// neither copied nor re-hashed when the bytes are uniquely owned.
    ///
    /// A batch cut from a larger shared buffer (a producer batch is a slice of its
    /// connection's read buffer) is copied into bytes of its own here, and that copy is
    /// wanted: the stamped batch is what the tail cache keeps, counted by its length, so a
    /// slice would keep the whole read buffer alive uncounted (64 KiB behind a 300-byte batch).
    pub fn stamp(self, stamp: Stamp) -> Self {
        let mut bytes = BytesMut::from(self.bytes);
        bytes[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&stamp.base_offset.to_le_bytes());
        bytes[ENTRY_INDEX..ENTRY_INDEX + 8].copy_from_slice(&stamp.entry_index.to_le_bytes());
        bytes[TERM..TERM + 8].copy_from_slice(&stamp.term.to_le_bytes());
        let ts = stamp.timestamp.to_le_bytes();
        bytes[FIRST_TIMESTAMP..FIRST_TIMESTAMP + 8].copy_from_slice(&ts);
        bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&ts);
        Self {
            bytes: bytes.freeze(),
            record_flags: self.record_flags,
        }
    }

    /// The records as borrowed slices: for scanning, with no reference counting per record.
    pub fn record_slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest = &self.bytes[HEADER_LEN..];
        (0..self.record_count()).map_while(move |_| {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let record = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some(record)
        })
    }

    /// A new message batch of the records whose positions `keep` says yes to, in order, with
    /// this batch's producer fields; `None` when it keeps none. Unstamped, like a producer's.
    pub fn subset(&self, mut keep: impl FnMut(u32) -> bool) -> Option<RecordBatch> {
        let mut builder = BatchBuilder::messages();
        builder.producer(
            self.producer_id(),
            self.producer_epoch(),
            self.base_sequence(),
        );
        for (i, record) in self.record_slices().enumerate() {
            if keep(i as u32) {
                builder.push_raw(record);
            }
        }
        // An empty batch is the only one `finish` refuses.
        builder.finish().ok()
    }

    /// The raw records, each as a slice of the batch bytes (no copy).
    pub fn raw_records(&self) -> RawRecords {
        RawRecords {
            bytes: self.bytes.slice(HEADER_LEN..),
            remaining: self.record_count(),
        }
    }
}

/// The fields the leader writes into a batch when it appends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Position of the batch in the log.
    pub entry_index: u64,
    /// Generation of the appending leader.
    pub term: u64,
    /// Append time, ms since the Unix epoch.
    pub timestamp: i64,
}

/// Iterator over the length-prefixed records of a batch; yields zero-copy slices.
#[derive(Debug, Clone)]
pub struct RawRecords {
    /// What is left of the records area.
    bytes: Bytes,
    /// Records not yet yielded.
    remaining: u32,
}

impl Iterator for RawRecords {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 || self.bytes.len() < 4 {
            return None;
        }
        let len = (&self.bytes[..4]).get_u32_le() as usize;
        if self.bytes.len() < 4 + len {
            return None;
        }
        self.remaining -= 1;
        self.bytes.advance(4);
        Some(self.bytes.split_to(len))
    }
}

/// Builds a batch record by record into one buffer; the header is written by [`finish`].
///
/// [`finish`]: BatchBuilder::finish
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header placeholder followed by the records written so far.
    buf: BytesMut,
    /// Records written so far.
    count: u32,
    /// Attribute bits for the header.
    attributes: u8,
    /// Producer session fields: id, epoch, base sequence.
    producer: (u64, u16, u32),
    /// The first bytes of the records so far, OR-ed together.
    record_flags: u8,
}

impl BatchBuilder {
    /// Starts a batch of messages.
    pub fn messages() -> Self {
        Self::with_attributes(0)
    }

    /// Starts a batch of control records (commands).
    pub fn control() -> Self {
        Self::with_attributes(ATTR_CONTROL)
    }

    fn with_attributes(attributes: u8) -> Self {
        let mut buf = BytesMut::with_capacity(4096);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            count: 0,
            attributes,
            producer: (0, 0, 0),
            record_flags: 0,
        }
    }

    /// Sets the producer session fields.
    pub fn producer(&mut self, id: u64, epoch: u16, base_sequence: u32) -> &mut Self {
        self.producer = (id, epoch, base_sequence);
        self
    }

    /// Appends one opaque record.
    pub fn push_raw(&mut self, record: &[u8]) -> &mut Self {
        self.buf.put_u32_le(record.len() as u32);
        self.buf.put_slice(record);
        self.record_flags |= record.first().copied().unwrap_or(0);
        self.count += 1;
        self
    }

    /// Appends one record whose body is written by `write`, without an intermediate buffer.
    pub fn push_with(&mut self, write: impl FnOnce(&mut BytesMut)) -> &mut Self {
        let at = self.buf.len();
        self.buf.put_u32_le(0);
        write(&mut self.buf);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.record_flags |= self
            .buf
            .get(at + 4)
            .copied()
            .filter(|_| len > 0)
            .unwrap_or(0);
        self.count += 1;
        self
    }

    /// Records written so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Bytes the batch would have if finished now.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Writes the header and returns the batch.
    ///
    /// # Errors
    /// [`BatchError::Empty`] when no record was pushed.
    pub fn finish(mut self) -> Result<RecordBatch, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let len = self.buf.len() as u32;
        let b = &mut self.buf;
        b[LENGTH..LENGTH + 4].copy_from_slice(&len.to_le_bytes());
        b[MAGIC_AT] = MAGIC;
        b[ATTRIBUTES] = self.attributes;
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&self.producer.0.to_le_bytes());
        b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&self.producer.1.to_le_bytes());
        b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&self.producer.2.to_le_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(RecordBatch {
            bytes: self.buf.freeze(),
            record_flags: Some(self.record_flags),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> RecordBatch {
        let mut b = BatchBuilder::messages();
        b.push_raw(b"hello").push_raw(b"world!");
        b.finish().unwrap()
    }

    #[test]
    fn a_subset_keeps_the_chosen_records_and_the_producer_fields() {
        let mut b = BatchBuilder::messages();
        b.producer(7, 2, 40);
        b.push_raw(b"a").push_raw(b"b").push_raw(b"c");
        let batch = b.finish().unwrap();
        let odd = batch.subset(|i| i % 2 == 0).unwrap();
        let records: Vec<Bytes> = odd.raw_records().collect();
        assert_eq!(records, vec![Bytes::from("a"), Bytes::from("c")]);
        assert_eq!(
            (odd.producer_id(), odd.producer_epoch(), odd.base_sequence()),
            (7, 2, 40)
        );
        RecordBatch::from_bytes(odd.into_bytes()).unwrap();
        assert!(batch.subset(|_| false).is_none());
    }

    #[test]
    fn a_batch_knows_whether_its_messages_may_have_ttls_or_ids() {
        use crate::NewMessage;
        let build = |messages: &[NewMessage]| {
            let mut b = BatchBuilder::messages();
            for m in messages {
                b.push_with(|buf| m.encode(buf).unwrap());
            }
            b.finish().unwrap()
        };
        let plain = NewMessage::new("p");
        let ttl = NewMessage {
            ttl_ms: Some(5),
            ..NewMessage::new("t")
        };
        let id = NewMessage {
            id: Some([1; 16]),
            ..NewMessage::new("i")
        };
        let keyed = NewMessage {
            dedupe_key: Some([2; 16]),
            ..NewMessage::new("k")
        };
        let cases = [
            (vec![plain.clone()], false, false),
            (vec![plain.clone(), ttl.clone()], true, false),
            (vec![id.clone(), plain.clone()], false, true),
            (vec![plain.clone(), keyed.clone()], false, true),
            (vec![ttl, id], true, true),
        ];
        for (messages, ttls, ids) in cases {
            let built = build(&messages);
            let checked = RecordBatch::from_bytes(built.as_bytes().clone()).unwrap();
            let stamped = checked.clone().stamp(Stamp {
                base_offset: 3,
                entry_index: 1,
                term: 1,
                timestamp: 9,
            });
            for batch in [&built, &checked, &stamped] {
                assert_eq!(batch.may_have_ttls(), ttls, "{messages:?}");
                assert_eq!(batch.may_have_dedupe_keys(), ids, "{messages:?}");
            }
            // Read back from a log: not known, so every batch may have them.
            let read = RecordBatch::from_bytes_crc_only(built.as_bytes().clone()).unwrap();
            assert!(read.may_have_ttls() && read.may_have_dedupe_keys());
            assert_eq!(read, built, "equality is by bytes");
        }
        // A subset knows about the records it kept.
        let mixed = build(&[plain, keyed]);
        let first = mixed.subset(|i| i == 0).unwrap();
        assert!(!first.may_have_dedupe_keys());
        assert!(mixed.subset(|i| i == 1).unwrap().may_have_dedupe_keys());
    }

    #[test]
    fn built_batch_round_trips_through_validation() {
        let batch = two_records();
        let again = RecordBatch::from_bytes(batch.as_bytes().clone()).unwrap();
        assert_eq!(again.record_count(), 2);
        let records: Vec<Bytes> = again.raw_records().collect();
        assert_eq!(records, vec![Bytes::from("hello"), Bytes::from("world!")]);
        let slices: Vec<&[u8]> = again.record_slices().collect();
        assert_eq!(slices, vec![&b"hello"[..], &b"world!"[..]]);
        assert!(!again.is_control());
        assert_eq!(again.offset_count(), 2);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let stamped = two_records().stamp(Stamp {
            base_offset: 41,
            entry_index: 7,
            term: 3,
            timestamp: 1_700_000_000_000,
        });
        let again = RecordBatch::from_bytes(stamped.into_bytes()).unwrap();
        assert_eq!(again.base_offset(), 41);
        assert_eq!(again.next_offset(), 43);
        assert_eq!(again.entry_index(), 7);
        assert_eq!(again.term(), 3);
        assert_eq!(again.first_timestamp(), 1_700_000_000_000);
    }

    #[test]
    fn a_stamped_batch_cut_from_a_shared_buffer_holds_only_its_own_bytes() {
        let one = two_records().into_bytes();
        let mut shared = BytesMut::new();
        shared.extend_from_slice(&one);
        shared.extend_from_slice(&one);
        let shared = shared.freeze();
        let first = RecordBatch::from_bytes(shared.slice(..one.len())).unwrap();
        let second = RecordBatch::from_bytes(shared.slice(one.len()..)).unwrap();
        let stamped = first.stamp(Stamp {
            base_offset: 5,
            entry_index: 1,
            term: 1,
            timestamp: 9,
        });
        assert!(
            stamped.as_bytes().is_unique(),
            "not a slice of the shared buffer"
        );
        assert_eq!(stamped.len(), one.len());
        assert_eq!(second.base_offset(), 0, "the other batch is untouched");
    }

    #[test]
    fn every_truncated_prefix_is_rejected() {
        let bytes = two_records().into_bytes();
        for cut in 0..bytes.len() {
            assert!(
                RecordBatch::from_bytes(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_bit_in_the_covered_area_fails_the_crc() {
        let bytes = two_records().into_bytes();
        for at in CRC_START..bytes.len() {
            let mut copy = bytes.to_vec();
            copy[at] ^= 0x10;
            let err = RecordBatch::from_bytes(Bytes::from(copy)).unwrap_err();
            assert!(
                matches!(err, BatchError::Crc { .. } | BatchError::BadMagic(_)),
                "at {at}: {err:?}"
            );
        }
    }

    #[test]
    fn an_empty_builder_does_not_make_a_batch() {
        assert_eq!(BatchBuilder::messages().finish(), Err(BatchError::Empty));
    }

    #[test]
    fn control_batches_consume_no_offsets() {
        let mut b = BatchBuilder::control();
        b.push_raw(b"cmd");
        let batch = b.finish().unwrap();
        assert!(batch.is_control());
        assert_eq!(batch.offset_count(), 0);
    }

    #[test]
    fn header_layout_is_pinned() {
        let mut b = BatchBuilder::messages();
        b.producer(0x0102, 3, 9).push_raw(b"x");
        let bytes = b
            .finish()
            .unwrap()
            .stamp(Stamp {
                base_offset: 5,
                entry_index: 6,
                term: 7,
                timestamp: 8,
            })
            .into_bytes();
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(&bytes[0..8], &5u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &6u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &8u64.to_le_bytes());
        assert_eq!(&bytes[32..40], &8u64.to_le_bytes());
        assert_eq!(&bytes[40..44], &77u32.to_le_bytes());
        assert_eq!(&bytes[48..52], &[1, 0, 0, 0]);
        assert_eq!(&bytes[52..56], &1u32.to_le_bytes());
        assert_eq!(&bytes[56..64], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[64..66], &3u16.to_le_bytes());
        assert_eq!(&bytes[68..72], &9u32.to_le_bytes());
        assert_eq!(&bytes[72..], &[1, 0, 0, 0, b'x']);
    }
}
