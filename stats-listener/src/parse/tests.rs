//! Parser tests: table-driven good and bad lines, whole packets, a seeded fuzz run and a
//! throughput measurement.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::stage::parse_packet;
use super::*;
use crate::ratelimit::LogEvery;
use crate::stats::Stats;

fn values(line: &str) -> Vec<Value<'_>> {
    parse_line(line)
        .unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
        .values()
        .collect()
}

#[test]
fn good_lines_of_every_type() {
    use Value::*;
    let cases: &[(&str, &str, MetricType, &[Value<'static>])] = &[
        ("a.b:1|c", "a.b", MetricType::Counter, &[Count(1.0)]),
        ("a:2.5|c", "a", MetricType::Counter, &[Count(2.5)]),
        ("a:-3|c", "a", MetricType::Counter, &[Count(-3.0)]),
        ("a:1|c|@0.1", "a", MetricType::Counter, &[Count(10.0)]),
        ("a:3|c|@0.5", "a", MetricType::Counter, &[Count(6.0)]),
        ("a:1|c|@1", "a", MetricType::Counter, &[Count(1.0)]),
        ("g:7|g", "g", MetricType::Gauge, &[GaugeSet(7.0)]),
        ("g:0.5|g", "g", MetricType::Gauge, &[GaugeSet(0.5)]),
        ("g:+4|g", "g", MetricType::Gauge, &[GaugeDelta(4.0)]),
        ("g:-4|g", "g", MetricType::Gauge, &[GaugeDelta(-4.0)]),
        ("g:-0.25|g", "g", MetricType::Gauge, &[GaugeDelta(-0.25)]),
        ("g:5|g|@0.5", "g", MetricType::Gauge, &[GaugeSet(5.0)]),
        ("t:12.5|ms", "t", MetricType::Timer, &[Sample(12.5)]),
        ("t:12|ms|@0.1", "t", MetricType::Timer, &[Sample(12.0)]),
        ("h:3|h", "h", MetricType::Histogram, &[Sample(3.0)]),
        ("d:1e2|d", "d", MetricType::Distribution, &[Sample(100.0)]),
        ("s:user-1|s", "s", MetricType::Set, &[Member("user-1")]),
        (
            "t:1:2:3|ms",
            "t",
            MetricType::Timer,
            &[Sample(1.0), Sample(2.0), Sample(3.0)],
        ),
        ("c:1|c|#router:r1", "c", MetricType::Counter, &[Count(1.0)]),
        ("c:1|c|@0.5|#a:b,c", "c", MetricType::Counter, &[Count(2.0)]),
        ("c:1|c|#a:b|@0.5", "c", MetricType::Counter, &[Count(2.0)]),
        ("c:1|c|#", "c", MetricType::Counter, &[Count(1.0)]),
        (
            "c:1|c|#a|c:abc123|T1700000000",
            "c",
            MetricType::Counter,
            &[Count(1.0)],
        ),
        (
            "ünï.cødé:1|c",
            "ünï.cødé",
            MetricType::Counter,
            &[Count(1.0)],
        ),
    ];
    for (line, name, kind, want) in cases {
        let l = parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(l.name, *name, "{line:?}");
        assert_eq!(l.kind, *kind, "{line:?}");
        assert_eq!(values(line), *want, "{line:?}");
    }
}

#[test]
fn tags_are_read() {
    let l = parse_line("x:1|g|#router:node-1:a,env:prod,bare,,").expect("valid");
    let tags: Vec<_> = l.tags().collect();
    assert_eq!(
        tags,
        [
            ("router", Some("node-1:a")),
            ("env", Some("prod")),
            ("bare", None)
        ]
    );
    assert_eq!(l.tag("router"), Some("node-1:a"));
    assert_eq!(l.tag("bare"), None);
    assert_eq!(l.tag("missing"), None);
    assert_eq!(l.rate, 1.0);
}

#[test]
fn bad_lines_name_their_reason() {
    let long = format!("a:1|c|#{}", "x".repeat(MAX_LINE_BYTES));
    let cases: &[(&[u8], Reason)] = &[
        (b"a:1|c\xff", Reason::InvalidUtf8),
        (b"\xc3\x28:1|c", Reason::InvalidUtf8),
        (long.as_bytes(), Reason::LineTooLong),
        (b"a1|c", Reason::MissingColon),
        (b"abc", Reason::MissingColon),
        (b"a:1", Reason::MissingPipe),
        (b"a:1c", Reason::MissingPipe),
        (b":1|c", Reason::EmptyName),
        (b"a b:1|c", Reason::InvalidName),
        (b"a|b:1|c", Reason::InvalidName),
        (b"a\tb:1|c", Reason::InvalidName),
        (b"a:1|x", Reason::UnknownType),
        (b"a:1|", Reason::UnknownType),
        (b"a:1|C", Reason::UnknownType),
        (b"a:1|msx", Reason::UnknownType),
        (b"a:abc|c", Reason::InvalidValue),
        (b"a:|c", Reason::InvalidValue),
        (b"a:1:|ms", Reason::InvalidValue),
        (b"a:1,5|g", Reason::InvalidValue),
        (b"a:+-1|g", Reason::InvalidValue),
        (b"a:--1|c", Reason::InvalidValue),
        (b"a: 1|c", Reason::InvalidValue),
        (b"a:0x10|c", Reason::InvalidValue),
        (b"a:|s", Reason::InvalidValue),
        (b"a:NaN|g", Reason::NonFiniteValue),
        (b"a:inf|ms", Reason::NonFiniteValue),
        (b"a:-inf|c", Reason::NonFiniteValue),
        (b"a:+infinity|g", Reason::NonFiniteValue),
        (b"a:1e309|h", Reason::NonFiniteValue),
        (b"a:1e308|c|@0.001", Reason::NonFiniteValue),
        (b"a:1|c|@0", Reason::InvalidRate),
        (b"a:1|c|@1.5", Reason::InvalidRate),
        (b"a:1|c|@-0.5", Reason::InvalidRate),
        (b"a:1|c|@x", Reason::InvalidRate),
        (b"a:1|c|@", Reason::InvalidRate),
        (b"a:1|c|@NaN", Reason::InvalidRate),
        (b"a:1|c|x", Reason::InvalidSection),
        (b"a:1|c|", Reason::InvalidSection),
        (b"a:1|c|@0.5|@0.5", Reason::InvalidSection),
        (b"a:1|c|#a|#b", Reason::InvalidSection),
        (b"a:1|c|Tabc", Reason::InvalidSection),
    ];
    for (raw, reason) in cases {
        let got: Vec<_> = lines(raw).collect();
        assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(raw));
        match &got[0] {
            Ok(l) => panic!("{:?} parsed as {l:?}", String::from_utf8_lossy(raw)),
            Err(e) => {
                assert_eq!(
                    e.reason(),
                    *reason,
                    "{:?}: {e}",
                    String::from_utf8_lossy(raw)
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn errors_name_what_was_wrong() {
    let msg = |s: &str| parse_line(s).expect_err("bad").to_string();
    assert_eq!(
        msg("a:1|zz"),
        "unknown metric type \"zz\" (expected c, g, ms, h, s or d)"
    );
    assert_eq!(msg("a:abc|c"), "value \"abc\" is not a number");
    assert_eq!(
        msg("a:1|c|@2"),
        "sample rate \"2\" is not a number in (0, 1]"
    );
    assert_eq!(msg("a:1"), "no `|type` after the value in \"a:1\"");
    let e = lines(b"a:1|c\xfe")
        .next()
        .expect("one")
        .expect_err("bad utf-8");
    assert_eq!(
        e.to_string(),
        "line is not valid UTF-8 (bad byte at offset 5)"
    );
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted() {
    let prefix = "a:1|c|#";
    let line = format!("{prefix}{}", "x".repeat(MAX_LINE_BYTES - prefix.len()));
    assert_eq!(line.len(), MAX_LINE_BYTES);
    assert!(lines(line.as_bytes()).all(|r| r.is_ok()));
}

#[test]
fn packets_split_into_lines_and_bad_lines_do_not_hide_good_ones() {
    let packet = b"a:1|c\nbad line\r\n\n  \nb:2|g\r\nc:x|ms\nd:3|ms\n";
    let got: Vec<_> = lines(packet).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].as_ref().map(|l| l.name), Ok("a"));
    assert_eq!(
        got[1].as_ref().map_err(|e| e.reason()),
        Err(Reason::MissingColon)
    );
    assert_eq!(got[2].as_ref().map(|l| l.name), Ok("b"));
    assert_eq!(
        got[3].as_ref().map_err(|e| e.reason()),
        Err(Reason::InvalidValue)
    );
    assert_eq!(got[4].as_ref().map(|l| l.name), Ok("d"));
    assert_eq!(lines(b"").count(), 0);
    assert_eq!(lines(b"\n\n").count(), 0);
    assert_eq!(lines(b"x:1|c").count(), 1, "no trailing newline");
}

#[test]
fn an_oversized_packet_is_rejected_whole() {
    // Exactly 64 KiB: 10 921 lines of 6 bytes plus one of 10.
    let mut packet = b"a:1|c\n".repeat(10_921);
    packet.extend_from_slice(b"ab:12345|c");
    assert_eq!(packet.len(), MAX_PACKET_BYTES);
    assert_eq!(lines(&packet).filter(|r| r.is_ok()).count(), 10_922);
    packet.push(b'\n');
    let got: Vec<_> = lines(&packet).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].as_ref().map_err(|e| e.reason()),
        Err(Reason::PacketTooLarge)
    );
}

#[test]
fn the_stage_counts_every_line_and_keeps_only_router_metrics() {
    let stats = Stats::new(0);
    let mut log = LogEvery::new(Duration::from_secs(1));
    let packet = b"cluster.hello.upstream_rq_active:3|g|#router:r1\n\
cluster.hello.upstream_rq_total:2|c|@0.5\n\
cluster.hello.upstream_rq_time:1:2|ms\n\
cluster.hello.upstream_rq_total:1|g\n\
other.metric:1|c\n\
cluster.Bad_Name.upstream_rq_total:1|c\n\
garbage\n\
cluster.hello.upstream_rq_total:NaN|c\n";
    let events = parse_packet(packet, &stats, &mut log);
    use crate::aggregate::event::{CounterId, GaugeId, GaugeOp, Update};
    let updates: Vec<_> = events
        .iter()
        .map(|e| (e.function.as_str(), e.router.as_str(), e.update.clone()))
        .collect();
    assert_eq!(
        updates,
        [
            (
                "hello",
                "r1",
                Update::Gauge(GaugeId::Active, GaugeOp::Set(3.0))
            ),
            ("hello", "", Update::Count(CounterId::Total, 4.0)),
            ("hello", "", Update::Latency(1.0)),
            ("hello", "", Update::Latency(2.0)),
        ]
    );
    let r = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.lines.load(r), 8);
    assert_eq!(stats.lines_ok.load(r), 6);
    assert_eq!(stats.known_metrics.load(r), 3);
    assert_eq!(stats.wrong_type.load(r), 1);
    assert_eq!(stats.other_metrics.load(r), 2);
    assert_eq!(stats.malformed_count(Reason::MissingColon), 1);
    assert_eq!(stats.malformed_count(Reason::NonFiniteValue), 1);
}

/// The non-blank lines of a packet as the parser sees them (for the fuzz oracle).
fn count_lines(packet: &[u8]) -> usize {
    if packet.len() > MAX_PACKET_BYTES {
        return 1;
    }
    packet
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count()
}

const GOOD: &[&str] = &[
    "cluster.hello.upstream_rq_active:3|g|#router:r1",
    "cluster.hello.upstream_rq_pending_active:+1|g|#router:r1",
    "cluster.hello.upstream_rq_total:1|c|@0.5",
    "cluster.hello.upstream_rq_time:12.5|ms|#router:r2,az:1",
    "cluster.hello.endpoint.r-1.upstream_rq_active:-1|g",
    "users:alice|s",
    "lat:1:2:3|h",
    "dist:0.5|d|@0.25|#x",
    "cluster.hello.upstream_rq_2xx:4|c|c:abc|T123",
];

fn mutate(rng: &mut StdRng, line: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b":|@#,.+-eE0123456789\xff\xc3 \r\tnaiNf";
    const TOKENS: &[&str] = &["NaN", "inf", "-inf", "1e999", "|@0", "|@2", "|#", ":", "|"];
    for _ in 0..rng.random_range(1..4) {
        let len = line.len();
        match rng.random_range(0..6) {
            5 => {
                let i = rng.random_range(0..=len);
                let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                line.splice(i..i, t.iter().copied());
            }
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                line[i] = rng.random();
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                line[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                line.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                line.remove(i);
            }
            _ => {
                let i = rng.random_range(0..=len);
                let j = rng.random_range(i..=len);
                line.truncate(j.max(i));
            }
        }
    }
    line.retain(|&b| b != b'\n');
}

/// 100 000 seeded iterations: random byte packets and good packets with one mutated line.
/// Never a panic; every line is accounted for once (ok or counted under a reason); the
/// unmutated lines of a packet still parse exactly as before.
#[test]
fn fuzz_random_and_mutated_packets() {
    let mut rng = StdRng::seed_from_u64(0x51u64 << 32 | 0xce);
    let stats = Stats::new(0);
    let mut log = LogEvery::new(Duration::from_secs(3600));
    let r = std::sync::atomic::Ordering::Relaxed;
    let mut mutated_bad = 0u64;
    for i in 0..100_000u32 {
        let before_lines = stats.lines.load(r);
        let before_bad = stats.malformed_total();
        let before_ok = stats.lines_ok.load(r);
        let packet: Vec<u8> = if i % 2 == 0 {
            // Random bytes, biased towards the protocol's punctuation.
            let len = rng.random_range(0..300);
            (0..len)
                .map(|_| {
                    if rng.random_bool(0.3) {
                        b":|@#\n,.-+"[rng.random_range(0..9)]
                    } else {
                        rng.random()
                    }
                })
                .collect()
        } else {
            let n = rng.random_range(1..8);
            let mut good: Vec<Vec<u8>> = (0..n)
                .map(|_| GOOD[rng.random_range(0..GOOD.len())].as_bytes().to_vec())
                .collect();
            let victim = rng.random_range(0..n);
            mutate(&mut rng, &mut good[victim]);
            let packet = good.join(&b'\n');
            // The other lines parse as they did unmutated.
            let parsed: Vec<_> = lines(&packet).collect();
            let victim_blank = good[victim].iter().all(|b| b.is_ascii_whitespace());
            let expect_len = if victim_blank { n - 1 } else { n };
            assert_eq!(
                parsed.len(),
                expect_len,
                "{:?}",
                String::from_utf8_lossy(&packet)
            );
            let mut idx = 0;
            for (k, raw) in good.iter().enumerate() {
                if k == victim {
                    if !victim_blank {
                        if parsed[idx].is_err() {
                            mutated_bad += 1;
                        }
                        idx += 1;
                    }
                    continue;
                }
                assert!(
                    parsed[idx].is_ok(),
                    "untouched line {:?} broke",
                    String::from_utf8_lossy(raw)
                );
                idx += 1;
            }
            packet
        };
        let _ = parse_packet(&packet, &stats, &mut log);
        let seen = stats.lines.load(r) - before_lines;
        let bad = stats.malformed_total() - before_bad;
        let ok = stats.lines_ok.load(r) - before_ok;
        assert_eq!(seen as usize, count_lines(&packet), "{packet:?}");
        assert_eq!(ok + bad, seen, "every line counted once: {packet:?}");
    }
    assert!(
        mutated_bad > 10_000,
        "mutations do produce bad lines ({mutated_bad})"
    );
    // Every reason a random input can hit was hit.
    for reason in [
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
    ] {
        assert!(stats.malformed_count(reason) > 0, "{reason} never hit");
    }
}

/// Throughput of the parse stage on router-like packets (printed; asserted loosely so a
/// loaded CI machine does not fail it).
#[test]
fn parse_throughput() {
    let mut packet = Vec::new();
    for i in 0..20 {
        packet.extend_from_slice(
            format!(
                "cluster.fn-{}.upstream_rq_active:{}|g|#router:node-1\n\
                 cluster.fn-{}.upstream_rq_total:{}|c\n\
                 cluster.fn-{}.upstream_rq_time:{}.5|ms|#router:node-1\n",
                i % 5,
                i,
                i % 5,
                i,
                i % 5,
                i
            )
            .as_bytes(),
        );
    }
    let per_packet = lines(&packet).count() as u64;
    let stats = Stats::new(0);
    let mut log = LogEvery::new(Duration::from_secs(1));
    let start = Instant::now();
    let mut total = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            total += parse_packet(&packet, &stats, &mut log).len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let lines_read = stats.lines.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lines_read % per_packet, 0);
    assert_eq!(total, lines_read);
    let rate = lines_read as f64 / secs;
    println!(
        "parse stage: {:.0} lines/s ({lines_read} lines in {secs:.2} s)",
        rate
    );
    assert!(rate > 100_000.0, "{rate} lines/s");
}
