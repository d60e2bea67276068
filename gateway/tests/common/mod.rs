//! Helpers shared by the gateway's WebSocket tests: a JSON client and a real
//! WebRTC offer (str0m playing the browser).

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws` on `addr` (`host:port`).
pub async fn connect(addr: impl std::fmt::Display) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .expect("websocket upgrade");
    ws
}

/// Sends one JSON frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send frame");
}

/// The next JSON frame, within `secs` seconds.
pub async fn recv_within(ws: &mut Ws, secs: u64) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

/// The next JSON frame, within 5 s.
pub async fn recv(ws: &mut Ws) -> Value {
    recv_within(ws, 5).await
}

/// A real WebRTC offer (str0m playing the browser) with one Opus audio m-line.
pub fn audio_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, _pending) = api.apply().expect("offer with one m-line");
    offer.to_sdp_string()
}

/// A real WebRTC offer with audio and video (str0m playing a browser with a camera).
pub fn video_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _pending) = api.apply().expect("offer with two m-lines");
    offer.to_sdp_string()
}

/// The lab company's dialplan (`dialplans/examples/acme.yaml`) with its
/// PBX at `pbx` (`host:port`): its trunk peer is who may call the gateway.
pub fn lab_plans(pbx: &str) -> std::sync::Arc<gateway::plans::SharedPlans> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dialplans/examples/acme.yaml"),
    )
    .expect("example dialplan")
    .replace("127.0.0.1:5070", pbx);
    let plans =
        dialplans::Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid plan");
    std::sync::Arc::new(gateway::plans::SharedPlans::new("unused", plans))
}

/// Opens `/v1/ws?device=<device>` (a chat device id the client keeps).
pub async fn connect_device(addr: impl std::fmt::Display, device: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?device={device}"))
        .await
        .expect("websocket upgrade");
    ws
}

/// The next frame of type `kind`, skipping others, within 5 s.
pub async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within 5 s"))
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// Frames arriving within `ms` milliseconds.
pub async fn drain_for(ws: &mut Ws, ms: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end, ws.next()).await {
        if let Message::Text(t) = msg {
            out.push(serde_json::from_str(t.as_str()).expect("server sends JSON"));
        }
    }
    out
}

/// The next frame of `kind` within `secs`, failing on `ended`.
pub async fn until(ws: &mut Ws, kind: &str, secs: u64, log: &labkit::Log) -> Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {kind} frame\n{}", log.tail(40));
        let f = recv_within(ws, left.as_secs().max(1)).await;
        if f["type"] == kind {
            return f;
        }
        assert_ne!(
            f["type"],
            "ended",
            "call ended waiting for {kind}: {f}\n{}",
            log.tail(40)
        );
    }
}

/// A WebSocket signed in as a new account `login`.
pub async fn signed_in(gw: &labkit::Gateway, login: &str) -> Ws {
    let mut ws = connect(&gw.addr).await;
    send(
        &mut ws,
        json!({"type":"register","login":login,"password":"correct horse battery"}),
    )
    .await;
    assert_eq!(recv_within(&mut ws, 10).await["type"], "welcome");
    ws
}
