//! One statsD line: `name:value[:value…]|type[|@rate][|#tag[:v],…][|c:container][|Tts]`.
//!
//! [`parse_line`] validates the whole line up front — every value, the rate, every section —
//! so a [`Line`] that exists is fully usable: iterating its values cannot fail. A `Line`
//! borrows the input; nothing is allocated on the success path.

use super::error::{ParseError, Snippet};

/// The statsD metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `c`: added up per window; with `@rate` each value counts as value / rate.
    Counter,
    /// `g`: a level; `+N` / `-N` change the current level, a plain value sets it.
    Gauge,
    /// `ms`: a duration sample.
    Timer,
    /// `h`: treated like a timer.
    Histogram,
    /// `s`: distinct members per window; the value is any text.
    Set,
    /// `d` (DogStatsD distribution): treated like a timer.
    Distribution,
}

impl MetricType {
    fn from_token(t: &str) -> Option<MetricType> {
        Some(match t {
            "c" => MetricType::Counter,
            "g" => MetricType::Gauge,
            "ms" => MetricType::Timer,
            "h" => MetricType::Histogram,
            "s" => MetricType::Set,
            "d" => MetricType::Distribution,
            _ => return None,
        })
    }

    /// True for the sample types (`ms`, `h`, `d`), which all feed percentiles.
    pub fn is_sample(self) -> bool {
        matches!(
            self,
            MetricType::Timer | MetricType::Histogram | MetricType::Distribution
        )
    }
}

/// One value of a line, already interpreted for its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Counter increment, already scaled by 1 / sample rate.
    Count(f64),
    /// Gauge set to this level.
    GaugeSet(f64),
    /// Gauge changed by this amount (`+N` / `-N`).
    GaugeDelta(f64),
    /// A timer / histogram / distribution sample.
    Sample(f64),
    /// A set member.
    Member(&'a str),
}

/// A valid statsD line (borrowing the packet).
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// The metric name (non-empty; no whitespace, control characters or `|`).
    pub name: &'a str,
    pub kind: MetricType,
    /// Sample rate in (0, 1]; 1 when absent.
    pub rate: f64,
    /// The raw `:`-separated values (validated).
    raw_values: &'a str,
    /// The raw tag list after `#` (may be empty).
    raw_tags: &'a str,
}

impl<'a> Line<'a> {
    /// The values (DogStatsD allows several: `name:1:2:3|ms`), interpreted for the type.
    pub fn values(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        self.raw_values
            .split(':')
            .filter_map(move |v| interpret(v, self.kind, self.rate).ok())
    }

    /// The DogStatsD tags as `(key, value)`; a bare tag has no value.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.raw_tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_once(':') {
                Some((k, v)) => (k, Some(v)),
                None => (t, None),
            })
    }

    /// The value of the first tag named `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).and_then(|(_, v)| v)
    }
}

/// Parses one line (without its `\n`). See the module doc for the grammar.
pub fn parse_line(s: &str) -> Result<Line<'_>, ParseError> {
    let Some((name, rest)) = s.split_once(':') else {
        return Err(ParseError::MissingColon(Snippet::new(s)));
    };
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '|')
    {
        return Err(ParseError::InvalidName(Snippet::new(name)));
    }
    let mut sections = rest.split('|');
    let raw_values = sections.next().unwrap_or("");
    let Some(type_token) = sections.next() else {
        return Err(ParseError::MissingPipe(Snippet::new(s)));
    };
    let kind = MetricType::from_token(type_token)
        .ok_or_else(|| ParseError::UnknownType(Snippet::new(type_token)))?;

    let mut rate = None;
    let mut raw_tags = None;
    let mut container = false;
    let mut timestamp = false;
    for section in sections {
        if let Some(r) = section.strip_prefix('@') {
            if rate.is_some() {
                return Err(ParseError::InvalidSection(Snippet::new(section)));
            }
            rate = Some(parse_rate(r)?);
        } else if let Some(t) = section.strip_prefix('#') {
            if raw_tags.is_some() {
                return Err(ParseError::InvalidSection(Snippet::new(section)));
            }
            raw_tags = Some(t);
        } else if section.starts_with("c:") && !container {
            // DogStatsD container id: accepted and ignored.
            container = true;
        } else if section.len() > 1
            && section.starts_with('T')
            && section[1..].bytes().all(|b| b.is_ascii_digit())
            && !timestamp
        {
            // DogStatsD client timestamp: accepted and ignored (windows use arrival time).
            timestamp = true;
        } else {
            return Err(ParseError::InvalidSection(Snippet::new(section)));
        }
    }
    let rate = rate.unwrap_or(1.0);
    for v in raw_values.split(':') {
        interpret(v, kind, rate)?;
    }
    Ok(Line {
        name,
        kind,
        rate,
        raw_values,
        raw_tags: raw_tags.unwrap_or(""),
    })
}

fn parse_rate(r: &str) -> Result<f64, ParseError> {
    match parse_number(r) {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(ParseError::InvalidRate(Snippet::new(r))),
    }
}

/// A finite decimal number without a sign (the caller handles signs).
fn parse_number(v: &str) -> Result<f64, ParseError> {
    // f64::from_str also takes "inf", "NaN" and a leading sign; the first two are reported
    // as non-finite, a second sign as not a number.
    if v.starts_with(['+', '-']) {
        return Err(ParseError::InvalidValue(Snippet::new(v)));
    }
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(ParseError::NonFiniteValue(Snippet::new(v))),
        Err(_) => Err(ParseError::InvalidValue(Snippet::new(v))),
    }
}

/// A signed finite number: `-` negates, `+` is allowed.
fn parse_signed(v: &str) -> Result<f64, ParseError> {
    let bad_number = |e: ParseError| match e {
        ParseError::NonFiniteValue(_) => ParseError::NonFiniteValue(Snippet::new(v)),
        _ => ParseError::InvalidValue(Snippet::new(v)),
    };
    if let Some(rest) = v.strip_prefix('-') {
        parse_number(rest).map(|x| -x).map_err(bad_number)
    } else if let Some(rest) = v.strip_prefix('+') {
        parse_number(rest).map_err(bad_number)
    } else {
        parse_number(v)
    }
}

fn interpret(v: &str, kind: MetricType, rate: f64) -> Result<Value<'_>, ParseError> {
    if v.is_empty() {
        return Err(ParseError::InvalidValue(Snippet::new(v)));
    }
    Ok(match kind {
        MetricType::Counter => {
            let x = parse_signed(v)? / rate;
            if !x.is_finite() {
                return Err(ParseError::NonFiniteValue(Snippet::new(v)));
            }
            Value::Count(x)
        }
        MetricType::Gauge => {
            if v.starts_with(['+', '-']) {
                Value::GaugeDelta(parse_signed(v)?)
            } else {
                Value::GaugeSet(parse_number(v)?)
            }
        }
        MetricType::Timer | MetricType::Histogram | MetricType::Distribution => {
            Value::Sample(parse_signed(v)?)
        }
        MetricType::Set => Value::Member(v),
    })
}
