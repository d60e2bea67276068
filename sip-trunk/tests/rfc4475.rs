//! RFC 4475 torture test: all 49 messages, one expectation each.
//!
//! `Accept` means the parser returns a message; `Refuse(status)` means the
//! parser returns an error whose stateless reply carries `status` (or no reply
//! at all for responses, which are dropped). `AcceptElementRejects` marks the
//! messages RFC 4475 3.2-3.3 calls syntactically valid but that an element
//! must answer with an error at a higher layer; the note says which layer.

use std::path::PathBuf;

use sip_trunk::message::{Method, Scheme, SipMessage, parse_message, parse_stream};

#[derive(Debug, Clone, Copy)]
enum Expect {
    Accept,
    /// Parser refuses; `Some(code)` is the stateless reply, `None` = drop.
    Refuse(Option<u16>),
    /// Parser accepts; the element rejects above the parser (note says how).
    AcceptElementRejects(&'static str),
}

use Expect::*;

const CASES: &[(&str, Expect)] = &[
    // 3.1.1 valid messages
    ("wsinv", Accept),
    ("intmeth", Accept),
    ("esc01", Accept),
    ("escnull", Accept),
    ("esc02", Accept),
    ("lwsdisp", Accept),
    ("longreq", Accept),
    ("dblreq", Accept),
    ("semiuri", Accept),
    ("transports", Accept),
    ("mpart01", Accept),
    ("unreason", Accept),
    ("noreason", Accept),
    // 3.1.2 invalid messages
    ("badinv01", Refuse(Some(400))),
    ("clerr", Refuse(Some(400))),
    ("ncl", Refuse(Some(400))),
    ("scalar02", Refuse(Some(400))),
    ("scalarlg", Refuse(None)),
    ("quotbal", Refuse(Some(400))),
    ("ltgtruri", Refuse(Some(400))),
    ("lwsruri", Refuse(Some(400))),
    ("lwsstart", Refuse(Some(400))),
    ("trws", Refuse(Some(400))),
    ("escruri", Refuse(Some(400))),
    (
        "baddate",
        AcceptElementRejects("Date is never interpreted; RFC 4475 allows ignoring it"),
    ),
    ("regbadct", Refuse(Some(400))),
    ("badaspec", Refuse(Some(400))),
    ("baddn", Refuse(Some(400))),
    ("badvers", Refuse(Some(505))),
    ("mismatch01", Refuse(Some(400))),
    // RFC prefers 501 here; we answer 400, which it also allows.
    ("mismatch02", Refuse(Some(400))),
    ("bigcode", Refuse(None)),
    // 3.2 transaction layer
    (
        "badbranch",
        AcceptElementRejects("transaction layer answers 400 statelessly (bare magic cookie)"),
    ),
    // 3.3 application layer
    ("insuf", Refuse(Some(400))),
    (
        "unkscm",
        AcceptElementRejects("URI kept as Scheme::Other; the UAS core answers 416"),
    ),
    (
        "novelsc",
        AcceptElementRejects("URI kept as Scheme::Other; the UAS core answers 416"),
    ),
    (
        "unksm2",
        AcceptElementRejects(
            "non-SIP To/From/Contact kept as Scheme::Other; registrar answers 400/416",
        ),
    ),
    (
        "bext01",
        AcceptElementRejects("UAS core answers 420 with Unsupported"),
    ),
    (
        "invut",
        AcceptElementRejects("UAS core answers 415 with Accept"),
    ),
    (
        "regaut01",
        AcceptElementRejects("auth layer answers 401 for an unknown scheme"),
    ),
    ("multi01", Refuse(Some(400))),
    ("mcl01", Refuse(Some(400))),
    (
        "bcast",
        AcceptElementRejects("response matches no client transaction: dropped and counted"),
    ),
    (
        "zeromf",
        AcceptElementRejects("a UAS answers OPTIONS; a proxy would answer 483"),
    ),
    ("cparam01", Accept),
    ("cparam02", Accept),
    (
        "regescrt",
        AcceptElementRejects("registrar ignores or rejects Contact URI headers"),
    ),
    ("sdp01", AcceptElementRejects("UAS core answers 406")),
    // 3.4 backward compatibility
    (
        "inv2543",
        AcceptElementRejects("accepted; transactions use the RFC 2543 key"),
    ),
];

fn load(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "rfc4475",
        &format!("{name}.sip"),
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn request(name: &str) -> sip_trunk::message::Request {
    match parse_message(&load(name)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

/// Every message behaves as its row says, and none makes the parser panic.
#[test]
fn all_49_messages_behave_as_rfc_4475_says() {
    assert_eq!(CASES.len(), 49);
    for &(name, expect) in CASES {
        let raw = load(name);
        let result = parse_message(&raw);
        match expect {
            Accept | AcceptElementRejects(_) => {
                let note = match expect {
                    AcceptElementRejects(n) => n,
                    _ => "valid",
                };
                let msg =
                    result.unwrap_or_else(|e| panic!("{name} ({note}): should parse, got {e}"));
                // Serialising and parsing again gives the same message.
                let again = parse_message(&msg.to_bytes())
                    .unwrap_or_else(|e| panic!("{name}: re-parse failed: {e}"));
                assert_eq!(strip_cl(msg), strip_cl(again), "{name}: round trip");
            }
            Refuse(status) => {
                let err = match result {
                    Err(e) => e,
                    Ok(m) => panic!("{name}: should be refused, parsed as {m:?}"),
                };
                let reply = err.bad_request_reply(&raw);
                match status {
                    None => assert!(reply.is_none(), "{name}: responses are dropped"),
                    Some(code) => {
                        let reply =
                            reply.unwrap_or_else(|| panic!("{name}: expected {code} reply"));
                        let line = format!("SIP/2.0 {code} ");
                        assert!(
                            reply.starts_with(line.as_bytes()),
                            "{name}: {}",
                            String::from_utf8_lossy(&reply)
                        );
                        // The reply itself must be a well-formed response... unless the
                        // headers it copies are the broken ones; then it must at least frame.
                        let _ = parse_message(&reply);
                    }
                }
            }
        }
    }
}

fn strip_cl(m: SipMessage) -> SipMessage {
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

/// Truncations and stream framing of every message never panic.
#[test]
fn prefixes_and_stream_framing_never_panic() {
    for &(name, _) in CASES {
        let raw = load(name);
        for end in 0..raw.len() {
            let _ = parse_message(&raw[..end]);
            let _ = parse_stream(&raw[..end]);
        }
    }
}

#[test]
fn wsinv_details() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    let to = r.headers.to().unwrap();
    assert_eq!(to.tag.as_deref(), Some("1918181833n"));
    let from = r.headers.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \\\""#));
    assert_eq!(from.tag.as_deref(), Some("98asjd8"));
    assert_eq!(r.headers.max_forwards().unwrap(), Some(68));
    assert_eq!(r.headers.cseq().unwrap().seq, 9);
    let vias = r.headers.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch.as_deref(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[2].branch.as_deref(), Some("z9hG4bK30239"));
    assert_eq!(r.headers.get("Subject"), Some(""));
    assert_eq!(
        r.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let contact = &r.headers.contact().unwrap()[0];
    assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.param("secondparam"), Some(None));
    assert_eq!(contact.param("q"), Some(Some("0.33")));
    assert_eq!(r.headers.route().unwrap()[0].uri.param("lr"), Some(None));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_details() {
    let r = request("intmeth");
    assert_eq!(
        r.method,
        Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    let to = r.headers.to().unwrap();
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\\\x07 NUL:\\\0 DEL:\\\x7f")
    );
    let from = r.headers.from().unwrap();
    assert_eq!(from.tag.as_deref(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        r.headers.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
}

#[test]
fn escapes_are_kept_and_not_confused_with_names() {
    let r = request("esc01");
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    let c = &r.headers.contact().unwrap()[0];
    assert_eq!(c.uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
    let r = request("esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.headers.contact().unwrap().len(), 2);
    assert_eq!(
        r.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    let r = request("escnull");
    assert_eq!(r.headers.contact().unwrap().len(), 2);
    let r = request("semiuri");
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(r.uri.host, "example.com");
}

#[test]
fn long_and_double_requests() {
    let r = request("longreq");
    assert_eq!(r.headers.vias().unwrap().len(), 34);
    assert_eq!(r.headers.to().unwrap().uri.port, Some(6000));
    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty(), "trailing INVITE octets are ignored");
}

#[test]
fn responses_and_bodies() {
    let SipMessage::Response(u) = parse_message(&load("unreason")).unwrap() else {
        panic!("response expected");
    };
    assert_eq!(u.status.0, 200);
    assert_eq!(
        u.reason,
        "= 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"
    );
    let SipMessage::Response(n) = parse_message(&load("noreason")).unwrap() else {
        panic!("response expected");
    };
    assert_eq!((n.status.0, n.reason.as_str()), (100, ""));
    let m = request("mpart01");
    assert!(m.body.contains(&0));
    assert_eq!(m.headers.via().unwrap().rport, Some(None));
}

#[test]
fn unknown_schemes_are_kept_opaque() {
    let r = request("unkscm");
    assert_eq!(r.uri.scheme, Scheme::Other("nobodyknowsthisscheme".into()));
    let r = request("unksm2");
    assert_eq!(
        r.headers.to().unwrap().uri.scheme,
        Scheme::Other("isbn".into())
    );
    let r = request("inv2543");
    assert!(!r.headers.via().unwrap().has_rfc3261_branch());
    assert_eq!(r.headers.max_forwards().unwrap(), None);
    assert_eq!(r.body.len(), 105);
}
