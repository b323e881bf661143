//! Whether a payload is one JSON text: the check behind `payload_format = json`.
//!
//! The rules are RFC 8259's grammar plus the two of I-JSON (RFC 7493 §2.1) that make every
//! string decodable: the text is UTF-8, and no `\u` escape is half of a surrogate pair that is
//! not there. Numbers and nesting depth are not limited, because the grammar does not limit
//! them. Nothing is built: no values, no strings, and no allocation unless arrays and objects
//! nest more than 64 deep.
//!
//! It is one pass that skips the bodies of strings eight bytes at a time, and checks UTF-8 only
//! when a string held a byte outside ASCII (outside strings the grammar allows ASCII alone).
//! It replaced serde_json's skipping parser plus two passes of its own (UTF-8, surrogate
//! escapes): `cargo bench -p sluice-broker --bench json_check` measures both.

use std::fmt;

/// Why a payload is not one JSON text, and the byte offset where that was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Offset into the payload.
    pub at: usize,
}

/// What is wrong with a payload that is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text ends inside a value, or holds no value at all.
    UnexpectedEnd,
    /// Something other than a value where one must be.
    ExpectedValue,
    /// Something other than a string where an object member's name must be.
    ExpectedName,
    /// No `:` after an object member's name.
    ExpectedColon,
    /// Neither `,` nor `}` after an object member.
    ExpectedCommaOrBrace,
    /// Neither `,` nor `]` after an array element.
    ExpectedCommaOrBracket,
    /// More than whitespace after the value.
    TrailingCharacters,
    /// A byte below 0x20 inside a string; it must be escaped.
    ControlCharacter,
    /// A backslash not followed by one of `"\/bfnrt` or `u` and four hex digits.
    InvalidEscape,
    /// A number that breaks the grammar where a digit must follow (`[1.x]`, `[-x]`, `[1e]`).
    InvalidNumber,
    /// A word that is not `true`, `false` or `null`.
    InvalidLiteral,
    /// A `\u` escape of half a surrogate pair without its other half.
    UnpairedSurrogate,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::UnexpectedEnd => "unexpected end",
            Self::ExpectedValue => "expected a value",
            Self::ExpectedName => "expected a member name",
            Self::ExpectedColon => "expected ':'",
            Self::ExpectedCommaOrBrace => "expected ',' or '}'",
            Self::ExpectedCommaOrBracket => "expected ',' or ']'",
            Self::TrailingCharacters => "characters after the value",
            Self::ControlCharacter => "control character in a string",
            Self::InvalidEscape => "invalid escape",
            Self::InvalidNumber => "invalid number",
            Self::InvalidLiteral => "expected true, false or null",
            Self::UnpairedSurrogate => "unpaired surrogate escape",
            Self::InvalidUtf8 => "invalid UTF-8",
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.describe(), self.at)
    }
}

impl std::error::Error for JsonError {}

/// Checks that `text` is exactly one JSON text, surrounded by whitespace at most.
///
/// # Errors
/// The first rule broken, and where.
pub fn check(text: &[u8]) -> Result<(), JsonError> {
    let mut parser = Parser {
        text,
        at: 0,
        non_ascii: false,
        nesting: Nesting::default(),
    };
    parser.value_then_end()?;
    if parser.non_ascii {
        if let Err(e) = std::str::from_utf8(text) {
            return Err(JsonError {
                kind: ErrorKind::InvalidUtf8,
                at: e.valid_up_to(),
            });
        }
    }
    Ok(())
}

struct Parser<'a> {
    text: &'a [u8],
    /// Offset of the next byte to read.
    at: usize,
    /// Whether a string held a byte outside ASCII, so the text needs a UTF-8 check.
    non_ascii: bool,
    /// The arrays and objects the parser is inside.
    nesting: Nesting,
}

