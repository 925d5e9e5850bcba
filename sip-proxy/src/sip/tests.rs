//! Parser, framer and builder tests, and property tests that throw random and mutated input
//! at them: nothing may panic, and whatever parses must print back to something that parses.

use bytes::Bytes;
use ezk_sip_types::Name;
use proptest::prelude::*;

use super::build::{self, Source};
use super::message::{parse_datagram, parse_stream, Framed, Limits, Malformed};

const REGISTER: &str = "REGISTER sip:example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.org>;tag=a1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: c1@127.0.0.1\r\n\
CSeq: 7 REGISTER\r\n\
Contact: <sip:alice@127.0.0.1:5070>;expires=600, <sip:alice@10.0.0.1:5070>\r\n\
Contact: <sip:alice@192.168.0.1>\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

const INVITE_COMPACT: &str = "INVITE sip:group1@example.org SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-2\r\n\
f: \"Bob\" <sip:bob@example.org:5071>;tag=b1\r\n\
t: <sip:group1@example.org>\r\n\
i: c2\r\n\
CSeq: 1 INVITE\r\n\
Subject: a folded\r\n  header\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\n";

fn limits() -> Limits {
    Limits::default()
}

fn dgram(s: &str) -> Result<super::message::Message, Malformed> {
    parse_datagram(Bytes::from(s.to_string()), limits()).map_err(|r| r.reason)
}

#[test]
fn a_register_is_read_with_every_field_the_registrar_needs() {
    let m = dgram(REGISTER).expect("parses");
    assert_eq!(m.method(), Some("REGISTER"));
    assert_eq!(m.uri(), Some("sip:example.org"));
    assert_eq!(m.call_id(), Some("c1@127.0.0.1"));
    assert_eq!(m.cseq(), Some((7, "REGISTER".to_string())));
    assert_eq!(m.tag_of_from().as_deref(), Some("a1"));
    assert_eq!(m.tag_of_to(), None);
    let via = m.top_via().expect("via");
    assert_eq!(via.host, "127.0.0.1");
    assert_eq!(via.port, Some(5070));
    assert_eq!(via.branch.as_deref(), Some("z9hG4bK-1"));
    assert_eq!(via.rport, Some(None));
    let contacts: Vec<&str> = m.values(&Name::CONTACT).collect();
    assert_eq!(contacts.len(), 2, "two lines, kept as received");
    let names: Vec<&str> = m.headers().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![
            "Via",
            "Max-Forwards",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Contact",
            "Expires",
            "Content-Length"
        ],
        "header lines keep their order"
    );
    assert!(m.body.is_empty());
}

#[test]
fn compact_forms_folding_and_the_body_by_content_length() {
    let m = dgram(INVITE_COMPACT).expect("parses");
    assert_eq!(m.call_id(), Some("c2"));
    assert_eq!(
        m.header(&Name::VIA).map(|v| v.starts_with("SIP/2.0/UDP")),
        Some(true)
    );
    assert_eq!(&m.body[..], b"v=0\r");
    let f = m.header(&Name::FROM).expect("from");
    assert!(f.contains(":5071"), "From is kept raw with its port: {f}");
}

