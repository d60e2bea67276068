//! SIP user agent core for namecall's trunk to a company PBX: messages,
//! RFC 3261 transactions and timers, dialogs, registration, digest auth and
//! RFC 3263 target selection. Everything here is sans-IO: no sockets, no
//! tokio, no clock. The `gateway` crate owns the sockets and the time and
//! drives these state machines, as `quinn` drives `quinn-proto`.
//!
//! # Run loop
//!
//! Every state machine has the same verbs: `handle_input(now, ..)`,
//! `handle_timeout(now)`, commands such as `send_request`, and
//! `poll_output()`. After **every** input, timeout or command, drain
//! `poll_output()` until it returns `Output::Timeout` (the str0m rule), then
//! sleep until that instant or the next datagram, whichever comes first.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant};
//!
//! use sip_trunk::message::{Method, Request, Uri};
//! use sip_trunk::transaction::{Config, Input, Output, TransactionLayer, Transport, TxEvent};
//!
//! let socket = UdpSocket::bind("0.0.0.0:5060")?;
//! let config = Config {
//!     sent_by: Some("192.0.2.10:5060".into()),
//!     ..Config::default()
//! };
//! let mut layer = TransactionLayer::new(config, Instant::now());
//!
//! let options = Request::new(Method::Options, Uri::parse("sip:pbx.example.com")?)
//!     .with_header("From", "<sip:gw@example.net>;tag=1")
//!     .with_header("To", "<sip:pbx.example.com>")
//!     .with_header("Call-ID", "keepalive-1@example.net")
//!     .with_header("CSeq", "1 OPTIONS");
//! layer.send_request(Instant::now(), options, "192.0.2.20:5060".parse()?, Transport::Udp)?;
//!
//! let mut buf = vec![0u8; 65536];
//! loop {
//!     // 1. Drain until Timeout.
//!     let deadline = loop {
//!         match layer.poll_output() {
//!             Output::Transmit(t) => {
//!                 socket.send_to(&t.data, t.dest)?;
//!             }
//!             Output::Event(TxEvent::Request { id, request, .. }) => {
//!                 // Hand to the dialog layer / UAS core; it answers with
//!                 // layer.send_response(now, id, response).
//!                 let _ = (id, request);
//!             }
//!             Output::Event(other) => println!("{other:?}"),
//!             Output::Timeout(at) => break at,
//!         }
//!     };
//!     // 2. Wait for a datagram or the deadline; 3. feed exactly one input.
//!     let wait = deadline.saturating_duration_since(Instant::now());
//!     socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, from)) => layer.handle_input(
//!             Instant::now(),
//!             Input::Receive { from, transport: Transport::Udp, data: &buf[..n] },
//!         ),
//!         Err(_) => layer.handle_timeout(Instant::now()),
//!     }
//! }
//! # #[allow(unreachable_code)]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On TCP/TLS the shell frames the byte stream with
//! [`message::check_stream`] / [`message::parse_stream`] (mini-redis style:
//! `Incomplete` means read more) and passes each message as one `Receive`.
//! Send failures come back as `Input::TransportError { id }` using
//! `Transmit::transaction`.
//!
//! # Time
//!
//! Time is only ever an argument: constructors take the start instant and
//! every `handle_*` takes `now`. Nothing here calls `Instant::now()`, so tests
//! run 32 s of Timer B in microseconds. Time that goes backwards is clamped to
//! the last instant seen. Spurious `handle_timeout` calls are harmless. The
//! RFC 3261 timers are [`transaction::Timer`]`::{A, B, D, E, F, G, H, I, J,
//! K}`, one doc line each quoting Table 4; T1, T2, T4 and Timer D are set in
//! [`transaction::Timings`] (defaults 500 ms, 4 s, 5 s, 32 s). The RNG for
//! branches, tags and Call-IDs is seedable (`Config::rng_seed`).
//!
//! # Errors vs panics
//!
//! Bad input from the network is an error, never a panic: the parser returns
//! [`message::ParseError`], which says whether a stateless 400 (or 505/513)
//! can be sent back ([`message::ParseError::bad_request_reply`]); the
//! transaction layer sends it and counts the drop in
//! [`transaction::Stats`]. Misuse of the API is a typed error
//! ([`transaction::TransactionError`]). A panic is a bug in this crate. The
//! RFC 4475 torture messages (`tests/rfc4475/`), a fuzz target
//! (`fuzz/fuzz_targets/parse.rs`) and the same property as a seeded test
//! (`tests/fuzz-parse.rs`) check that.
//!
//! Why our own parser: `rsip`'s last release (0.4.0) is from 2022, and
//! `rsipstack`'s maintained `sip` types do not compile without its
//! `platform-tokio` feature, which would pull tokio and a second
//! transaction layer into this sans-IO crate.
//!
//! # Out of scope
//!
//! - Sockets, TLS and DNS lookups: the `gateway` shell does I/O;
//!   [`resolve`] only plans RFC 3263 lookups and consumes their answers.
//! - SDP: bodies are opaque [`bytes::Bytes`]; offer/answer lives in `media`.
//! - Proxy behaviour (forking, Record-Route insertion, Timer C): we are a
//!   user agent / B2BUA, never a proxy.
//! - RFC 6026 Accepted states (Timers L and M): 2xx handling follows RFC 3261,
//!   with late 2xx and ACK passed up to the dialog layer.
//! - The RFC 2543 transaction key is approximate (no To-tag comparison).
//! - S/MIME, SigComp, and `maddr` routing of responses.
//!
//! # Layout
//!
//! - [`message`]: types, parser, stream framer, serialisation, builders
//!   (`message/{mod,parse,headers,typed,uri}.rs`).
//! - [`transaction`]: the RFC 3261 17 layer, its timers and
//!   `Uas2xxRetransmitter` (`transaction/{mod,timer,uas2xx}.rs`).
//! - [`dialog`], [`registration`], [`auth`], [`resolve`], [`ua`]: dialogs,
//!   outbound REGISTER, digest authentication, RFC 3263 planning and the user
//!   agent that ties them together.
//! - `tests/`: RFC 4475 fixtures, one file per timer-and-pair scenario, the
//!   fuzz property; `benches/parse.rs`: parse throughput; `fuzz/`: cargo-fuzz.

#![forbid(unsafe_code)]

pub mod auth;
pub mod dialog;
pub mod message;
pub mod registration;
pub mod resolve;
pub mod transaction;
pub mod ua;
