//! The statsD line protocol (with the DogStatsD extensions routers use).
//!
//! A packet is one UDP datagram holding lines separated by `\n` (a trailing `\n` and `\r\n`
//! endings are fine, blank lines are skipped). [`lines`] yields one `Result` per non-blank
//! line, so a bad line never hides the good lines around it, and an oversized packet yields
//! exactly one [`ParseError::PacketTooLarge`]. Nothing here panics on any input (a seeded
//! fuzz test feeds random bytes and mutated packets).
//!
//! * [`line`] — grammar of one line, value interpretation (rates, gauge deltas).
//! * [`error`] — rejection reasons (counter keys) and messages.
//! * [`stage`] — the pipeline task: packets in, classified events out, rejections counted.

pub mod error;
pub mod line;
pub mod stage;

#[cfg(test)]
mod tests;

pub use error::{ParseError, Reason};
pub use line::{parse_line, Line, MetricType, Value};

/// Largest packet accepted (64 KiB); a longer one is rejected whole.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;
/// Longest line accepted (1 KiB, without its line ending).
pub const MAX_LINE_BYTES: usize = 1024;

/// The lines of `packet`, each parsed. See the module doc.
pub fn lines(packet: &[u8]) -> Lines<'_> {
    if packet.len() > MAX_PACKET_BYTES {
        Lines {
            rest: &[],
            oversized: Some(packet.len()),
        }
    } else {
        Lines {
            rest: packet,
            oversized: None,
        }
    }
}

/// Iterator returned by [`lines`].
pub struct Lines<'a> {
    rest: &'a [u8],
    oversized: Option<usize>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(len) = self.oversized.take() {
            return Some(Err(ParseError::PacketTooLarge {
                len,
                max: MAX_PACKET_BYTES,
            }));
        }
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (raw, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(parse_raw(raw));
        }
    }
}

fn parse_raw(raw: &[u8]) -> Result<Line<'_>, ParseError> {
    if raw.len() > MAX_LINE_BYTES {
        return Err(ParseError::LineTooLong {
            len: raw.len(),
            max: MAX_LINE_BYTES,
        });
    }
    let text = std::str::from_utf8(raw).map_err(|e| ParseError::InvalidUtf8 {
        at: e.valid_up_to(),
    })?;
    parse_line(text)
}
