//! bridges: the messenger side of namecall — chat conversations (one-to-one
//! and groups), durable store-and-forward, receipts, typing and presence.
//!
//! # Layout
//! - [`model`]: validated types (`Login`, `ConversationId`, `Body`, …).
//! - [`store`]: [`ChatStore`], SQLite (WAL) through sqlx; every write is
//!   committed before it returns.
//! - [`writer`]: [`BatchWriter`], the group commit of sends and cursor acks
//!   on a connection of its own (rusqlite, synchronous, for one thread).
//! - [`delivery`]: sans-IO receipts/expiry/typing/presence state machine.
//! - [`frames`]: the JSON frames of the chat WebSocket protocol.
//! - [`hub`]: sans-IO router from store results to per-device server frames.
//! - [`service`]: [`ChatService`], the async glue the gateway calls.
//! - [`push`]: Web Push subscriptions, encryption and VAPID (sans-IO).
//! - [`uploads`]: checks and thumbnails of media uploads (pure functions).
//!
//! # Run loop (what the gateway does)
//! 1. `ChatStore::open(url)`, `ChatService::new(store, config)`, then
//!    `service.restore()` to re-arm expiry timers.
//! 2. Per authenticated socket: `service.connect(now, device, login)`; for
//!    each text frame `service.handle_text(now, &device, text)` and send
//!    every returned `(device, frame)` to that device's socket
//!    (`frame.to_json()`); on close `service.disconnect(now, &device)`.
//! 3. One timer task: sleep until `service.poll_timeout()`, then forward
//!    `service.handle_timeout(now)`.
//!
//! # Companies
//! A `co:<login>+<company name>` conversation has the user as its only
//! member; the company's messages are stored with its tenant login as
//! sender ([`ChatStore::receive_from_company`]) and its delivery is a
//! watermark on the conversation ([`ChatStore::peer_delivered`]). Sends are
//! admitted and carried by the gateway's [`CompanyRelay`] (SIP MESSAGE).
//!
//! # Time
//! Nothing here reads a clock: every call that depends on time takes a
//! [`Timestamp`] (unix milliseconds). Tests drive time by hand.
//!
//! # Errors vs panics
//! Bad input is a [`ChatError`] (and an `error` frame at the edge), never a
//! panic; a failed write leaves nothing stored.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod delivery;
pub mod error;
pub mod frames;
pub mod hub;
pub mod model;
pub mod push;
pub mod service;
pub mod store;
pub mod uploads;
pub mod writer;

pub use error::{ChatError, Result};
pub use model::{
    Body, ClientId, CompanyName, ConversationId, DeviceId, Login, Message, Seq, Timestamp,
};
pub use service::ChatService;
pub use service::CompanyRelay;
pub use store::{ChatStore, StoreOptions, Stored};
pub use writer::BatchWriter;
