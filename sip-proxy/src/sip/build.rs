//! Messages the proxy sends: responses to server transactions and requests of client
//! transactions. Copied headers keep their received text; headers a handler gives are
//! checked (a token name, no line breaks) so no handler can inject a header or a message.

use std::fmt::Write as _;

use ezk_sip_types::Name;

use super::message::{reason_phrase, stamp_top_via, Message};

/// A header a handler asked for that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHeader {
    #[error("header name `{0}` is not a SIP token")]
    Name(String),
    #[error("header `{0}` has a line break in its value")]
    Value(String),
}

/// Headers the proxy writes itself; a handler's copy of them is ignored.
fn reserved(name: &str) -> bool {
    ["via", "v", "content-length", "l"]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
}

/// Checks a handler's header.
pub fn check_header(name: &str, value: &str) -> Result<(), BadHeader> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    if !token {
        return Err(BadHeader::Name(name.chars().take(64).collect()));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(BadHeader::Value(name.to_string()));
    }
    Ok(())
}

/// Where a response's source-dependent Via fields come from.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    pub ip: &'a str,
    pub port: u16,
}

/// A response to `req`: Via (top one stamped with `received`/`rport`), From, To (with
/// `to_tag` appended when the request had no tag), Call-ID and CSeq copied; then `extra`
/// headers and the body with its Content-Length.
pub fn response(
    req: &Message,
    source: &Source<'_>,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, BadHeader> {
    let mut head = String::with_capacity(512);
    let reason = if reason.is_empty() {
        reason_phrase(status)
    } else {
        reason
    };
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let _ = write!(head, "SIP/2.0 {status} {reason}\r\n");
    for (i, via) in req.via_lines().enumerate() {
        let stamped = (i == 0)
            .then(|| stamp_top_via(via, source.ip, source.port))
            .flatten();
        let _ = write!(head, "Via: {}\r\n", stamped.as_deref().unwrap_or(via));
    }
    for (name, value) in req.headers() {
        match name {
            "From" | "Call-ID" | "CSeq" => {
                let _ = write!(head, "{name}: {value}\r\n");
            }
            "To" => {
                let _ = write!(head, "To: {value}");
                if let Some(tag) = to_tag.filter(|_| req.tag_of_to().is_none() && status > 100) {
                    let _ = write!(head, ";tag={tag}");
                }
                head.push_str("\r\n");
            }
            _ => {}
        }
    }
    finish(head, extra, body)
}

/// A request: the proxy's own Via first, then the handler's headers, Max-Forwards when absent,
/// then the body with its Content-Length.
pub fn request(
    method: &str,
    uri: &str,
    via: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, BadHeader> {
    check_header(method, "")?;
    if uri.is_empty() || uri.contains([' ', '\r', '\n', '\0']) {
        return Err(BadHeader::Value("Request-URI".into()));
    }
    let mut head = String::with_capacity(512);
    let _ = write!(head, "{method} {uri} SIP/2.0\r\nVia: {via}\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("max-forwards"))
    {
        head.push_str("Max-Forwards: 70\r\n");
    }
    finish(head, headers, body)
}

fn finish(mut head: String, extra: &[(String, String)], body: &[u8]) -> Result<Vec<u8>, BadHeader> {
    for (name, value) in extra {
        check_header(name, value)?;
        if reserved(name) {
            continue;
        }
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    Ok(out)
}

/// The canonical name of a header as the parser writes it (compact forms expanded).
pub fn canonical(name: &str) -> String {
    Name::from(bytesstr::BytesStr::from(name))
        .as_print_str()
        .to_string()
}

/// A fresh RFC 3261 branch (magic cookie and 64 random bits).
pub fn new_branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

/// A fresh tag (To/From) or Call-ID part.
pub fn new_tag() -> String {
    format!("{:012x}", rand::random::<u64>() >> 16)
}
