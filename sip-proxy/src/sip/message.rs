//! SIP messages in and out.
//!
//! Parsing uses ezk-sip-types' building blocks (its line splitter, start-line and header-line
//! parsers, and its typed header parsers); this module adds what the crate leaves to its
//! users: framing by Content-Length, limits, the order of header lines, and the checks that
//! make a request answerable. Every value is a zero-copy slice of the received buffer.
//!
//! The crate's known traps are guarded here (see ARCHITECTURE.md, "SIP parsing"): its header
//! insertion is quadratic in distinct names (a header count limit), its method parser matches
//! prefixes (`REGISTERX` → REGISTER; the raw token is kept and compared), re-printing a typed
//! From/To drops a URI port (From/To are copied raw, a tag is appended as text), and editing a
//! typed Via list drops entries (only the top Via is re-printed, the rest is kept as text).

use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_types::header::typed::{CSeq, FromTo, Via};
use ezk_sip_types::header::HeaderParse;
use ezk_sip_types::msg::{Line, PullParser, RequestLine};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::Name;

/// Why a message was refused; each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    Empty,
    TooLarge,
    NotUtf8,
    StartLine,
    UnsupportedUriScheme,
    HeaderLine,
    TooManyHeaders,
    ContentLength,
    BodyTruncated,
    MissingVia,
    BadVia,
    MissingFrom,
    MissingTo,
    BadFromTo,
    MissingCallId,
    MissingCSeq,
    BadCSeq,
    CSeqMethodMismatch,
}

impl Malformed {
    pub const ALL: [Malformed; 18] = [
        Malformed::Empty,
        Malformed::TooLarge,
        Malformed::NotUtf8,
        Malformed::StartLine,
        Malformed::UnsupportedUriScheme,
        Malformed::HeaderLine,
        Malformed::TooManyHeaders,
        Malformed::ContentLength,
        Malformed::BodyTruncated,
        Malformed::MissingVia,
        Malformed::BadVia,
        Malformed::MissingFrom,
        Malformed::MissingTo,
        Malformed::BadFromTo,
        Malformed::MissingCallId,
        Malformed::MissingCSeq,
        Malformed::BadCSeq,
        Malformed::CSeqMethodMismatch,
    ];

    /// The counter's name (`malformed.<name>` in statsD, a key in `/v1/stats`).
    pub fn name(self) -> &'static str {
        match self {
            Malformed::Empty => "empty",
            Malformed::TooLarge => "too_large",
            Malformed::NotUtf8 => "not_utf8",
            Malformed::StartLine => "start_line",
            Malformed::UnsupportedUriScheme => "unsupported_uri_scheme",
            Malformed::HeaderLine => "header_line",
            Malformed::TooManyHeaders => "too_many_headers",
            Malformed::ContentLength => "content_length",
            Malformed::BodyTruncated => "body_truncated",
            Malformed::MissingVia => "missing_via",
            Malformed::BadVia => "bad_via",
            Malformed::MissingFrom => "missing_from",
            Malformed::MissingTo => "missing_to",
            Malformed::BadFromTo => "bad_from_to",
            Malformed::MissingCallId => "missing_call_id",
            Malformed::MissingCSeq => "missing_cseq",
            Malformed::BadCSeq => "bad_cseq",
            Malformed::CSeqMethodMismatch => "cseq_method_mismatch",
        }
    }

    pub fn index(self) -> usize {
        Malformed::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }

    /// The status of the answer when the message is a request that can be answered.
    pub fn status(self) -> u16 {
        match self {
            Malformed::UnsupportedUriScheme => 416,
            Malformed::TooLarge => 513,
            _ => 400,
        }
    }
}

/// Size limits applied before anything else.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message (head and body) accepted.
    pub max_bytes: usize,
    /// Most header lines accepted in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 65_535,
            max_headers: 128,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Start {
    /// `method` is the token exactly as received (methods are case-sensitive).
    Request {
        method: BytesStr,
        uri: BytesStr,
    },
    Response {
        status: u16,
        reason: BytesStr,
    },
}

/// A parsed message. Header lines keep their order; names are canonical (compact forms
/// expanded, case normalised for known names).
#[derive(Clone, Debug)]
pub struct Message {
    pub start: Start,
    headers: Vec<(Name, BytesStr)>,
    pub body: Bytes,
}

