//! Why a packet or a line was rejected.
//!
//! Every rejection carries a [`Reason`] (a small closed set, used as a counter key in
//! `/v1/stats` and in Redis) and a message naming what was wrong (for rate-limited debug
//! logs). Error values never hold more than [`SNIPPET_CHARS`] characters of the input.

use std::fmt;

/// Longest piece of the offending input an error quotes.
pub const SNIPPET_CHARS: usize = 32;

/// The counter a rejected line (or packet) is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The datagram is longer than [`super::MAX_PACKET_BYTES`]; none of it is read.
    PacketTooLarge,
    /// The line is longer than [`super::MAX_LINE_BYTES`].
    LineTooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// No `:` between the name and the value.
    MissingColon,
    /// No `|` between the value and the type.
    MissingPipe,
    /// Nothing before the `:`.
    EmptyName,
    /// The name holds whitespace, a control character or `|`.
    InvalidName,
    /// The type is not one of `c`, `g`, `ms`, `h`, `s`, `d`.
    UnknownType,
    /// A value is empty or not a number (sets excepted).
    InvalidValue,
    /// A value is NaN or infinite.
    NonFiniteValue,
    /// The sample rate is not a number in (0, 1].
    InvalidRate,
    /// A `|` section that is neither `@rate`, `#tags`, `c:container` nor `Ttimestamp`, or
    /// one of those given twice.
    InvalidSection,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 12] = [
        Reason::PacketTooLarge,
        Reason::LineTooLong,
        Reason::InvalidUtf8,
        Reason::MissingColon,
        Reason::MissingPipe,
        Reason::EmptyName,
        Reason::InvalidName,
        Reason::UnknownType,
        Reason::InvalidValue,
        Reason::NonFiniteValue,
        Reason::InvalidRate,
        Reason::InvalidSection,
    ];

    /// Number of reasons (size of a counter array indexed by [`Reason::index`]).
    pub const COUNT: usize = Reason::ALL.len();

    /// Stable snake_case key used in `/v1/stats` and the Redis stats hash.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PacketTooLarge => "packet_too_large",
            Reason::LineTooLong => "line_too_long",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MissingColon => "missing_colon",
            Reason::MissingPipe => "missing_pipe",
            Reason::EmptyName => "empty_name",
            Reason::InvalidName => "invalid_name",
            Reason::UnknownType => "unknown_type",
            Reason::InvalidValue => "invalid_value",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::InvalidRate => "invalid_rate",
            Reason::InvalidSection => "invalid_section",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quoted piece of input, cut to [`SNIPPET_CHARS`] characters (with `…` when cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet(String);

impl Snippet {
    pub fn new(s: &str) -> Snippet {
        let mut out: String = s.chars().take(SNIPPET_CHARS).collect();
        if s.chars().nth(SNIPPET_CHARS).is_some() {
            out.push('…');
        }
        Snippet(out)
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A rejected packet or line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet of {len} bytes is over the {max}-byte limit")]
    PacketTooLarge { len: usize, max: usize },
    #[error("line of {len} bytes is over the {max}-byte limit")]
    LineTooLong { len: usize, max: usize },
    #[error("line is not valid UTF-8 (bad byte at offset {at})")]
    InvalidUtf8 { at: usize },
    #[error("no `:` between name and value in {0}")]
    MissingColon(Snippet),
    #[error("no `|type` after the value in {0}")]
    MissingPipe(Snippet),
    #[error("empty metric name")]
    EmptyName,
    #[error("metric name {0} holds whitespace, a control character or `|`")]
    InvalidName(Snippet),
    #[error("unknown metric type {0} (expected c, g, ms, h, s or d)")]
    UnknownType(Snippet),
    #[error("value {0} is not a number")]
    InvalidValue(Snippet),
    #[error("value {0} is not finite")]
    NonFiniteValue(Snippet),
    #[error("sample rate {0} is not a number in (0, 1]")]
    InvalidRate(Snippet),
    #[error("unexpected section {0}")]
    InvalidSection(Snippet),
}

impl ParseError {
    /// The counter this error is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            ParseError::PacketTooLarge { .. } => Reason::PacketTooLarge,
            ParseError::LineTooLong { .. } => Reason::LineTooLong,
            ParseError::InvalidUtf8 { .. } => Reason::InvalidUtf8,
            ParseError::MissingColon(_) => Reason::MissingColon,
            ParseError::MissingPipe(_) => Reason::MissingPipe,
            ParseError::EmptyName => Reason::EmptyName,
            ParseError::InvalidName(_) => Reason::InvalidName,
            ParseError::UnknownType(_) => Reason::UnknownType,
            ParseError::InvalidValue(_) => Reason::InvalidValue,
            ParseError::NonFiniteValue(_) => Reason::NonFiniteValue,
            ParseError::InvalidRate(_) => Reason::InvalidRate,
            ParseError::InvalidSection(_) => Reason::InvalidSection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_named_uniquely() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::COUNT);
    }

    #[test]
    fn snippets_are_cut_on_char_boundaries() {
        let long = "é".repeat(100);
        let s = Snippet::new(&long).to_string();
        assert_eq!(s.chars().filter(|&c| c == 'é').count(), SNIPPET_CHARS);
        assert!(s.contains('…'));
        assert_eq!(Snippet::new("abc").to_string(), "\"abc\"");
    }
}
