//! SIP dialogs and the INVITE session built on them (RFC 3261 sections 12-15,
//! RFC 4028 session timers, RFC 3311 UPDATE), as sans-IO state machines.
//!
//! This module owns everything that lives longer than one transaction: the
//! dialog id, route set, remote target and CSeq spaces ([`Call`] keeps them),
//! building in-dialog requests, the ACK for a 2xx, 2xx retransmission until
//! the ACK arrives, re-INVITE glare back-off, session timers, CANCEL before
//! answer and the one-shot digest answer to a challenged INVITE.
//!
//! Like the registration client it sits above the transaction layer without
//! knowing its internals: [`Call::poll_transmit`] yields [`Send`] items saying
//! whether a message starts a client transaction, answers a server
//! transaction, or goes straight to the transport (ACK for 2xx and 2xx
//! retransmissions, RFC 3261 13.2.2.4 and 13.3.1.4). SDP is an opaque
//! [`Body`] here; offer/answer lives in the `media` crate.
//!
//! # Layout
//! - `call.rs`: the [`Call`] state machine, both roles.
//! - `session_timer.rs`: Session-Expires/Min-SE parsing and refresh arithmetic.
//! - `tests.rs`: one test per rule, with a hand-driven clock.
//!
//! # What is covered, and by which test
//!
//! | rule | test |
//! |---|---|
//! | early dialog from 1xx with tag, route set reversed for the UAC, ACK for 2xx with the INVITE's CSeq, re-ACK of a retransmitted 2xx | `uac_ringing_answer_and_ack` |
//! | 2xx retransmitted at T1 doubling to T2 until ACK, ACK absorbed | `uas_2xx_retransmitted_until_ack` |
//! | no ACK within 64*T1: BYE, `Timeout` | `uas_2xx_without_ack_sends_bye` |
//! | in-dialog requests: remote target, route set, rising CSeq | `uas_builds_in_dialog_requests` |
//! | BYE/INFO/MESSAGE answered, CSeq going backwards gets 500, unknown method 501 | `remote_requests_answered` |
//! | 481 for unknown dialogs, none for ACK | `unknown_dialog_gets_481` |
//! | peer re-INVITE as `TargetRefresh`, second offer gets 500 + Retry-After | `incoming_reinvite_is_target_refresh` |
//! | glare: 491, retry in 2.1-4 s (Call-ID owner) or 0-2 s | `reinvite_glare_retry_uac`, `reinvite_glare_retry_uas` |
//! | session refresh at half the interval (UPDATE, or re-INVITE with the last SDP) | `session_refresh_at_half_interval`, `session_refresh_by_reinvite` |
//! | BYE at interval - min(32 s, interval/3) without refresh | `session_expiry_sends_bye` |
//! | 422 with Min-SE, refresher choice, UAC retry of 422 once | `session_timer_negotiation_uas`, `uac_retries_422_with_min_se` |
//! | CANCEL only after a provisional, same branch/CSeq, 487 as `Cancelled`; 200 crossing CANCEL gets ACK + BYE | `uac_cancel_before_answer`, `uac_cancel_race_with_200` |
//! | CANCEL received: 487 on the INVITE | `uas_cancel_gives_487` |
//! | 401/407 answered once (INVITE and in-dialog requests) | `uac_invite_challenge_answered_once`, `in_dialog_request_challenge_answered_once` |
//! | transaction timeouts end the call | `transaction_timeouts` |
//! | a second fork's 2xx is ACKed and ended | `uac_second_fork_2xx_is_acked_and_ended` |
//! | REFER/NOTIFY transfer | `refer_transfer_round_trip` |
//! | unanswered INVITE: UAC cancels, UAS answers 480 after `answer_timeout` | `answer_timeout_both_roles` |
//! | retransmitted (re-)INVITE after our 2xx gets the 2xx again | `invite_retransmission_after_2xx_is_not_a_new_call` (ua) |
//! | our UAC against our UAS for ten minutes of refreshes | `uac_uas_pair_end_to_end` |
//! | garbage headers never panic | `hostile_headers_do_not_panic` |
//! | UAS reliable provisionals (RFC 3262): RSeq, retransmitted at T1 doubling until PRACK, in order, 2xx held while an SDP provisional is unacknowledged | `uas_reliable_provisional_retransmitted_until_prack`, `uas_reliable_provisionals_in_order_and_2xx_after_prack` |
//! | reliable only when the INVITE asks (Require or Supported: 100rel) | `uas_reliable_only_when_asked` |
//! | no PRACK within 64*T1: 504 and `Timeout`; CANCEL stops the retransmissions | `uas_reliable_provisional_without_prack_gives_up`, `uas_cancel_stops_reliable_provisional` |
//! | our UAC PRACKs our UAS's reliable 183 | `uac_uas_pair_reliable_provisionals` |
//!
//! Not covered: forked early dialogs kept apart
//! (the latest provisional's tag wins until the 2xx), strict-route peers are
//! built but not tested, dialog snapshots for restarts.

mod call;
mod session_timer;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::message::{Method, Request, Response};

pub(crate) use call::quote_display;
pub use call::{Call, CallConfig, Send};
pub use session_timer::{Refresher, SessionExpires};

