//! The registrar's decisions (RFC 3261 §10.3, steps 5–8), pure: given a REGISTER, the
//! AOR's stored bindings and the time, what to answer, what to write and which events to
//! publish. The I/O shell (`store.rs`, `main.rs`) reads and commits atomically around it.

use serde::{Deserialize, Serialize};

use crate::headers::{self, parse_address, parse_sip_uri, split_list};

/// Expiry policy (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Below this (and not 0): 423 Interval Too Brief with `Min-Expires`.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// When neither the contact nor the request says.
    pub default_expires: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3_600,
        }
    }
}

/// A stored binding of an AOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact URI as the UA wrote it (returned in the 200 OK).
    pub uri: String,
    pub call_id: String,
    pub cseq: u32,
    /// Unix time (ms) the binding lapses.
    pub expires_at_ms: u64,
    /// The `q` parameter, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

/// What a REGISTER asks for, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Canonical AOR (from To).
    pub aor: String,
    /// The AOR's user part (matched against the authenticated user).
    pub user: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub contacts: Contacts,
    /// The `Expires` header.
    pub expires: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact: a query of the current bindings.
    Fetch,
    /// `Contact: *` (valid only with `Expires: 0`).
    Wildcard,
    List(Vec<ContactIn>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactIn {
    pub key: String,
    pub uri: String,
    pub expires: Option<u32>,
    pub q: Option<String>,
}

/// A request the registrar refuses before looking at bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
}

fn reject(status: u16, reason: &'static str) -> Reject {
    Reject {
        status,
        reason,
        headers: Vec::new(),
    }
}

/// Reads a REGISTER from its headers (name, value pairs as received; names are matched
/// case-insensitively, compact forms are already expanded by the proxy).
pub fn parse_register(hdrs: &[(String, String)]) -> Result<Register, Reject> {
    fn values<'a>(hdrs: &'a [(String, String)], n: &'a str) -> impl Iterator<Item = &'a str> {
        hdrs.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
    let get = |n: &'static str| values(hdrs, n);
    let to = get("To").next().ok_or(reject(400, "Missing To"))?;
    let to = parse_address(to).ok_or(reject(400, "Bad To"))?;
    // Step 5: an AOR this registrar cannot index is not found.
    let to_uri = parse_sip_uri(to.uri).ok_or(reject(404, "Not a SIP address-of-record"))?;
    let call_id = get("Call-ID")
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(reject(400, "Missing Call-ID"))?;
    let cseq = get("CSeq")
        .next()
        .and_then(headers::cseq_number)
        .ok_or(reject(400, "Bad CSeq"))?;
    let expires = match get("Expires").next() {
        None => None,
        Some(v) => Some(headers::delta_seconds(v).ok_or(reject(400, "Bad Expires"))?),
    };
    let items: Vec<&str> = get("Contact").flat_map(split_list).collect();
    let contacts = if items.is_empty() {
        Contacts::Fetch
    } else if items.contains(&"*") {
        // Step 6: `*` alone, with Expires: 0.
        if items.len() != 1 || expires != Some(0) {
            return Err(reject(
                400,
                "Wildcard Contact needs Expires: 0 and no other Contact",
            ));
        }
        Contacts::Wildcard
    } else {
        let mut list: Vec<ContactIn> = Vec::with_capacity(items.len());
        for item in items {
            let a = parse_address(item).ok_or(reject(400, "Bad Contact"))?;
            let uri = parse_sip_uri(a.uri).ok_or(reject(400, "Contact is not a SIP URI"))?;
            let expires = match a.param("expires") {
                None => None,
                Some(v) => Some(
                    v.and_then(headers::delta_seconds)
                        .ok_or(reject(400, "Bad Contact expires"))?,
                ),
            };
            let key = uri.binding_key();
            let c = ContactIn {
                key,
                uri: a.uri.to_string(),
                expires,
                q: a.param("q").flatten().map(str::to_string),
            };
            // The same contact twice: the last one wins.
            list.retain(|o| o.key != c.key);
            list.push(c);
        }
        Contacts::List(list)
    };
    Ok(Register {
        aor: to_uri.aor(),
        user: to_uri.user.clone(),
        call_id: call_id.to_string(),
        cseq,
        contacts,
        expires,
    })
}

/// A change to publish on the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `registered`, `refreshed` or `unregistered`.
    pub kind: &'static str,
    pub aor: String,
    pub contact: String,
    /// Seconds left (0 for `unregistered`).
    pub expires: u32,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(String, String)>,
    /// Bindings to store (key → binding); empty when nothing changes.
    pub put: Vec<(String, Binding)>,
    /// Binding keys to delete (expired ones included).
    pub delete: Vec<String>,
    pub events: Vec<Event>,
}