#[test]
fn each_defect_has_its_reason() {
    let cases: Vec<(String, Malformed)> = vec![
        ("".into(), Malformed::Empty),
        ("\r\n\r\n".into(), Malformed::Empty),
        ("HELLO\r\n\r\n".into(), Malformed::StartLine),
        (
            "REGISTER sip:x SIP/3.0\r\n\r\n".into(),
            Malformed::StartLine,
        ),
        (
            REGISTER.replace("REGISTER sip:example.org", "REGISTER tel:+1555"),
            Malformed::UnsupportedUriScheme,
        ),
        (
            REGISTER.replace("Max-Forwards: 70", "Max-Forwards 70"),
            Malformed::HeaderLine,
        ),
        (
            // Found by the mutation property: a vertical tab after the To value.
            REGISTER.replace(
                "To: <sip:alice@example.org>\r\n",
                "To: <sip:alice@example.org>\x0b\n",
            ),
            Malformed::HeaderLine,
        ),
        (
            REGISTER.replace("Call-ID: c1@", "Call-ID: c1\x00@"),
            Malformed::HeaderLine,
        ),
        (
            REGISTER.replace(
                "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n",
                "",
            ),
            Malformed::MissingVia,
        ),
        (
            REGISTER.replace("SIP/2.0/UDP 127.0.0.1", "HTTP/1.1 127.0.0.1"),
            Malformed::BadVia,
        ),
        (
            REGISTER.replace("From: <sip:alice@example.org>;tag=a1\r\n", ""),
            Malformed::MissingFrom,
        ),
        (
            REGISTER.replace("To: <sip:alice@example.org>\r\n", ""),
            Malformed::MissingTo,
        ),
        (
            REGISTER.replace("Call-ID: c1@127.0.0.1\r\n", ""),
            Malformed::MissingCallId,
        ),
        (
            REGISTER.replace("CSeq: 7 REGISTER\r\n", ""),
            Malformed::MissingCSeq,
        ),
        (
            REGISTER.replace("CSeq: 7 REGISTER", "CSeq: seven REGISTER"),
            Malformed::BadCSeq,
        ),
        (
            REGISTER.replace("CSeq: 7 REGISTER", "CSeq: 7 INVITE"),
            Malformed::CSeqMethodMismatch,
        ),
        (
            REGISTER.replace("CSeq: 7 REGISTER", "CSeq: 7 REGISTERX"),
            Malformed::CSeqMethodMismatch,
        ),
        (
            REGISTER.replace("Content-Length: 0", "Content-Length: x"),
            Malformed::ContentLength,
        ),
        (
            REGISTER.replace("Content-Length: 0", "Content-Length: 10"),
            Malformed::BodyTruncated,
        ),
        (
            format!("{REGISTER}{}", "x".repeat(70_000)),
            Malformed::TooLarge,
        ),
        (
            REGISTER.replace("Expires: 3600\r\n", &"X-A: 1\r\n".repeat(200)),
            Malformed::TooManyHeaders,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(dgram(&text).err(), Some(want), "{:?}", text.get(..60));
    }
    let bad_utf8 = [b"REGISTER sip:x SIP/2.0\r\nVia: \xff\r\n\r\n".as_slice()].concat();
    assert_eq!(
        parse_datagram(Bytes::from(bad_utf8), limits())
            .err()
            .map(|r| r.reason),
        Some(Malformed::NotUtf8)
    );
}

#[test]
fn a_request_with_its_identity_headers_can_be_answered_even_when_refused() {
    let text = REGISTER.replace("CSeq: 7 REGISTER", "CSeq: 7 INVITE");
    let r = parse_datagram(Bytes::from(text), limits()).expect_err("mismatch");
    assert!(r.partial.is_some(), "a 400 can be sent");
    let text = REGISTER.replace("Call-ID: c1@127.0.0.1\r\n", "");
    let r = parse_datagram(Bytes::from(text), limits()).expect_err("no call-id");
    assert!(r.partial.is_none(), "nothing to answer with");
}

#[test]
fn tcp_frames_by_content_length_and_skips_keep_alives() {
    let two = format!("\r\n\r\n{INVITE_COMPACT}{REGISTER}");
    let buf = Bytes::from(two.clone());
    let Ok(Framed::Message(first, used)) = parse_stream(&buf, limits()) else {
        panic!("first message")
    };
    assert_eq!(first.method(), Some("INVITE"));
    assert_eq!(&first.body[..], b"v=0\r", "the body ends at Content-Length");
    let rest = buf.slice(used..);
    let Ok(Framed::Message(second, used2)) = parse_stream(&rest, limits()) else {
        panic!("second message")
    };
    assert_eq!(second.method(), Some("REGISTER"));
    assert_eq!(used + used2, two.len());
    // Every cut short of the declared body is Incomplete, never a wrong message (the last
    // byte of INVITE_COMPACT lies beyond its Content-Length).
    for cut in 1..INVITE_COMPACT.len() - 1 {
        let part = Bytes::from(INVITE_COMPACT[..cut].to_string());
        match parse_stream(&part, limits()) {
            Ok(Framed::Incomplete) | Ok(Framed::KeepAlive(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(matches!(
        parse_stream(&Bytes::from_static(b"\r\n\r\n"), limits()),
        Ok(Framed::KeepAlive(4))
    ));
}

#[test]
fn responses_copy_identity_headers_add_a_tag_and_stamp_the_via() {
    let m = dgram(REGISTER).expect("parses");
    let src = Source {
        ip: "127.0.0.1",
        port: 40000,
    };
    let extra = vec![(
        "Contact".to_string(),
        "<sip:alice@127.0.0.1:5070>;expires=600".to_string(),
    )];
    let b = build::response(&m, &src, 200, "", Some("t1"), &extra, b"").expect("builds");
    let text = String::from_utf8(b).expect("utf8");
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport=40000\r\n"),
        "{text}"
    );
    assert!(
        text.contains("To: <sip:alice@example.org>;tag=t1\r\n"),
        "{text}"
    );
    assert!(text.contains("From: <sip:alice@example.org>;tag=a1\r\n"));
    assert!(text.contains("CSeq: 7 REGISTER\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    let back = dgram(&text).expect("the response parses");
    assert_eq!(back.status(), Some(200));
    assert_eq!(back.tag_of_to().as_deref(), Some("t1"));

    let elsewhere = Source {
        ip: "10.1.1.1",
        port: 5070,
    };
    let b = build::response(&m, &elsewhere, 100, "", Some("t1"), &[], b"").expect("builds");
    let text = String::from_utf8(b).expect("utf8");
    assert!(text.contains("received=10.1.1.1"), "{text}");
    assert!(
        text.contains("To: <sip:alice@example.org>\r\n"),
        "no tag on 100: {text}"
    );
}

#[test]
fn handler_headers_cannot_inject_lines() {
    let m = dgram(REGISTER).expect("parses");
    let src = Source {
        ip: "127.0.0.1",
        port: 5070,
    };
    for (n, v) in [("X-A", "1\r\nVia: evil"), ("X A", "1"), ("", "1")] {
        let extra = vec![(n.to_string(), v.to_string())];
        assert!(
            build::response(&m, &src, 200, "", None, &extra, b"").is_err(),
            "{n:?}"
        );
    }
    let extra = vec![("Content-Length".to_string(), "99".to_string())];
    let b = build::response(&m, &src, 200, "", None, &extra, b"hi").expect("builds");
    let text = String::from_utf8(b).expect("utf8");
    assert!(
        !text.contains("Content-Length: 99"),
        "the proxy computes it"
    );
    assert!(text.ends_with("Content-Length: 2\r\n\r\nhi"));
    assert!(build::request(
        "INVITE",
        "sip:a b",
        "SIP/2.0/UDP x;branch=z9hG4bK1",
        &[],
        b""
    )
    .is_err());
}

/// Mutations of a valid message: byte flips, cuts, insertions of SIP-looking tokens.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = prop::sample::select(vec![REGISTER, INVITE_COMPACT]);
    let tokens = prop::sample::select(vec![
        "\r\n",
        ";",
        ",",
        ":",
        "<",
        ">",
        "\"",
        "=",
        "z9hG4bK",
        "SIP/2.0",
        "sip:",
        "\r\n ",
        "\0",
        "Content-Length: 99999999999999999999",
        "Via: ",
        "CSeq: 4294967296 REGISTER",
        "[::1]",
        ";rport=",
        "tag=",
        "%",
        "\u{fffd}",
    ]);
    (
        seeds,
        prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..4, any::<u8>(), tokens),
            1..8,
        ),
    )
        .prop_map(|(seed, edits)| {
            let mut b = seed.as_bytes().to_vec();
            for (at, kind, byte, token) in edits {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                match kind {
                    0 => b[i] = byte,
                    1 => b.truncate(i),
                    2 => {
                        b.splice(i..i, token.bytes());
                    }
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let b = Bytes::from(data);
        let _ = parse_datagram(b.clone(), limits());
        let _ = parse_stream(&b, limits());
    }

    #[test]
    fn mutated_messages_never_panic_and_what_parses_can_be_answered(data in mutated()) {
        let b = Bytes::from(data);
        let _ = parse_stream(&b, limits());
        match parse_datagram(b, limits()) {
            Ok(m) => {
                let _ = m.top_via();
                let _ = m.cseq();
                let _ = m.tag_of_from();
                let _ = m.tag_of_to();
                if m.is_request() {
                    let src = Source { ip: "127.0.0.1", port: 5070 };
                    let out = build::response(&m, &src, 200, "", Some("t"), &[], b"").expect("answerable");
                    let back = parse_datagram(Bytes::from(out), limits());
                    prop_assert!(back.is_ok(), "our own response must parse: {:?}", back.err().map(|r| r.reason));
                }
            }
            Err(r) => {
                if let Some(m) = r.partial {
                    let src = Source { ip: "127.0.0.1", port: 5070 };
                    let _ = build::response(&m, &src, 400, "", Some("t"), &[], b"");
                }
            }
        }
    }
}
