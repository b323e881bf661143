//! A channel's contract: the rules a published message must meet to be delivered to the channel's
//! consumers (DESIGN §2 "Invalid-message channel").
//!
//! This module owns the rules and the short, stable reason string a broken rule produces (it
//! becomes the `sluice-invalid-reason` header). It does not know where an invalid message goes,
//! what the publisher is told, or how the contract is configured: the partition task reads the
//! channel's settings into a [`Contract`] and routes on the result of [`Contract::check`].
//!
//! Checks run cheapest first (size, headers, content type, payload format) and allocate nothing
//! when the message is valid, except for JSON nested more than 64 levels deep.

use sluice_protocol::headers::CONTENT_TYPE;
use sluice_protocol::MessageView;

use super::json;

pub use sluice_protocol::PayloadFormat;

/// Longest header value quoted back in a reason, so a hostile header cannot bloat it.
const MAX_QUOTED: usize = 64;

/// What every message published to a channel must satisfy. The default checks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contract {
    /// Largest payload in bytes; headers and key do not count.
    pub max_payload_bytes: Option<u64>,
    /// Allowed media types of the `content-type` header; empty allows any value or none.
    pub content_types: Vec<String>,
    /// Header names every message must carry (matched exactly, any value).
    pub required_headers: Vec<String>,
    /// What the payload must parse as; `None` and `Some(Bytes)` check nothing.
    pub payload_format: Option<PayloadFormat>,
}

impl Contract {
    /// True when there is nothing to check, so callers can skip decoding messages entirely.
    pub fn is_empty(&self) -> bool {
        self.max_payload_bytes.is_none()
            && self.content_types.is_empty()
            && self.required_headers.is_empty()
            && matches!(self.payload_format, None | Some(PayloadFormat::Bytes))
    }

    /// Whether checking needs the headers; when not, [`Contract::check_payload`] suffices and
    /// the message need not be decoded.
    pub fn needs_headers(&self) -> bool {
        !self.required_headers.is_empty() || !self.content_types.is_empty()
    }

    /// Checks the payload rules alone (size and format).
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), String> {
        self.check_size(payload.len() as u64)?;
        match self.payload_format {
            None | Some(PayloadFormat::Bytes) => Ok(()),
            Some(format) => check_format(format, payload),
        }
    }

    /// Checks one message against every rule, stopping at the first broken one.
    ///
    /// # Errors
    /// The broken rule as a short stable string, `<rule>: <detail>`:
    /// `payload-too-large: 2048 > 1024`, `missing-header: trace-id` (also for a missing
    /// `content-type` when `content_types` is set), `content-type: text/plain not in
    /// [application/json]`, `payload-format: not json: expected ':' at byte 5` (see
    /// [`json::JsonError`]), `payload-format: not utf8`, `payload-format: not msgpack`.
    pub fn check(&self, message: &MessageView) -> Result<(), String> {
        self.check_size(message.payload.len() as u64)?;
        self.check_required_headers(message)?;
        self.check_content_type(message)?;
        match self.payload_format {
            None | Some(PayloadFormat::Bytes) => Ok(()),
            Some(format) => check_format(format, &message.payload),
        }
    }

    fn check_size(&self, len: u64) -> Result<(), String> {
        match self.max_payload_bytes {
            Some(max) if len > max => Err(format!("payload-too-large: {len} > {max}")),
            _ => Ok(()),
        }
    }

    fn check_required_headers(&self, message: &MessageView) -> Result<(), String> {
        match self
            .required_headers
            .iter()
            .find(|h| message.header(h).is_none())
        {
            Some(missing) => Err(format!("missing-header: {missing}")),
            None => Ok(()),
        }
    }

    fn check_content_type(&self, message: &MessageView) -> Result<(), String> {
        if self.content_types.is_empty() {
            return Ok(());
        }
        let Some(value) = message.header(CONTENT_TYPE) else {
            return Err(format!("missing-header: {CONTENT_TYPE}"));
        };
        let media_type = media_type(value);
        let allowed = self.content_types.iter().any(|t| {
            let t = t.trim().as_bytes();
            t.eq_ignore_ascii_case(media_type)
        });
        if allowed {
            return Ok(());
        }
        Err(format!(
            "content-type: {} not in [{}]",
            quote(media_type),
            self.content_types.join(", ")
        ))
    }
}

/// The media type of a `content-type` value: before any `;` parameters, trimmed.
fn media_type(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    value[..end].trim_ascii()
}

/// A header value for a reason string: lossy UTF-8, cut to [`MAX_QUOTED`] bytes.
fn quote(value: &[u8]) -> String {
    let cut = &value[..value.len().min(MAX_QUOTED)];
    let mut out = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < value.len() {
        out.push('…');
    }
    out
}

fn check_format(format: PayloadFormat, payload: &[u8]) -> Result<(), String> {
    match format {
        PayloadFormat::Json => {
            json::check(payload).map_err(|e| format!("payload-format: not json: {e}"))
        }
        PayloadFormat::Utf8 => std::str::from_utf8(payload)
            .map(drop)
            .map_err(|_| "payload-format: not utf8".to_owned()),
        PayloadFormat::Msgpack if msgpack_value_len(payload) == Some(payload.len()) => Ok(()),
        PayloadFormat::Msgpack => Err("payload-format: not msgpack".to_owned()),
        PayloadFormat::Bytes => Ok(()),
    }
}

/// Length of the one MessagePack value at the start of `buf`, or `None` if it is malformed or cut
/// short.
///
/// rmp_serde's borrowing deserializer does not say how many bytes it consumed and its reading one
/// allocates, so this walks the markers itself: iteratively (no recursion, so no depth limit),
/// without allocating, and failing fast when more values are announced than bytes remain. String
/// contents are not checked for UTF-8, as rmp_serde does not either.
fn msgpack_value_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    let mut pending = 1u64;
    while pending > 0 {
        if pending > (buf.len() - pos) as u64 {
            return None;
        }
        pending -= 1;
        let marker = buf[pos];
        pos += 1;
        let (skip, values) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (be_len(buf, &mut pos, 1)?, 0),
            0xc5 | 0xda => (be_len(buf, &mut pos, 2)?, 0),
            0xc6 | 0xdb => (be_len(buf, &mut pos, 4)?, 0),
            0xc7 => (be_len(buf, &mut pos, 1)? + 1, 0),
            0xc8 => (be_len(buf, &mut pos, 2)? + 1, 0),
            0xc9 => (be_len(buf, &mut pos, 4)? + 1, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4..=0xd8 => (1 + (1usize << (marker - 0xd4)), 0),
            0xdc => (0, be_len(buf, &mut pos, 2)? as u64),
            0xdd => (0, be_len(buf, &mut pos, 4)? as u64),
            0xde => (0, 2 * be_len(buf, &mut pos, 2)? as u64),
            0xdf => (0, 2 * be_len(buf, &mut pos, 4)? as u64),
            0xc1 => return None,
        };
        pos = pos.checked_add(skip).filter(|&end| end <= buf.len())?;
        pending += values;
    }
    Some(pos)
}

/// Reads a big-endian length of `width` bytes at `pos` and moves past it.
fn be_len(buf: &[u8], pos: &mut usize, width: usize) -> Option<usize> {
    let bytes = buf.get(*pos..*pos + width)?;
    *pos += width;
    Some(bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)))
}

#[cfg(test)]
#[path = "validation_tests.rs"]
mod tests;
