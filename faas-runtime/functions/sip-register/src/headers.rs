//! The few SIP header values a registrar reads — Contact, To, Expires, CSeq, Authorization
//! and Require — parsed from the text the sip-proxy forwards (it has already framed and
//! validated the message with a SIP parsing crate). Pure functions; nothing here panics on
//! any input.

/// The characters of `s` outside quoted strings (RFC 3261 `quoted-string`, with `\`
/// escapes), with their byte offsets.
fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    s.char_indices().filter(move |&(_, c)| {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            false
        } else if c == '"' {
            quoted = true;
            false
        } else {
            true
        }
    })
}

/// Splits a header value on the commas that separate list items: commas inside a quoted
/// string or inside `<...>` do not count. Items are trimmed; empty items are dropped.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut angle = false;
    let mut start = 0;
    for (i, c) in unquoted(value) {
        match c {
            '<' => angle = true,
            '>' => angle = false,
            ',' if !angle => {
                push_trimmed(&mut out, &value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_trimmed(&mut out, &value[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// One `name-addr` or `addr-spec` with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address<'a> {
    /// The URI (inside `<>` when the value had them).
    pub uri: &'a str,
    /// `;name[=value]` header parameters after the URI, names lowercased.
    pub params: Vec<(String, Option<String>)>,
}

impl Address<'_> {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }
}

/// Parses `"Display" <uri>;p=v`, `Display <uri>;p`, `<uri>` or `uri;p=v` (RFC 3261 §20.10:
/// in the last form the parameters belong to the header, not the URI).
pub fn parse_address(item: &str) -> Option<Address<'_>> {
    let item = item.trim();
    let (uri, rest) = if let Some(lt) = find_unquoted(item, '<') {
        let after = &item[lt + 1..];
        let gt = after.find('>')?;
        (after[..gt].trim(), &after[gt + 1..])
    } else {
        if item.contains(['"', '>']) {
            return None;
        }
        match item.find(';') {
            Some(i) => (item[..i].trim(), &item[i..]),
            None => (item, ""),
        }
    };
    if uri.is_empty() || uri.contains(char::is_whitespace) || !uri.contains(':') {
        return None;
    }
    Some(Address {
        uri,
        params: parse_params(rest)?,
    })
}

fn find_unquoted(s: &str, target: char) -> Option<usize> {
    unquoted(s).find(|&(_, c)| c == target).map(|(i, _)| i)
}

/// `;a=1;b;c="x"` → [(a, 1), (b, None), (c, x)]. `None` when the text is not a parameter
/// list.
fn parse_params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    let s = s.strip_prefix(';')?;
    let mut out = Vec::new();
    for p in s.split(';') {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        match p.split_once('=') {
            Some((n, v)) => {
                let n = n.trim();
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                if n.is_empty() {
                    return None;
                }
                out.push((n.to_ascii_lowercase(), Some(v.to_string())));
            }
            None => out.push((p.to_ascii_lowercase(), None)),
        }
    }
    Some(out)
}

/// The parts of a SIP URI that identify it: `sip[s]:user@host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<String>,
}

/// Parses a `sip:`/`sips:` URI (headers `?...` and parameters other than `transport` are
/// kept out). Escaped characters in the user part are unescaped.
pub fn parse_sip_uri(uri: &str) -> Option<SipUri> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    let rest = rest.split('?').next().unwrap_or("");
    let mut parts = rest.split(';');
    let hostport_user = parts.next().unwrap_or("");
    let transport = parts
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.eq_ignore_ascii_case("transport"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let (user, hostport) = match hostport_user.rsplit_once('@') {
        Some((u, h)) => {
            let u = u.split(':').next().unwrap_or(""); // drop a password
            (Some(unescape(u)?), h)
        }
        None => (None, hostport_user),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() || user.as_deref() == Some("") {
        return None;
    }
    Some(SipUri {
        scheme,
        user,
        host: host.to_ascii_lowercase(),
        port,
        transport,
    })
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let end = v6.find(']')?;
        let host = &s[..end + 2];
        let rest = &v6[end + 1..];
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl SipUri {
    /// RFC 3261 §10.3 step 5: the address-of-record in canonical form — scheme, user and
    /// host (lowercase), the port when given; no parameters.
    pub fn aor(&self) -> String {
        let mut s = format!("{}:", self.scheme);
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// What makes two Contact URIs the same binding (RFC 3261 §19.1.4, the parts that
    /// matter for a registrar): the AOR form plus the transport parameter.
    pub fn binding_key(&self) -> String {
        match &self.transport {
            Some(t) => format!("{};transport={t}", self.aor()),
            None => self.aor(),
        }
    }
}

/// A delta-seconds value (`Expires`, `expires=`): digits only; values beyond u32 saturate
/// (RFC 3261 §25: "delta-seconds = 1*DIGIT").
pub fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32),
    )
}

/// `CSeq: 42 REGISTER` → 42.
pub fn cseq_number(value: &str) -> Option<u32> {
    value.split_whitespace().next()?.parse().ok()
}

/// The parameters of `Authorization: Digest k=v, k="v", ...` (names lowercased).
pub fn digest_params(value: &str) -> Option<Vec<(String, String)>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut out = Vec::new();
    for item in split_list(rest) {
        let (n, v) = item.split_once('=')?;
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q
                .strip_suffix('"')?
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            None => v.to_string(),
        };
        out.push((n.trim().to_ascii_lowercase(), v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""Doe, J" <sip:a@h;x=1,2>;expires=60, <sip:b@h> ,sip:c@h"#),
            vec![
                r#""Doe, J" <sip:a@h;x=1,2>;expires=60"#,
                "<sip:b@h>",
                "sip:c@h"
            ]
        );
        assert_eq!(split_list(" , "), Vec::<&str>::new());
    }

    #[test]
    fn addresses_in_every_form() {
        let a =
            parse_address(r#""A <b>" <sip:alice@Example.com:5070;transport=TCP>;expires=30;q=0.5"#)
                .expect("name-addr");
        assert_eq!(a.uri, "sip:alice@Example.com:5070;transport=TCP");
        assert_eq!(a.param("expires"), Some(Some("30")));
        assert_eq!(a.param("q"), Some(Some("0.5")));
        let b = parse_address("sip:bob@h;expires=0").expect("addr-spec");
        assert_eq!(b.uri, "sip:bob@h");
        assert_eq!(b.param("expires"), Some(Some("0")));
        assert!(parse_address("<sip:x@h").is_none());
        assert!(parse_address("nonsense").is_none());
        assert!(parse_address("<sip:a@h>;;").is_none());
    }

    #[test]
    fn uris_canonicalise_for_aor_and_binding() {
        let u =
            parse_sip_uri("SIP:Alice%20B:pw@EXAMPLE.com:5070;transport=TCP;lr?h=1").expect("uri");
        assert_eq!(u.aor(), "sip:Alice B@example.com:5070");
        assert_eq!(
            u.binding_key(),
            "sip:Alice B@example.com:5070;transport=tcp"
        );
        let v6 = parse_sip_uri("sip:a@[::1]:5060").expect("v6");
        assert_eq!(v6.host, "[::1]");
        assert_eq!(v6.port, Some(5060));
        assert!(parse_sip_uri("tel:+123").is_none());
        assert!(parse_sip_uri("sip:a@h:notaport").is_none());
        assert!(parse_sip_uri("sip:@h").is_none());
    }

    #[test]
    fn numbers_and_digest() {
        assert_eq!(delta_seconds("3600"), Some(3600));
        assert_eq!(delta_seconds("99999999999"), Some(u32::MAX));
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(cseq_number("7 REGISTER"), Some(7));
        let p = digest_params(r#"Digest username="alice", realm="r", nonce="n,1", uri="sip:h", response="ab", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c""#).expect("digest");
        assert!(p.contains(&("nonce".into(), "n,1".into())));
        assert!(p.contains(&("algorithm".into(), "SHA-256".into())));
        assert!(digest_params("Basic abc").is_none());
    }

    #[test]
    fn nothing_panics_on_odd_input() {
        for s in [
            "",
            "<",
            ">",
            "\"",
            "<>",
            "sip:",
            "sip:@",
            "sip:a@[",
            "sip:a@[::1",
            ";",
            "a=\"",
            "%",
            "sip:%zz@h",
        ] {
            let _ = split_list(s);
            let _ = parse_address(s);
            let _ = parse_sip_uri(s);
            let _ = digest_params(s);
            let _ = delta_seconds(s);
        }
    }
}