impl Parser<'_> {
    /// Parses the whole text, without recursion: after each value, closes the containers that
    /// end there until one continues with another value, or none is open.
    fn value_then_end(&mut self) -> Result<(), JsonError> {
        'value: loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                    } else {
                        self.member_name()?;
                        self.nesting.push(Container::Object);
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                    } else {
                        self.nesting.push(Container::Array);
                        continue 'value;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error(ErrorKind::ExpectedValue)),
                None => return Err(self.error(ErrorKind::UnexpectedEnd)),
            }
            loop {
                self.skip_whitespace();
                let Some(container) = self.nesting.innermost() else {
                    if self.at == self.text.len() {
                        return Ok(());
                    }
                    return Err(self.error(ErrorKind::TrailingCharacters));
                };
                match (container, self.peek()) {
                    (Container::Object, Some(b',')) => {
                        self.at += 1;
                        self.skip_whitespace();
                        self.member_name()?;
                        continue 'value;
                    }
                    (Container::Array, Some(b',')) => {
                        self.at += 1;
                        continue 'value;
                    }
                    (Container::Object, Some(b'}')) | (Container::Array, Some(b']')) => {
                        self.at += 1;
                        self.nesting.pop();
                    }
                    (_, None) => return Err(self.error(ErrorKind::UnexpectedEnd)),
                    (Container::Object, _) => {
                        return Err(self.error(ErrorKind::ExpectedCommaOrBrace))
                    }
                    (Container::Array, _) => {
                        return Err(self.error(ErrorKind::ExpectedCommaOrBracket))
                    }
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn error(&self, kind: ErrorKind) -> JsonError {
        self.error_at(kind, self.at)
    }

    fn error_at(&self, kind: ErrorKind, at: usize) -> JsonError {
        let kind = if at >= self.text.len() {
            ErrorKind::UnexpectedEnd
        } else {
            kind
        };
        JsonError { kind, at }
    }

    fn skip_whitespace(&mut self) {
        let rest = &self.text[self.at..];
        let blank = |b: &&u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        self.at += rest.iter().take_while(blank).count();
    }

    /// An object member's name and the colon after it.
    fn member_name(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.error(ErrorKind::ExpectedName));
        }
        self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.error(ErrorKind::ExpectedColon));
        }
        self.at += 1;
        Ok(())
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        loop {
            self.at += plain_run(&self.text[self.at..]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => self.escape()?,
                Some(0x80..) => {
                    // Text outside ASCII comes in runs (a word of Greek, a line of Chinese):
                    // skip the run here rather than stop at each of its bytes. The UTF-8 check
                    // at the end judges it.
                    self.non_ascii = true;
                    let rest = &self.text[self.at..];
                    self.at += rest.iter().take_while(|&&b| b >= 0x80).count();
                }
                Some(_) => return Err(self.error(ErrorKind::ControlCharacter)),
                None => return Err(self.error(ErrorKind::UnexpectedEnd)),
            }
        }
    }

    /// An escape, from its backslash.
    fn escape(&mut self) -> Result<(), JsonError> {
        let start = self.at;
        match self.text.get(start + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex_unit(start + 2)?;
                self.at += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = self.text.get(self.at..self.at + 2) == Some(b"\\u")
                            && matches!(self.hex_unit(self.at + 2), Ok(0xDC00..=0xDFFF));
                        if !low {
                            return Err(self.error_at(ErrorKind::UnpairedSurrogate, start));
                        }
                        self.at += 6;
                        Ok(())
                    }
                    0xDC00..=0xDFFF => Err(self.error_at(ErrorKind::UnpairedSurrogate, start)),
                    _ => Ok(()),
                }
            }
            _ => Err(self.error_at(ErrorKind::InvalidEscape, start + 1)),
        }
    }

    /// The UTF-16 code unit of the four hex digits at `at`.
    fn hex_unit(&self, at: usize) -> Result<u16, JsonError> {
        let mut unit = 0u16;
        for offset in at..at + 4 {
            let digit = match self.text.get(offset) {
                Some(&b) => (b as char).to_digit(16),
                None => None,
            };
            let Some(digit) = digit else {
                return Err(self.error_at(ErrorKind::InvalidEscape, offset));
            };
            unit = unit << 4 | digit as u16;
        }
        Ok(unit)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error(ErrorKind::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.iter().take_while(|b| b.is_ascii_digit()).count();
    }

    fn some_digits(&mut self) -> Result<(), JsonError> {
        let start = self.at;
        self.digits();
        if self.at == start {
            return Err(self.error(ErrorKind::InvalidNumber));
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if !self.text[self.at..].starts_with(word) {
            let ends_early = word.starts_with(&self.text[self.at..]);
            let at = if ends_early { self.text.len() } else { self.at };
            return Err(self.error_at(ErrorKind::InvalidLiteral, at));
        }
        self.at += word.len();
        Ok(())
    }
}

/// How many bytes at the start of `bytes` a string holds as they are: up to the first quote,
/// backslash, control character or byte outside ASCII. Eight bytes at a time, as one word: a
/// byte's high bit is set in a mask below if it is one of those, and the lowest set bit is
/// exact (a borrow can set a bit only above a byte that matched).
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |word: u64| word.wrapping_sub(ONES) & !word;
    let mut chunks = bytes.chunks_exact(8);
    let mut run = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let special = zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word)
            | word;
        let special = special & HIGH;
        if special != 0 {
            return run + special.trailing_zeros() as usize / 8;
        }
        run += 8;
    }
    let rest = chunks.remainder();
    let plain = |b: u8| b != b'"' && b != b'\\' && (0x20..0x80).contains(&b);
    run + rest.iter().take_while(|&&b| plain(b)).count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// The open containers, innermost last, one bit each: the first 64 levels inline, deeper ones
/// on the heap.
#[derive(Debug, Default)]
struct Nesting {
    depth: usize,
    first: u64,
    deeper: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, container: Container) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word > self.deeper.len() {
            self.deeper.push(0);
        }
        let bits = match word {
            0 => &mut self.first,
            _ => &mut self.deeper[word - 1],
        };
        match container {
            Container::Object => *bits |= 1 << bit,
            Container::Array => *bits &= !(1 << bit),
        }
        self.depth += 1;
    }

    fn innermost(&self) -> Option<Container> {
        let level = self.depth.checked_sub(1)?;
        let (word, bit) = (level / 64, level % 64);
        let bits = match word {
            0 => self.first,
            _ => self.deeper[word - 1],
        };
        Some(match bits >> bit & 1 {
            1 => Container::Object,
            _ => Container::Array,
        })
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