/// What a stream buffer holds at its start.
#[derive(Debug)]
pub enum Framed {
    /// A whole message and the bytes it took (CRLF keep-alives before it included).
    Message(Box<Message>, usize),
    /// Only keep-alive CRLFs: consume them.
    KeepAlive(usize),
    /// Not a whole message yet: read more.
    Incomplete,
}

/// A refused message, with what is known of it to answer (a request whose Via, From, To,
/// Call-ID and CSeq could be read can still get a 400).
#[derive(Debug)]
pub struct Refused {
    pub reason: Malformed,
    pub partial: Option<Box<Message>>,
}

impl Refused {
    fn bare(reason: Malformed) -> Refused {
        Refused {
            reason,
            partial: None,
        }
    }
}

/// Parses one datagram: one whole message, the body ends at Content-Length (or the datagram).
pub fn parse_datagram(buf: Bytes, limits: Limits) -> Result<Message, Refused> {
    if buf.len() > limits.max_bytes {
        return Err(Refused::bare(Malformed::TooLarge));
    }
    match parse_head(&buf, limits, false)? {
        Framed::Message(m, _) => Ok(*m),
        Framed::KeepAlive(_) | Framed::Incomplete => Err(Refused::bare(Malformed::Empty)),
    }
}

/// Frames the start of a stream buffer (TCP): a message needs its whole Content-Length body.
pub fn parse_stream(buf: &Bytes, limits: Limits) -> Result<Framed, Refused> {
    parse_head(buf, limits, true)
}

fn parse_head(buf: &Bytes, limits: Limits, stream: bool) -> Result<Framed, Refused> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if skip == buf.len() {
        return if stream {
            Ok(Framed::KeepAlive(skip))
        } else {
            Err(Refused::bare(Malformed::Empty))
        };
    }
    let src = buf.slice(skip..);
    let mut lines = PullParser::new(&src, 0);
    let incomplete = |len: usize| {
        if !stream {
            Err(Refused::bare(Malformed::HeaderLine))
        } else if len > limits.max_bytes {
            Err(Refused::bare(Malformed::TooLarge))
        } else {
            Ok(Framed::Incomplete)
        }
    };
    let first = match lines.next() {
        None => return Err(Refused::bare(Malformed::Empty)),
        Some(Err(_)) => return incomplete(src.len()),
        Some(Ok(l)) => l,
    };
    let first = std::str::from_utf8(first).map_err(|_| Refused::bare(Malformed::NotUtf8))?;
    // A request line that is fine but for its URI scheme is refused once the headers are read,
    // so that it can be answered (416).
    let (start, deferred) = match parse_start(&src, first) {
        Ok(s) => (s, None),
        Err(r) if r.reason == Malformed::UnsupportedUriScheme => {
            let mut parts = first.split(' ');
            let (Some(method), Some(uri)) = (parts.next(), parts.next()) else {
                return Err(r);
            };
            let start = Start::Request {
                method: BytesStr::from_parse(&src, method),
                uri: BytesStr::from_parse(&src, uri),
            };
            (start, Some(r.reason))
        }
        Err(r) => return Err(r),
    };
    let mut headers = Vec::with_capacity(16);
    for line in &mut lines {
        let line = match line {
            Ok(l) => l,
            Err(_) => return incomplete(src.len()),
        };
        if headers.len() >= limits.max_headers {
            return Err(Refused::bare(Malformed::TooManyHeaders));
        }
        let text = std::str::from_utf8(line).map_err(|_| Refused::bare(Malformed::NotUtf8))?;
        // RFC 3261 §25.1: a header value is TEXT-UTF8 and LWS, no control character but the
        // tab (and the CRLF of a folded line). A value with one could not be copied faithfully
        // into an answer (the typed parsers trim some of them and not others).
        if text.bytes().any(is_forbidden_control) {
            return Err(Refused::bare(Malformed::HeaderLine));
        }
        match Line::parse(&src, text) {
            Ok((_, Line { name, value })) if !name.as_print_str().is_empty() => {
                headers.push((name, value))
            }
            _ => return Err(Refused::bare(Malformed::HeaderLine)),
        }
    }
    let head_end = lines.head_end();
    let mut msg = Message {
        start,
        headers,
        body: Bytes::new(),
    };
    let available = src.len() - head_end;
    let declared = match msg.header(&Name::CONTENT_LENGTH) {
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => return Err(msg.refuse(Malformed::ContentLength)),
        },
        None => None,
    };
    let body_len = match (declared, stream) {
        (Some(n), _) if n <= available => n,
        (Some(n), true) => {
            return if head_end + n > limits.max_bytes {
                Err(msg.refuse(Malformed::TooLarge))
            } else {
                Ok(Framed::Incomplete)
            };
        }
        (Some(_), false) => return Err(msg.refuse(Malformed::BodyTruncated)),
        (None, true) => 0,
        (None, false) => available,
    };
    if head_end + body_len > limits.max_bytes {
        return Err(msg.refuse(Malformed::TooLarge));
    }
    msg.body = src.slice(head_end..head_end + body_len);
    msg.check()?;
    if let Some(reason) = deferred {
        return Err(msg.refuse(reason));
    }
    Ok(Framed::Message(Box::new(msg), skip + head_end + body_len))
}

