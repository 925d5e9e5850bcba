//! Matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3).

use crate::sip::message::Message;

/// The RFC 3261 branch prefix: a branch starting with it is unique per transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A server transaction's key. An ACK for a non-2xx final response has the INVITE's key; a
/// CANCEL has its own (same branch, method CANCEL).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// RFC 3261: branch, sent-by, method.
    Branch {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// RFC 2543 peers (no magic cookie): Request-URI, tags, Call-ID, CSeq and the top Via.
    Legacy {
        uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        via: String,
        method: String,
    },
}

impl ServerKey {
    /// The key of a request; `None` when the request lacks what matching needs (the parser
    /// already refuses those). `as_method` overrides the method (ACK → INVITE, CANCEL →
    /// INVITE to find the transaction it cancels).
    pub fn of(req: &Message, as_method: Option<&str>) -> Option<ServerKey> {
        let method = as_method.or(req.method())?;
        let method = if method == "ACK" { "INVITE" } else { method }.to_string();
        let via = req.top_via()?;
        match via.branch {
            Some(b) if b.starts_with(MAGIC_COOKIE) => Some(ServerKey::Branch {
                branch: b,
                sent_by: format!(
                    "{}:{}",
                    via.host.to_ascii_lowercase(),
                    via.port.unwrap_or(5060)
                ),
                method,
            }),
            _ => Some(ServerKey::Legacy {
                uri: req.uri()?.to_string(),
                from_tag: req.tag_of_from().unwrap_or_default(),
                call_id: req.call_id()?.to_string(),
                cseq: req.cseq()?.0,
                via: req.via_lines().next()?.to_string(),
                method,
            }),
        }
    }

    /// A printable id, unique while the transaction lives (the protobuf `transaction_id`).
    pub fn id(&self) -> String {
        match self {
            ServerKey::Branch {
                branch,
                sent_by,
                method,
            } => format!("s:{method}:{branch}@{sent_by}"),
            ServerKey::Legacy {
                call_id,
                cseq,
                from_tag,
                method,
                ..
            } => format!("s:{method}:{call_id}:{cseq}:{from_tag}"),
        }
    }
}

/// A client transaction's key: the branch the proxy put in its Via and the CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: String,
}

impl ClientKey {
    /// The key a response matches.
    pub fn of_response(resp: &Message) -> Option<ClientKey> {
        let branch = resp.top_via()?.branch?;
        let (_, method) = resp.cseq()?;
        Some(ClientKey { branch, method })
    }

    pub fn id(&self) -> String {
        format!("c:{}:{}", self.method, self.branch)
    }
}

/// The dialog-level match of an ACK for a 2xx (it has a branch of its own, §17.2.3 does not
/// apply): Call-ID, CSeq number and From tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AckKey {
    pub call_id: String,
    pub cseq: u32,
    pub from_tag: String,
}

impl AckKey {
    pub fn of(m: &Message) -> Option<AckKey> {
        Some(AckKey {
            call_id: m.call_id()?.to_string(),
            cseq: m.cseq()?.0,
            from_tag: m.tag_of_from().unwrap_or_default(),
        })
    }
}