impl Outcome {
    fn refused(r: Reject) -> Outcome {
        Outcome {
            status: r.status,
            reason: r.reason,
            headers: r.headers,
            put: Vec::new(),
            delete: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn writes(&self) -> bool {
        !self.put.is_empty() || !self.delete.is_empty()
    }
}

/// Steps 6–8 of RFC 3261 §10.3 over `current` (key → binding) at `now_ms`. Every update is
/// all-or-nothing: a refusal writes nothing.
pub fn decide(req: &Register, current: &[(String, Binding)], now_ms: u64, p: &Policy) -> Outcome {
    let mut live: Vec<(String, Binding)> = Vec::with_capacity(current.len());
    let mut delete: Vec<String> = Vec::new();
    for (k, b) in current {
        if b.expires_at_ms > now_ms {
            live.push((k.clone(), b.clone()));
        } else {
            // An expired binding is gone: never listed, deleted on the next write.
            delete.push(k.clone());
        }
    }
    let mut put: Vec<(String, Binding)> = Vec::new();
    let mut events = Vec::new();
    // A binding may be changed only by a newer request of the same registration
    // (same Call-ID and higher CSeq), or by any request of another Call-ID.
    let may_change = |b: &Binding| b.call_id != req.call_id || req.cseq > b.cseq;

    match &req.contacts {
        Contacts::Fetch => {}
        Contacts::Wildcard => {
            for (k, b) in &live {
                if !may_change(b) {
                    return Outcome::refused(reject(500, "CSeq out of order"));
                }
                delete.push(k.clone());
                events.push(Event {
                    kind: "unregistered",
                    aor: req.aor.clone(),
                    contact: b.uri.clone(),
                    expires: 0,
                });
            }
            live.clear();
        }
        Contacts::List(list) => {
            // Step 7: every contact's interval first; one too brief refuses the request.
            let mut asks = Vec::with_capacity(list.len());
            for c in list {
                let e = c.expires.or(req.expires).unwrap_or(p.default_expires);
                if e != 0 && e < p.min_expires {
                    return Outcome::refused(Reject {
                        status: 423,
                        reason: "Interval Too Brief",
                        headers: vec![("Min-Expires".into(), p.min_expires.to_string())],
                    });
                }
                asks.push((c, e.min(p.max_expires)));
            }
            for (c, e) in asks {
                let existing = live.iter().position(|(k, _)| *k == c.key);
                if let Some(i) = existing {
                    if !may_change(&live[i].1) {
                        return Outcome::refused(reject(500, "CSeq out of order"));
                    }
                }
                if e == 0 {
                    if let Some(i) = existing {
                        let (k, b) = live.remove(i);
                        delete.push(k);
                        events.push(Event {
                            kind: "unregistered",
                            aor: req.aor.clone(),
                            contact: b.uri,
                            expires: 0,
                        });
                    }
                    continue;
                }
                let b = Binding {
                    uri: c.uri.clone(),
                    call_id: req.call_id.clone(),
                    cseq: req.cseq,
                    expires_at_ms: now_ms + u64::from(e) * 1000,
                    q: c.q.clone(),
                };
                events.push(Event {
                    kind: if existing.is_some() {
                        "refreshed"
                    } else {
                        "registered"
                    },
                    aor: req.aor.clone(),
                    contact: c.uri.clone(),
                    expires: e,
                });
                match existing {
                    Some(i) => live[i].1 = b.clone(),
                    None => live.push((c.key.clone(), b.clone())),
                }
                delete.retain(|k| *k != c.key);
                put.push((c.key.clone(), b));
            }
        }
    }
    // Step 8: 200 OK listing every current binding with its remaining time.
    let mut headers: Vec<(String, String)> = live
        .iter()
        .map(|(_, b)| {
            let left = b.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
            let q = b.q.as_ref().map(|q| format!(";q={q}")).unwrap_or_default();
            (
                "Contact".to_string(),
                format!("<{}>;expires={left}{q}", b.uri),
            )
        })
        .collect();
    headers.push(("Date".into(), http_date(now_ms)));
    Outcome {
        status: 200,
        reason: "OK",
        headers,
        put,
        delete,
        events,
    }
}

/// RFC 1123 date (SIP's `Date` header) for a Unix time in ms.
pub fn http_date(now_ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn reg(contact: Option<&str>, expires: Option<&str>, call_id: &str, cseq: u32) -> Register {
        let mut v = vec![("To", "<sip:alice@Example.com>"), ("Call-ID", call_id)];
        let cs = format!("{cseq} REGISTER");
        v.push(("CSeq", &cs));
        if let Some(c) = contact {
            v.push(("Contact", c));
        }
        if let Some(e) = expires {
            v.push(("Expires", e));
        }
        parse_register(&h(&v)).expect("valid REGISTER")
    }

    fn apply(store: &mut Vec<(String, Binding)>, o: &Outcome) {
        store.retain(|(k, _)| !o.delete.contains(k) && !o.put.iter().any(|(p, _)| p == k));
        store.extend(o.put.iter().cloned());
    }

    fn contacts(o: &Outcome) -> Vec<&str> {
        o.headers
            .iter()
            .filter(|(n, _)| n == "Contact")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    const P: Policy = Policy {
        min_expires: 60,
        max_expires: 7200,
        default_expires: 3600,
    };

    #[test]
    fn register_refresh_fetch_and_remove() {
        let mut s = Vec::new();
        let o = decide(
            &reg(Some("<sip:alice@10.0.0.1:5060>"), Some("600"), "c1", 1),
            &s,
            0,
            &P,
        );
        assert_eq!(o.status, 200);
        assert_eq!(contacts(&o), ["<sip:alice@10.0.0.1:5060>;expires=600"]);
        assert_eq!(o.events[0].kind, "registered");
        apply(&mut s, &o);

        // A second device of the same AOR (another Call-ID), expires from its parameter.
        let o = decide(
            &reg(
                Some("<sip:alice@10.0.0.2>;expires=120"),
                Some("600"),
                "c2",
                1,
            ),
            &s,
            1000,
            &P,
        );
        assert_eq!(contacts(&o).len(), 2);
        apply(&mut s, &o);

        // Refresh of the first (same Call-ID, higher CSeq): remaining time restarts.
        let o = decide(
            &reg(Some("<sip:alice@10.0.0.1:5060>"), Some("300"), "c1", 2),
            &s,
            2000,
            &P,
        );
        assert_eq!(o.events[0].kind, "refreshed");
        assert!(contacts(&o).contains(&"<sip:alice@10.0.0.1:5060>;expires=300"));
        apply(&mut s, &o);

        // Fetch: no Contact, no change, both listed.
        let o = decide(&reg(None, None, "c9", 1), &s, 3000, &P);
        assert!(!o.writes());
        assert_eq!(contacts(&o).len(), 2);

        // Expires: 0 on one contact removes just it.
        let o = decide(
            &reg(Some("<sip:alice@10.0.0.2>"), Some("0"), "c2", 2),
            &s,
            4000,
            &P,
        );
        assert_eq!(contacts(&o), ["<sip:alice@10.0.0.1:5060>;expires=298"]);
        assert_eq!(o.events[0].kind, "unregistered");
        apply(&mut s, &o);

        // Wildcard removes the rest.
        let o = decide(&reg(Some("*"), Some("0"), "c3", 1), &s, 5000, &P);
        assert_eq!(o.status, 200);
        assert!(contacts(&o).is_empty());
        apply(&mut s, &o);
        assert!(s.is_empty());
    }

    #[test]
    fn expired_bindings_are_gone() {
        let mut s = Vec::new();
        let o = decide(&reg(Some("<sip:a@h>"), Some("60"), "c", 1), &s, 0, &P);
        apply(&mut s, &o);
        let o = decide(&reg(None, None, "x", 1), &s, 60_000, &P);
        assert!(contacts(&o).is_empty(), "lapsed at exactly its expiry");
        assert_eq!(o.delete, vec!["sip:a@h".to_string()]);
    }

    #[test]
    fn brief_intervals_are_refused_with_min_expires_and_long_ones_capped() {
        let o = decide(&reg(Some("<sip:a@h>;expires=30"), None, "c", 1), &[], 0, &P);
        assert_eq!((o.status, o.reason), (423, "Interval Too Brief"));
        assert_eq!(o.headers, vec![("Min-Expires".into(), "60".into())]);
        assert!(!o.writes());
        let o = decide(&reg(Some("<sip:a@h>"), Some("999999"), "c", 1), &[], 0, &P);
        assert_eq!(contacts(&o), ["<sip:a@h>;expires=7200"]);
        let o = decide(&reg(Some("<sip:a@h>"), None, "c", 1), &[], 0, &P);
        assert_eq!(contacts(&o), ["<sip:a@h>;expires=3600"], "default");
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let mut s = Vec::new();
        let o = decide(&reg(Some("<sip:a@h>"), Some("600"), "c", 5), &s, 0, &P);
        apply(&mut s, &o);
        // Same Call-ID, same or lower CSeq: refused, nothing written (a late retransmission
        // of an older REGISTER must not resurrect or shorten a binding).
        for cseq in [5, 4] {
            let o = decide(&reg(Some("<sip:a@h>"), Some("0"), "c", cseq), &s, 1, &P);
            assert_eq!(o.status, 500, "cseq {cseq}");
            assert!(!o.writes());
        }
        let o = decide(&reg(Some("*"), Some("0"), "c", 5), &s, 1, &P);
        assert_eq!(o.status, 500);
        // Another Call-ID may replace it at any CSeq (a rebooted phone).
        let o = decide(&reg(Some("<sip:a@h>"), Some("600"), "other", 1), &s, 1, &P);
        assert_eq!(o.status, 200);
    }

    #[test]
    fn malformed_registers_are_refused() {
        let bad = |pairs: &[(&str, &str)]| parse_register(&h(pairs)).expect_err("refused").status;
        let base = [
            ("To", "<sip:a@h>"),
            ("Call-ID", "c"),
            ("CSeq", "1 REGISTER"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            v
        };
        assert_eq!(
            bad(&with(("Contact", "*"))),
            400,
            "wildcard without Expires: 0"
        );
        assert_eq!(
            bad(&[
                ("Expires", "0"),
                ("Contact", "*, <sip:a@h>"),
                base[0],
                base[1],
                base[2]
            ]),
            400
        );
        assert_eq!(bad(&with(("Contact", "<sip:a@h>;expires=soon"))), 400);
        assert_eq!(bad(&with(("Contact", "<tel:+1>"))), 400);
        assert_eq!(bad(&with(("Expires", "-5"))), 400);
        assert_eq!(bad(&[("To", "<tel:+123>"), base[1], base[2]]), 404);
        assert_eq!(bad(&[base[0], base[2]]), 400);
    }

    #[test]
    fn several_contacts_in_one_header_and_duplicates() {
        let r = reg(
            Some("<sip:a@h1>;expires=100, \"B, x\" <sip:a@h2>;q=0.5, <sip:a@H1>;expires=200"),
            Some("600"),
            "c",
            1,
        );
        let Contacts::List(l) = &r.contacts else {
            panic!("list")
        };
        assert_eq!(
            l.len(),
            2,
            "sip:a@h1 and sip:a@H1 are one binding (host is case-insensitive)"
        );
        let o = decide(&r, &[], 0, &P);
        assert!(contacts(&o).contains(&"<sip:a@h2>;expires=600;q=0.5"));
        assert!(contacts(&o).contains(&"<sip:a@H1>;expires=200"));
    }

    #[test]
    fn dates_are_rfc1123() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_796_601_600_000),
            "Mon, 07 Dec 2026 00:00:00 GMT"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn header() -> impl Strategy<Value = (String, String)> {
        (
            prop::sample::select(vec![
                "To", "Contact", "Expires", "CSeq", "Call-ID", "Require",
            ]),
            ".{0,60}",
        )
            .prop_map(|(n, v)| (n.to_string(), v))
    }

    proptest! {
        /// Whatever the headers, reading a REGISTER answers (an error or a request): no panic.
        #[test]
        fn any_headers_are_answered(hdrs in prop::collection::vec(header(), 0..8)) {
            if let Ok(r) = parse_register(&hdrs) {
                let _ = decide(&r, &[], 0, &Policy::default());
            }
        }

        /// A sequence of REGISTERs on one AOR: the 200 OK always lists exactly the bindings
        /// that are stored afterwards, each unexpired, and a refusal writes nothing.
        #[test]
        fn the_answer_lists_exactly_what_is_stored(
            steps in prop::collection::vec((0u8..4, 0u32..3, 0u32..200, 0u8..3, 0u64..100_000), 1..30)
        ) {
            let mut store: Vec<(String, Binding)> = Vec::new();
            let mut now = 0u64;
            for (contact, call, expires, cseq_step, dt) in steps {
                now += dt;
                let hdrs = vec![
                    ("To".to_string(), "<sip:a@h>".to_string()),
                    ("Call-ID".to_string(), format!("c{call}")),
                    ("CSeq".to_string(), format!("{} REGISTER", cseq_step + 1)),
                    ("Contact".to_string(), format!("<sip:a@10.0.0.{contact}>")),
                    ("Expires".to_string(), expires.to_string()),
                ];
                let r = parse_register(&hdrs).expect("valid");
                let o = decide(&r, &store, now, &Policy { min_expires: 10, max_expires: 150, default_expires: 60 });
                if o.status != 200 {
                    prop_assert!(!o.writes());
                    continue;
                }
                store.retain(|(k, _)| !o.delete.contains(k) && !o.put.iter().any(|(p, _)| p == k));
                store.extend(o.put.iter().cloned());
                let mut listed: Vec<&str> = o.headers.iter().filter(|(n, _)| n == "Contact").map(|(_, v)| v.as_str()).collect();
                let mut live: Vec<String> = store.iter().filter(|(_, b)| b.expires_at_ms > now).map(|(_, b)| b.uri.clone()).collect();
                prop_assert_eq!(listed.len(), live.len());
                listed.sort();
                live.sort();
                for (l, u) in listed.iter().zip(&live) {
                    prop_assert!(l.starts_with(&format!("<{u}>;expires=")), "{} vs {}", l, u);
                }
            }
        }
    }
}