fn parse_start(src: &Bytes, line: &str) -> Result<Start, Refused> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = match code.parse::<u16>() {
            Ok(s) if (100..=699).contains(&s) && code.len() == 3 => s,
            _ => return Err(Refused::bare(Malformed::StartLine)),
        };
        return Ok(Start::Response {
            status,
            reason: BytesStr::from_parse(src, reason.trim()),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::bare(Malformed::StartLine));
    };
    let token_ok = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    if !token_ok || version != "SIP/2.0" || uri.is_empty() {
        return Err(Refused::bare(Malformed::StartLine));
    }
    match RequestLine::parse(src)(line) {
        // The crate's method parser matches a known method's prefix: the raw token decides.
        Ok((rest, _)) if rest.trim().is_empty() => Ok(Start::Request {
            method: BytesStr::from_parse(src, method),
            uri: BytesStr::from_parse(src, uri),
        }),
        _ => {
            let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
            if matches!(scheme.as_deref(), Some(s) if s != "sip" && s != "sips" && !s.is_empty()) {
                // A request line that is fine but for its URI scheme (tel:, urn:, ...).
                Err(Refused::bare(Malformed::UnsupportedUriScheme))
            } else {
                Err(Refused::bare(Malformed::StartLine))
            }
        }
    }
}

fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f
}

/// Parses one header value with the crate's typed parser; `None` unless it all parses.
fn typed<T: HeaderParse>(value: &BytesStr) -> Option<T> {
    match T::parse(value.as_ref(), value.as_str()) {
        Ok((rest, v)) if rest.trim().is_empty() => Some(v),
        _ => None,
    }
}

/// The top entry of a Via value (which may be a comma list) and the text after it.
fn top_via_of(value: &BytesStr) -> Option<(Via, &str)> {
    match Via::parse(value.as_ref(), value.as_str()) {
        Ok((rest, v)) => {
            let rest_trim = rest.trim_start();
            (rest_trim.is_empty() || rest_trim.starts_with(',')).then_some((v, rest))
        }
        Err(_) => None,
    }
}

/// The sent-by of a Via, its parameters as the transaction and response layers use them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopVia {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub received: Option<String>,
    /// `Some(None)`: `rport` without a value (RFC 3581 asks for the source port).
    pub rport: Option<Option<u16>>,
}

