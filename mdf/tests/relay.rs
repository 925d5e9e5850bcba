//! The MDF binary as a user runs it: sessions made over its control API, real RTP and RTCP
//! packets over loopback UDP from sockets the test owns (the participants). Nothing is
//! mocked.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mdf::mcptt::{self, Kind};
use serde_json::{json, Value};
use sluice_common::testing::{free_port, wait_for, ChildGuard};

const WAIT: Duration = Duration::from_secs(10);

/// A range of `n` UDP ports on loopback that were free when probed (the relay skips a
/// pair someone takes meanwhile).
fn free_udp_range(n: u16) -> (u16, u16) {
    loop {
        let base = (rand_port() & !1).max(20000);
        let free = (base..base + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if free {
            return (base, base + n - 1);
        }
    }
}

fn rand_port() -> u16 {
    // A free ephemeral-range TCP port is as good a random start as any.
    free_port().saturating_sub(5000)
}

struct Mdf {
    _child: ChildGuard,
    url: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Mdf {
    async fn start(extra: &[(&str, &str)]) -> Mdf {
        let control = free_port();
        let (min, max) = free_udp_range(40);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mdf"));
        cmd.env("SLUICE_MDF_CONTROL_LISTEN", format!("127.0.0.1:{control}"))
            .env("SLUICE_MDF_PORT_MIN", min.to_string())
            .env("SLUICE_MDF_PORT_MAX", max.to_string())
            .env("SLUICE_MDF_INSTANCE", "mdf-test");
        let mut token = None;
        for (k, v) in extra {
            cmd.env(k, v);
            if *k == "SLUICE_MDF_TOKEN_FILE" {
                token = std::fs::read_to_string(v)
                    .ok()
                    .map(|t| t.trim().to_string());
            }
        }
        let child = ChildGuard(Some(cmd.spawn().expect("start mdf")));
        let mdf = Mdf {
            _child: child,
            url: format!("http://127.0.0.1:{control}"),
            http: reqwest::Client::new(),
            token,
        };
        wait_for("mdf /healthz", WAIT, || async {
            let r = mdf
                .http
                .get(format!("{}/healthz", mdf.url))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        mdf
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("control API");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn stats(&self, session: &str) -> Value {
        let (s, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/sessions/{session}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["stats"].clone()
    }

    /// Waits until the session's counter `name` reaches `n`.
    async fn wait_counter(&self, session: &str, name: &str, n: u64) {
        wait_for(&format!("{name} >= {n}"), WAIT, || async {
            (self.stats(session).await[name].as_u64()? >= n).then_some(())
        })
        .await;
    }
}

/// A participant: an RTP and an RTCP socket on loopback, as a phone's SDP would give them.
struct Phone {
    id: String,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    /// The relay's ports for this leg.
    relay_rtp: SocketAddr,
    relay_rtcp: SocketAddr,
}

impl Phone {
    fn new(id: &str) -> Phone {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&rtp, &rtcp] {
            s.set_read_timeout(Some(WAIT)).unwrap();
        }
        let unset: SocketAddr = "0.0.0.0:0".parse().unwrap();
        Phone {
            id: id.into(),
            rtp,
            rtcp,
            relay_rtp: unset,
            relay_rtcp: unset,
        }
    }

    fn leg(&self) -> Value {
        json!({"id": self.id, "rtp": self.rtp.local_addr().unwrap().to_string(),
               "rtcp": self.rtcp.local_addr().unwrap().to_string()})
    }

    fn send_rtp(&self, packet: &[u8]) {
        self.rtp.send_to(packet, self.relay_rtp).unwrap();
    }

    fn send_floor(&self, kind: Kind) {
        let msg = mcptt::client_message(kind, 0x1234, Some(&self.id), false);
        self.rtcp.send_to(&msg, self.relay_rtcp).unwrap();
    }

    fn recv_rtp(&self) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, from) = self.rtp.recv_from(&mut buf).expect("an RTP packet");
        assert_eq!(
            from, self.relay_rtp,
            "{}: media comes from its own relay port",
            self.id
        );
        buf[..n].to_vec()
    }

    fn recv_floor(&self) -> mcptt::Message {
        let mut buf = [0u8; 2048];
        let (n, from) = self.rtcp.recv_from(&mut buf).expect("a floor message");
        assert_eq!(from, self.relay_rtcp);
        let mut d = mcptt::parse_datagram(&buf[..n]).expect("a valid floor message");
        assert_eq!(d.floor.len(), 1);
        d.floor.remove(0)
    }

    /// Nothing is queued on either socket.
    fn assert_quiet(&self) {
        let mut buf = [0u8; 2048];
        for s in [&self.rtp, &self.rtcp] {
            s.set_nonblocking(true).unwrap();
            let r = s.recv_from(&mut buf);
            s.set_nonblocking(false).unwrap();
            assert!(
                r.is_err(),
                "{}: unexpected packet {:?}",
                self.id,
                r.map(|(n, a)| (n, a, buf[..n].to_vec()))
            );
        }
    }
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let payload: Vec<u8> = (0..160u32).map(|i| (i as u16 ^ seq) as u8).collect();
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(8)
        .ssrc(ssrc)
        .sequence(rtp_rs::Seq::from(seq))
        .timestamp(u32::from(seq) * 160)
        .payload(&payload)
        .build()
        .unwrap()
}

/// Starts a session of `phones` (the first holds the floor) and fills in their relay ports.
async fn session(mdf: &Mdf, id: &str, phones: &mut [Phone], extra: Value) -> Value {
    let mut body = json!({"id": id, "floor": phones[0].id,
                          "legs": phones.iter().map(Phone::leg).collect::<Vec<_>>()});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = mdf
        .call(reqwest::Method::POST, "/v1/sessions", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["address"], "127.0.0.1");
    for (p, leg) in phones.iter_mut().zip(v["legs"].as_array().unwrap()) {
        assert_eq!(leg["id"], p.id.as_str());
        let port = leg["rtp_port"].as_u64().unwrap() as u16;
        assert_eq!(port % 2, 0);
        assert_eq!(leg["rtcp_port"].as_u64().unwrap() as u16, port + 1);
        p.relay_rtp = SocketAddr::from(([127, 0, 0, 1], port));
        p.relay_rtcp = SocketAddr::from(([127, 0, 0, 1], port + 1));
    }
    v
}

fn group() -> Vec<Phone> {
    ["sip:alice@x", "sip:bob@x", "sip:carol@x", "sip:dave@x"]
        .iter()
        .map(|id| Phone::new(id))
        .collect()
}

#[tokio::test]
async fn the_floor_holders_media_reaches_every_other_member_in_order_and_floor_control_hands_over()
{
    let mdf = Mdf::start(&[]).await;
    let mut p = group();
    session(&mdf, "call-1", &mut p, json!({})).await;
    // The originator was granted the floor implicitly; everyone else hears Taken.
    let g = p[0].recv_floor();
    assert_eq!((g.kind, g.duration), (Kind::Granted, Some(30)));
    for m in &p[1..] {
        let t = m.recv_floor();
        assert_eq!(t.kind, Kind::Taken);
        assert_eq!(t.granted_party.as_deref(), Some("sip:alice@x"));
    }

    // Relaying: 50 packets from the holder, byte-identical and in order at each listener.
    let sent: Vec<Vec<u8>> = (0..50).map(|i| rtp(0xa11ce, 1000 + i)).collect();
    for pkt in &sent {
        p[0].send_rtp(pkt);
    }
    for m in &p[1..] {
        for pkt in &sent {
            assert_eq!(&m.recv_rtp(), pkt, "{} got the packets in order", m.id);
        }
    }
    mdf.wait_counter("call-1", "relayed_packets", 150).await;

    // A non-holder's media is dropped and counted; nobody hears it.
    for i in 0..5 {
        p[1].send_rtp(&rtp(0xb0b, i));
    }
    mdf.wait_counter("call-1", "dropped_not_floor_holder", 5)
        .await;
    for m in &p {
        m.assert_quiet();
    }

    // Floor Request while taken: Deny, cause 1.
    p[1].send_floor(Kind::Request);
    let d = p[1].recv_floor();
    assert_eq!((d.kind, d.reject_cause), (Kind::Deny, Some(1)));
    // Release: everyone hears Idle.
    p[0].send_floor(Kind::Release);
    for m in &p {
        assert_eq!(m.recv_floor().kind, Kind::Idle, "{}", m.id);
    }
    // Now the request is granted and the others hear Taken by bob.
    p[1].send_floor(Kind::Request);
    assert_eq!(p[1].recv_floor().kind, Kind::Granted);
    for i in [0, 2, 3] {
        let t = p[i].recv_floor();
        assert_eq!(
            (t.kind, t.granted_party.as_deref()),
            (Kind::Taken, Some("sip:bob@x"))
        );
    }
    let bobs: Vec<Vec<u8>> = (0..20).map(|i| rtp(0xb0b, 500 + i)).collect();
    for pkt in &bobs {
        p[1].send_rtp(pkt);
    }
    for i in [0, 2, 3] {
        for pkt in &bobs {
            assert_eq!(&p[i].recv_rtp(), pkt);
        }
    }
    // The former holder's media is now dropped.
    p[0].send_rtp(&rtp(0xa11ce, 9));
    mdf.wait_counter("call-1", "dropped_not_floor_holder", 6)
        .await;
    let stats = mdf.stats("call-1").await;
    assert_eq!(stats["relayed_packets"], 150 + 60);
    assert_eq!(stats["floor_granted"], 2);
    assert_eq!(stats["floor_denied"], 1);
    assert_eq!(stats["floor_released"], 1);
    for m in &p {
        m.assert_quiet();
    }
}

#[tokio::test]
async fn malformed_packets_and_a_strangers_flood_are_counted_and_relaying_goes_on() {
    let mdf = Mdf::start(&[]).await;
    let mut p = group();
    session(&mdf, "call-2", &mut p, json!({})).await;
    for m in &p {
        m.recv_floor(); // Granted / Taken
    }
    // Malformed RTP: too short, wrong version, a CSRC count beyond the packet.
    let mut bad_version = rtp(1, 1);
    bad_version[0] = 0x40;
    let mut bad_csrc = rtp(1, 2);
    bad_csrc[0] = 0x8f;
    bad_csrc.truncate(20);
    for bad in [&[0x80u8, 8, 0][..], &bad_version, &bad_csrc] {
        p[0].send_rtp(bad);
    }
    // Malformed RTCP: garbage, a truncated APP, an unknown floor message type.
    let mut unknown_type = mcptt::client_message(Kind::Request, 1, None, false);
    unknown_type[0] = 0x80 | 7;
    for bad in [&b"not rtcp"[..], &[0x80, 204, 0, 9, 1, 2], &unknown_type] {
        p[0].rtcp.send_to(bad, p[0].relay_rtcp).unwrap();
    }
    // A flood from an address that is no member's (127.0.0.2) at a listener's and the
    // holder's ports.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    for i in 0..200 {
        stranger.send_to(&rtp(0xbad, i), p[0].relay_rtp).unwrap();
        stranger.send_to(&rtp(0xbad, i), p[2].relay_rtp).unwrap();
    }
    stranger
        .send_to(
            &mcptt::client_message(Kind::Request, 9, None, false),
            p[3].relay_rtcp,
        )
        .unwrap();
    mdf.wait_counter("call-2", "dropped_foreign_source", 401)
        .await;
    let stats = mdf.stats("call-2").await;
    assert_eq!(stats["dropped_malformed_rtp"], 3);
    assert_eq!(stats["dropped_malformed_rtcp"], 3);
    assert_eq!(stats["relayed_packets"], 0);
    // The relay still relays the holder.
    let good = rtp(0xa11ce, 77);
    p[0].send_rtp(&good);
    for m in &p[1..] {
        assert_eq!(m.recv_rtp(), good);
    }
    for m in &p {
        m.assert_quiet();
    }
    let (s, total) = mdf.call(reqwest::Method::GET, "/v1/stats", None).await;
    assert_eq!(s, 200);
    assert_eq!(total["dropped_foreign_source"], 401);
    assert_eq!(total["relayed_packets"], 3);
}

#[tokio::test]
async fn a_holder_past_the_maximum_talk_time_is_revoked_and_the_floor_goes_idle() {
    let mdf = Mdf::start(&[]).await;
    let mut p = group();
    session(&mdf, "call-3", &mut p, json!({"max_talk_ms": 300})).await;
    let g = p[0].recv_floor();
    assert_eq!(g.kind, Kind::Granted);
    for m in &p[1..] {
        assert_eq!(m.recv_floor().kind, Kind::Taken);
    }
    let r = p[0].recv_floor();
    assert_eq!((r.kind, r.reject_cause), (Kind::Revoke, Some(2)));
    for m in &p {
        assert_eq!(m.recv_floor().kind, Kind::Idle);
    }
    let stats = mdf.stats("call-3").await;
    assert_eq!(stats["floor_revoked"], 1);
}

#[tokio::test]
async fn legs_join_late_leave_early_and_ending_the_session_frees_its_ports() {
    let mdf = Mdf::start(&[]).await;
    let mut p = group();
    // Bob has not answered yet: no address.
    let mut body_legs: Vec<Value> = p.iter().map(Phone::leg).collect();
    body_legs[1] = json!({"id": "sip:bob@x"});
    let (s, v) = mdf
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(json!({"id": "call-4", "legs": body_legs, "floor": "sip:alice@x"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (ph, leg) in p.iter_mut().zip(v["legs"].as_array().unwrap()) {
        let port = leg["rtp_port"].as_u64().unwrap() as u16;
        ph.relay_rtp = SocketAddr::from(([127, 0, 0, 1], port));
        ph.relay_rtcp = SocketAddr::from(([127, 0, 0, 1], port + 1));
    }
    p[0].recv_floor();
    p[2].recv_floor();
    p[3].recv_floor();
    let first = rtp(1, 1);
    p[0].send_rtp(&first);
    mdf.wait_counter("call-4", "dropped_no_destination", 1)
        .await;
    for m in &p[2..] {
        assert_eq!(m.recv_rtp(), first, "those who answered hear it");
    }
    // Bob answers: he hears Taken, then the media.
    let (s, _) = mdf
        .call(
            reqwest::Method::PUT,
            "/v1/sessions/call-4/legs/sip%3Abob%40x",
            Some(json!({"rtp": p[1].rtp.local_addr().unwrap().to_string(),
                          "rtcp": p[1].rtcp.local_addr().unwrap().to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(p[1].recv_floor().kind, Kind::Taken);
    let pkt = rtp(1, 2);
    p[0].send_rtp(&pkt);
    for m in &p[1..] {
        assert_eq!(m.recv_rtp(), pkt);
    }
    // Carol leaves: she hears nothing more; her packets are dropped.
    let (s, _) = mdf
        .call(
            reqwest::Method::DELETE,
            "/v1/sessions/call-4/legs/sip:carol@x",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let pkt = rtp(1, 3);
    p[0].send_rtp(&pkt);
    assert_eq!(p[1].recv_rtp(), pkt);
    assert_eq!(p[3].recv_rtp(), pkt);
    p[2].send_rtp(&rtp(7, 1));
    mdf.wait_counter("call-4", "dropped_inactive_leg", 1).await;
    // The holder leaves: the rest hear Idle.
    mdf.call(
        reqwest::Method::DELETE,
        "/v1/sessions/call-4/legs/sip:alice@x",
        None,
    )
    .await;
    assert_eq!(p[1].recv_floor().kind, Kind::Idle);
    assert_eq!(p[3].recv_floor().kind, Kind::Idle);
    for m in &p {
        m.assert_quiet();
    }
    // Ending the session closes its ports: they can be bound again at once.
    let (s, end) = mdf
        .call(reqwest::Method::DELETE, "/v1/sessions/call-4", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(end["stats"]["relayed_packets"], 2 + 3 + 2);
    for m in &p {
        UdpSocket::bind(m.relay_rtp).expect("RTP port freed");
        UdpSocket::bind(m.relay_rtcp).expect("RTCP port freed");
    }
    let (s, _) = mdf
        .call(reqwest::Method::GET, "/v1/sessions/call-4", None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn capacity_draining_bad_requests_and_the_token_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let mdf = Mdf::start(&[
        ("SLUICE_MDF_MAX_SESSIONS", "1"),
        ("SLUICE_MDF_TOKEN_FILE", token_file.to_str().unwrap()),
    ])
    .await;
    // Without the token: 401 with a challenge; /healthz stays open.
    let res = reqwest::get(format!("{}/v1/status", mdf.url))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let res = reqwest::get(format!("{}/healthz", mdf.url)).await.unwrap();
    assert_eq!(res.status(), 200);

    let (s, v) = mdf
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(json!({"legs": [{"id": "a", "rtp": "127.0.0.1:9"}, {"id": "a"}]})),
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("legs[1].id")));
    let one = json!({"id": "one", "legs": [{"id": "a"}]});
    assert_eq!(
        mdf.call(reqwest::Method::POST, "/v1/sessions", Some(one.clone()))
            .await
            .0,
        201
    );
    assert_eq!(
        mdf.call(reqwest::Method::POST, "/v1/sessions", Some(one))
            .await
            .0,
        409
    );
    let (s, v) = mdf
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(json!({"legs": [{"id": "a"}]})),
        )
        .await;
    assert_eq!(
        (s, v["retryable"].as_bool()),
        (503, Some(true)),
        "full: {v}"
    );
    let (_, status) = mdf.call(reqwest::Method::GET, "/v1/status", None).await;
    assert_eq!(status["sessions"], 1);
    assert_eq!(status["load"], 1.0);
    assert_eq!(status["instance"], "mdf-test");

    let (_, status) = mdf
        .call(
            reqwest::Method::POST,
            "/v1/drain",
            Some(json!({"draining": true})),
        )
        .await;
    assert_eq!(status["draining"], true);
    assert_eq!(
        mdf.call(reqwest::Method::DELETE, "/v1/sessions/one", None)
            .await
            .0,
        200
    );
    let (s, v) = mdf
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(json!({"legs": [{"id": "a"}]})),
        )
        .await;
    assert_eq!(s, 503, "draining: {v}");
    assert!(v["error"].as_str().unwrap().contains("draining"));
    let doc = mdf
        .http
        .get(format!("{}/v1/openapi.yaml", mdf.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    assert!(doc.text().await.unwrap().starts_with("openapi: 3"));
}
