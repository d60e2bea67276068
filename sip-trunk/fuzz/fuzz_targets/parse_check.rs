//! The property shared by the fuzz target and the plain test: parsing never
//! panics, typed accessors never panic, a parsed message re-parses to itself
//! after serialisation, and error replies are only built for requests.

use sip_trunk::message::{SipMessage, parse_message, parse_stream};

fn without_content_length(m: SipMessage) -> SipMessage {
    match m {
        SipMessage::Request(mut r) => {
            r.headers.remove("Content-Length");
            SipMessage::Request(r)
        }
        SipMessage::Response(mut r) => {
            r.headers.remove("Content-Length");
            SipMessage::Response(r)
        }
    }
}

/// Panics (for the fuzzer to report) when a property does not hold.
pub fn check(data: &[u8]) {
    let _ = parse_stream(data);
    match parse_message(data) {
        Ok(msg) => {
            let h = msg.headers();
            // The parser validates these without building them; the typed
            // accessors must then agree that they are well-formed.
            assert!(h.vias().is_ok(), "parsed message has bad Via");
            assert!(
                h.from().is_ok() && h.to().is_ok(),
                "parsed message has bad From/To"
            );
            assert!(h.call_id().is_ok() && h.cseq().is_ok(), "bad Call-ID/CSeq");
            if let SipMessage::Request(r) = &msg {
                assert!(
                    r.headers.contact().is_ok(),
                    "parsed request has bad Contact"
                );
            }
            let _ = (h.via(), h.vias(), h.from(), h.to(), h.call_id(), h.cseq());
            let _ = (h.contact(), h.route(), h.record_route());
            let _ = (
                h.max_forwards(),
                h.content_length(),
                h.expires(),
                h.content_type(),
            );
            let bytes = msg.to_bytes();
            let again = parse_message(&bytes).unwrap_or_else(|e| {
                panic!(
                    "serialised message does not parse ({e}):\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(
                without_content_length(msg),
                without_content_length(again),
                "round trip changed the message"
            );
        }
        Err(e) => {
            if let Some(reply) = e.bad_request_reply(data) {
                assert!(reply.starts_with(b"SIP/2.0 "), "reply is a status line");
                let start = data
                    .iter()
                    .position(|&c| c != b'\r' && c != b'\n')
                    .unwrap_or(data.len());
                assert!(
                    !data[start..].starts_with(b"SIP/"),
                    "responses are never answered"
                );
            }
        }
    }
}