impl Message {
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method.as_str()),
            Start::Response { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            Start::Request { uri, .. } => Some(uri.as_str()),
            Start::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Start::Response { status, .. } => Some(*status),
            Start::Request { .. } => None,
        }
    }

    /// Header lines in order, names canonical.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_print_str(), v.as_str()))
    }

    /// The first value of a header.
    pub fn header(&self, name: &Name) -> Option<&str> {
        self.first(name).map(|v| v.as_str())
    }

    /// Every line of a header, in order.
    pub fn values<'a>(&'a self, name: &'a Name) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn first(&self, name: &Name) -> Option<&BytesStr> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header(&Name::CALL_ID).map(str::trim)
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let raw = self.first(&Name::CSEQ)?;
        let c: CSeq = typed(raw)?;
        // The crate's method parser matches prefixes: keep the raw token.
        let token = raw.split_whitespace().nth(1)?;
        (c.method.to_string() == token || !is_known_method(token))
            .then(|| (c.cseq, token.to_string()))
    }

    pub fn tag_of_from(&self) -> Option<String> {
        self.addr_header(&Name::FROM)?.tag.map(|t| t.to_string())
    }

    pub fn tag_of_to(&self) -> Option<String> {
        self.addr_header(&Name::TO)?.tag.map(|t| t.to_string())
    }

    pub fn addr_header(&self, name: &Name) -> Option<FromTo> {
        typed(self.first(name)?)
    }

    pub fn top_via(&self) -> Option<TopVia> {
        let (via, _) = top_via_of(self.first(&Name::VIA)?)?;
        let host = via.sent_by.host.to_string();
        Some(TopVia {
            transport: via.transport.to_string(),
            host,
            port: via.sent_by.port,
            branch: via.params.get_val("branch").map(|b| b.to_string()),
            received: via.params.get_val("received").map(|b| b.to_string()),
            rport: via
                .params
                .get("rport")
                .map(|p| p.value.as_ref().and_then(|v| v.parse::<u16>().ok())),
        })
    }

    /// The raw Via lines, in order.
    pub fn via_lines(&self) -> impl Iterator<Item = &str> + '_ {
        self.values(&Name::VIA)
    }

    /// What makes a request answerable, and a response matchable: RFC 3261 §8.1.1.
    fn check(&self) -> Result<(), Refused> {
        let Some(via) = self.first(&Name::VIA) else {
            return Err(self.refuse(Malformed::MissingVia));
        };
        if top_via_of(via).is_none() {
            return Err(self.refuse(Malformed::BadVia));
        }
        for (name, missing) in [
            (Name::FROM, Malformed::MissingFrom),
            (Name::TO, Malformed::MissingTo),
        ] {
            let Some(v) = self.first(&name) else {
                return Err(self.refuse(missing));
            };
            if typed::<FromTo>(v).is_none() {
                return Err(self.refuse(Malformed::BadFromTo));
            }
        }
        if self.call_id().is_none_or(str::is_empty) {
            return Err(self.refuse(Malformed::MissingCallId));
        }
        if self.first(&Name::CSEQ).is_none() {
            return Err(self.refuse(Malformed::MissingCSeq));
        }
        let Some((_, cseq_method)) = self.cseq() else {
            return Err(self.refuse(Malformed::BadCSeq));
        };
        if let Some(m) = self.method() {
            if m != cseq_method {
                return Err(self.refuse(Malformed::CSeqMethodMismatch));
            }
        }
        Ok(())
    }

    /// A refusal that keeps the message when it is a request with what a 400 needs.
    fn refuse(&self, reason: Malformed) -> Refused {
        let answerable = self.is_request()
            && self
                .first(&Name::VIA)
                .is_some_and(|v| top_via_of(v).is_some())
            && [Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ]
                .iter()
                .all(|n| self.first(n).is_some());
        Refused {
            reason,
            partial: answerable.then(|| Box::new(self.clone())),
        }
    }
}

fn is_known_method(m: &str) -> bool {
    matches!(
        m,
        "INVITE"
            | "ACK"
            | "CANCEL"
            | "BYE"
            | "REGISTER"
            | "OPTIONS"
            | "INFO"
            | "MESSAGE"
            | "NOTIFY"
            | "PRACK"
            | "PUBLISH"
            | "REFER"
            | "SUBSCRIBE"
            | "UPDATE"
    )
}

/// Where a response to this request goes, and the top Via as the response carries it
/// (RFC 3261 §18.2.1 `received`, RFC 3581 `rport`).
pub fn stamp_top_via(value: &str, source_ip: &str, source_port: u16) -> Option<String> {
    let value = BytesStr::from(value);
    let (mut via, rest) = top_via_of(&value)?;
    let host = via.sent_by.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host != source_ip {
        via.params.push_or_edit("received", source_ip.to_string());
    }
    if let Some(p) = via.params.get_mut("rport") {
        p.value = Some(source_port.to_string().into());
    }
    use ezk_sip_types::print::AppendCtx;
    Some(format!("{}{}", via.default_print_ctx(), rest))
}

/// The reason phrase RFC 3261 gives a status code ("" when it names none).
pub fn reason_phrase(status: u16) -> &'static str {
    ezk_sip_types::StatusCode::from(status)
        .text()
        .unwrap_or(match status {
            100..=199 => "Session Progress",
            200..=299 => "OK",
            300..=399 => "Redirect",
            400..=499 => "Client Error",
            500..=599 => "Server Error",
            _ => "Global Failure",
        })
}