/// A message body with its content type (SDP stays opaque in this crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// `Content-Type` value, e.g. `application/sdp`.
    pub content_type: String,
    /// The bytes.
    pub data: Bytes,
}

impl Body {
    /// An SDP body.
    pub fn sdp(data: impl Into<Bytes>) -> Self {
        Self {
            content_type: "application/sdp".into(),
            data: data.into(),
        }
    }

    /// The body of a message, if it has a non-empty one.
    pub(crate) fn of(headers: &crate::message::Headers, data: &Bytes) -> Option<Self> {
        if data.is_empty() {
            return None;
        }
        Some(Self {
            content_type: headers
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned(),
            data: data.clone(),
        })
    }
}

/// Identifies a dialog from our side: Call-ID, our tag, the peer's tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (From tag as UAC, To tag as UAS).
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The id an incoming in-dialog request names: (Call-ID, To tag, From tag).
    pub fn of_incoming(req: &Request) -> Option<Self> {
        Some(Self {
            call_id: req.headers.call_id().ok()?.to_owned(),
            local_tag: req.headers.to().ok()?.tag?,
            remote_tag: req.headers.from().ok()?.tag?,
        })
    }
}

/// Dialog life cycle (kept apart from [`DialogEvent`], which reports happenings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// UAC: INVITE sent, no dialog-creating response yet. UAS: INVITE received, nothing sent.
    Initial,
    /// A provisional response with a To tag created an early dialog.
    Early,
    /// A 2xx was sent or received.
    Confirmed,
    /// Over; no further requests are accepted.
    Terminated,
}

/// Why a call ended (CDR input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminatedReason {
    /// We sent BYE.
    LocalBye,
    /// The peer sent BYE.
    RemoteBye,
    /// The INVITE was cancelled (by us as UAC, or by the peer as UAS).
    Cancelled,
    /// The INVITE got (UAC) or was given (UAS) this final non-2xx status.
    Rejected(u16),
    /// No final response, no ACK for our 2xx, or an in-dialog request timed out.
    Timeout,
    /// RFC 4028: the session interval passed without a refresh.
    SessionTimerExpired,
}

/// What a [`Call`] reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// UAC: 180/183 arrived, with early media SDP if any.
    Ringing {
        /// 180 or 183 (or another 1xx above 100).
        status: u16,
        /// Early-media body, if any.
        body: Option<Body>,
    },
    /// UAC: the INVITE was answered; UAS: the ACK arrived.
    Answered {
        /// The answer SDP (UAC) or the ACK body (UAS, usually none).
        body: Option<Body>,
    },
    /// The peer sent a re-INVITE or UPDATE with an offer (hold/unhold); answer with
    /// [`Call::accept_refresh`] or [`Call::reject_refresh`].
    TargetRefresh {
        /// The offer, if any (a re-INVITE without SDP asks us for an offer).
        offer: Option<Body>,
    },
    /// Our re-INVITE or UPDATE was answered with 2xx, or the ACK to the peer's
    /// offer-less re-INVITE carried the answer to our offer.
    RefreshAnswered {
        /// The answer body.
        body: Option<Body>,
    },
    /// Our re-INVITE or UPDATE was refused; the session goes on unchanged.
    RefreshRejected {
        /// The final status.
        status: u16,
    },
    /// The peer asks us to call someone (RFC 3515 transfer). We answered 202 and sent
    /// NOTIFY 100; report the outcome with [`Call::refer_progress`].
    Refer {
        /// Whom to call.
        refer_to: Box<crate::message::NameAddr>,
        /// Who asked, if said.
        referred_by: Option<Box<crate::message::NameAddr>>,
    },
    /// The final response to our REFER (202 means the peer will try).
    ReferResult {
        /// Final status; 408 when the REFER timed out.
        status: u16,
    },
    /// A NOTIFY about our REFER: the status of the peer's call to the target.
    ReferProgress {
        /// The sipfrag status code (100, 180, 200, 486 ...).
        status: u16,
        /// The subscription ended; this is the last progress report.
        done: bool,
    },
    /// An in-dialog INFO arrived (DTMF relay, already answered 200).
    Info {
        /// The body.
        body: Option<Body>,
    },
    /// An in-dialog MESSAGE arrived (already answered 200).
    Message {
        /// The body.
        body: Option<Body>,
    },
    /// The dialog ended.
    Terminated {
        /// Why.
        reason: TerminatedReason,
    },
}

/// Misuse of the [`Call`] API or an unusable incoming INVITE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// The operation is not allowed in the current state.
    #[error("{0} not allowed in this dialog state")]
    InvalidState(&'static str),
    /// A re-INVITE or UPDATE of ours or the peer's is still pending.
    #[error("another offer/answer exchange is in progress")]
    Busy,
    /// A mandatory header of the INVITE is missing or malformed.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

/// Answers a request that names a dialog we do not have (RFC 3261 12.2.2).
///
/// Returns 481 for in-dialog requests (To tag present) other than ACK, which
/// gets no response; `None` when the request is not in-dialog.
pub fn unknown_dialog_response(req: &Request) -> Option<Response> {
    if req.method == Method::Ack {
        return None;
    }
    let to_tag = req.headers.to().ok()?.tag;
    to_tag?;
    Some(Response::from_request(
        req,
        481,
        "Call/Transaction Does Not Exist",
    ))
}
