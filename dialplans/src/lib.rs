//! Dialplans: what happens when someone calls or messages a company's name.
//!
//! A company admin writes one YAML file per company (tenant). It names the
//! SIP trunks to the company's PBX and maps each name (`acme`,
//! `acme/sales`) to a route — dial an extension, ring a group, branch on
//! opening hours, offer a DTMF menu, echo, reject — and optionally to a chat
//! target. This crate owns the schema, validates it with `file:line:column`
//! errors, and evaluates routes without any I/O. The full key reference is
//! `docs/dialplan.md`.
//!
//! # Use
//!
//! ```no_run
//! use std::time::SystemTime;
//! use dialplans::{CallContext, Decision, Dialplans, evaluate};
//!
//! let plans = match Dialplans::load_dir("dialplans/examples") {
//!     Ok(p) => p,
//!     Err(errors) => {
//!         for e in errors { eprintln!("{e}"); } // acme.yaml:12:9: unknown trunk `mian`; ...
//!         return;
//!     }
//! };
//! let call = CallContext { caller: "alice", dialled: "acme/sales", time: SystemTime::now(), dtmf: &[] };
//! match evaluate(&plans, &call) {
//!     Decision::Dial { trunk, target, timeout } => { /* INVITE target on trunk */ }
//!     Decision::Menu { prompt, .. } => { /* play, collect a key, evaluate again */ }
//!     _ => {}
//! }
//! ```
//!
//! # Time
//!
//! The evaluator never reads the clock: the caller passes the call's start
//! time. Opening hours are computed in the dialplan's time zone (IANA name
//! or fixed offset) from the tz database bundled into the binary.
//!
//! # Errors vs panics
//!
//! Every problem in a file is an [`DialplanError`] with a position; loading
//! collects all of them. No input, however malformed, panics: nesting depth
//! and alias expansion are bounded.
//!
//! # Out of scope (schema version 1)
//!
//! Caller-based routing, voicemail and queues are not in the schema yet;
//! the versioned `version:` key lets them arrive without breaking files.
//! Trunk failover and keep-alive intervals are in the schema
//! ([`Trunk::failover`], [`Trunk::keepalive`]); acting on them is the
//! gateway's job.
//!
//! # Layout
//!
//! - `yaml`: node tree with positions, built from `saphyr-parser` events.
//! - `parse`: helpers that validate nodes and collect errors.
//! - `plan`: the typed dialplan (trunks, names, chat, inbound).
//! - `action/`: one file per route verb, with its parse and evaluate.
//! - `eval`: [`evaluate`] and [`evaluate_chat`].
//! - `set`: [`Dialplans`], loading a directory and reloading it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod action;
mod error;
mod eval;
mod parse;
mod plan;
mod set;
mod types;
mod yaml;

pub use action::{Action, Dial, Hours, Menu, Reject, RingGroup, Strategy};
pub use error::{DialplanError, ErrorKind, Location};
pub use eval::{
    CallContext, ChatDecision, Decision, ECHO_NAME, MenuInput, evaluate, evaluate_chat,
};
pub use plan::{
    ChatRoute, DEFAULT_KEEPALIVE, Dialplan, Inbound, InboundAllow, NameEntry, SCHEMA_VERSION,
    Secret, Trunk, TrunkKind,
};
pub use set::Dialplans;
pub use types::{
    AudioCodec, DtmfMode, Extension, HostPort, LoginName, Transport, VideoCodec, parse_duration,
};

/// Loads every dialplan in `dir`; see [`Dialplans::load_dir`].
///
/// # Errors
///
/// Every problem in every file, each with file and position.
pub fn load_dir(dir: impl AsRef<std::path::Path>) -> Result<Dialplans, Vec<DialplanError>> {
    Dialplans::load_dir(dir)
}
