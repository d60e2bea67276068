//! The JSON frames of the chat part of the client WebSocket protocol
//! (reference with examples: `docs/protocol.md`, section "Chat").
//!
//! Parsing happens here, once: [`ClientFrame::parse`] turns a text frame
//! into a typed frame, or into the `error` frame to answer with. Every
//! field that names a user, a conversation or a client id is validated by
//! its type's `Deserialize`.

use serde::{Deserialize, Serialize};

use crate::delivery::PresenceView;
use crate::error::ChatError;
use crate::model::{Body, ClientId, ConversationId, Login, Message, Seq, Timestamp, Visibility};
use crate::store::ConversationInfo;

/// Largest accepted text frame, in bytes (a 16 KiB text fits with room).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A frame sent by a client device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Send a message; answered by `ack` once it is durable.
    Send {
        /// Target conversation (`dm:alice+bob`, logins sorted, or a group id).
        conversation: ConversationId,
        /// Idempotency id; a retry with the same id is answered with the same `ack`.
        client_id: ClientId,
        /// The content.
        body: Body,
    },
    /// Replace the content of one's own message.
    Edit {
        /// The conversation.
        conversation: ConversationId,
        /// Idempotency id of the edit.
        client_id: ClientId,
        /// Seq of the message to edit.
        target: Seq,
        /// New content.
        body: Body,
    },
    /// Delete one's own message (a tombstone keeps its seq).
    Delete {
        /// The conversation.
        conversation: ConversationId,
        /// Idempotency id of the delete.
        client_id: ClientId,
        /// Seq of the message to delete.
        target: Seq,
    },
    /// Ask for the next page of this device's sync stream.
    Sync {
        /// Start after this cursor; omitted: the device's stored cursor.
        #[serde(default)]
        since: Option<i64>,
        /// Page size (default 100, at most 500).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The device has safely stored everything up to `cursor`.
    Ack {
        /// A cursor from `message` or `batch`.
        cursor: i64,
    },
    /// The user read a conversation up to `seq`.
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// Read up to here.
        seq: Seq,
    },
    /// The user is (or stopped) typing; refresh at least every 5 s.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// True while typing.
        on: bool,
    },
    /// History of one conversation.
    History {
        /// The conversation.
        conversation: ConversationId,
        /// Entries after this seq.
        #[serde(default)]
        after: Seq,
        /// Page size (default 100, at most 500).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Per-recipient state of one message.
    Receipts {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: Seq,
    },
    /// The user's conversations with unread counts.
    Conversations {},
    /// The current members of a conversation the user is in, with their
    /// admin flag and receipt watermarks.
    Members {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Create a group.
    GroupCreate {
        /// Idempotency id; also names the group (`g:<creator>:<client_id>`).
        client_id: ClientId,
        /// Title.
        title: String,
        /// Members besides the creator.
        members: Vec<Login>,
    },
    /// Rename a group (admins).
    GroupRename {
        /// The group.
        conversation: ConversationId,
        /// Idempotency id.
        client_id: ClientId,
        /// New title.
        title: String,
    },
    /// Add members (admins).
    GroupAdd {
        /// The group.
        conversation: ConversationId,
        /// Idempotency id.
        client_id: ClientId,
        /// Who to add.
        members: Vec<Login>,
    },
    /// Remove a member (admins).
    GroupRemove {
        /// The group.
        conversation: ConversationId,
        /// Idempotency id.
        client_id: ClientId,
        /// Who to remove.
        member: Login,
    },
    /// Make a member admin (admins).
    GroupPromote {
        /// The group.
        conversation: ConversationId,
        /// Idempotency id.
        client_id: ClientId,
        /// Who to promote.
        member: Login,
    },
    /// Leave a group.
    GroupLeave {
        /// The group.
        conversation: ConversationId,
        /// Idempotency id.
        client_id: ClientId,
    },
    /// Ask for someone's presence.
    Presence {
        /// Whose.
        login: Login,
    },
    /// Set who may see one's presence and last seen.
    Privacy {
        /// Everyone, contacts or nobody.
        visibility: Visibility,
    },
    /// Register this device's Web Push subscription (`PushSubscription`
    /// of the browser); replaces an earlier one of the device.
    PushSubscribe {
        /// The push service URL.
        endpoint: String,
        /// The browser's P-256 key, base64url.
        p256dh: String,
        /// The browser's auth secret, base64url.
        auth: String,
    },
    /// Drop this device's push subscription.
    PushUnsubscribe {},
    /// Allow or forbid a text preview in this user's notifications.
    PushPreview {
        /// True to show previews.
        on: bool,
    },
}

impl ClientFrame {
    /// Parses one text frame.
    ///
    /// # Errors
    /// The `error` frame to send back (`too_large` or `bad_frame`).
    pub fn parse(text: &str) -> Result<ClientFrame, ServerFrame> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(ServerFrame::error_code(
                "too_large",
                format!("frame larger than {MAX_FRAME_BYTES} bytes"),
                None,
            ));
        }
        serde_json::from_str(text)
            .map_err(|e| ServerFrame::error_code("bad_frame", e.to_string(), None))
    }

    /// The client id the frame carries, to echo in errors.
    pub fn client_id(&self) -> Option<&ClientId> {
        match self {
            ClientFrame::Send { client_id, .. }
            | ClientFrame::Edit { client_id, .. }
            | ClientFrame::Delete { client_id, .. }
            | ClientFrame::GroupCreate { client_id, .. }
            | ClientFrame::GroupRename { client_id, .. }
            | ClientFrame::GroupAdd { client_id, .. }
            | ClientFrame::GroupRemove { client_id, .. }
            | ClientFrame::GroupPromote { client_id, .. }
            | ClientFrame::GroupLeave { client_id, .. } => Some(client_id),
            _ => None,
        }
    }
}

/// One stored entry with its sync cursor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Cursor to `ack`.
    pub cursor: i64,
    /// The entry.
    #[serde(flatten)]
    pub message: Message,
}

/// A frame sent by the server to one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A write is durable (sent to the device that asked).
    Ack {
        /// The client id of the write.
        client_id: String,
        /// The conversation.
        conversation: ConversationId,
        /// Server-assigned seq.
        seq: Seq,
        /// Server time.
        ts: Timestamp,
        /// True when this answers a retry.
        duplicate: bool,
    },
    /// A new entry, pushed live.
    Message(Box<Entry>),
    /// A page of the sync stream.
    Batch {
        /// Entries in order.
        messages: Vec<Entry>,
        /// Cursor to `ack` after storing them.
        cursor: i64,
        /// More entries wait; send `sync` again.
        more: bool,
    },
    /// A page of one conversation's history.
    History {
        /// The conversation.
        conversation: ConversationId,
        /// Entries by seq.
        messages: Vec<Message>,
    },
    /// A member's receipt watermarks moved.
    Receipt {
        /// The conversation.
        conversation: ConversationId,
        /// Whose.
        member: Login,
        /// Delivered up to.
        delivered: Seq,
        /// Read up to.
        read: Seq,
    },
    /// The user read a conversation on another device.
    ReadElsewhere {
        /// The conversation.
        conversation: ConversationId,
        /// Read up to.
        read: Seq,
    },
    /// A message reached none of a recipient's devices in time.
    Expired {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: Seq,
        /// Who never got it.
        recipient: Login,
    },
    /// Someone started or stopped typing.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who.
        user: Login,
        /// Started (true) or stopped.
        typing: bool,
    },
    /// Per-recipient state of one message.
    Receipts {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: Seq,
        /// Recipients who read it.
        read_by: Vec<Login>,
        /// Recipients who have it, unread.
        delivered_to: Vec<Login>,
        /// Recipients who do not have it yet.
        pending: Vec<Login>,
    },
    /// The user's conversations.
    Conversations {
        /// Most recent first.
        items: Vec<ConversationItem>,
    },
    /// The current members of a conversation.
    Members {
        /// The conversation.
        conversation: ConversationId,
        /// Longest-standing first.
        members: Vec<MemberItem>,
    },
    /// Someone's presence as the viewer may see it.
    Presence {
        /// Whose.
        login: Login,
        /// What is visible.
        #[serde(flatten)]
        view: PresenceView,
    },
    /// A request without other answer succeeded.
    Ok {},
    /// A request failed; the socket stays open.
    Error {
        /// Stable code: `bad_frame`, `too_large`, `invalid`, `forbidden`,
        /// `not_found`, `client_id_reused`, `conflict`, `not_registered`, `internal`,
        /// and for company conversations `company_not_found`, `company_no_chat`,
        /// `company_unavailable`, `company_rejected`, `company_timeout`.
        code: String,
        /// Human-readable detail.
        message: String,
        /// The client id of the failed write, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

/// One line of the `members` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberItem {
    /// Who.
    pub login: Login,
    /// May rename the group and add, remove or promote members.
    pub admin: bool,
    /// Has every entry up to this seq on at least one device.
    pub delivered: Seq,
    /// Has read up to this seq.
    pub read: Seq,
}

impl From<crate::store::Member> for MemberItem {
    fn from(m: crate::store::Member) -> Self {
        Self {
            login: m.login,
            admin: m.admin,
            delivered: m.delivered,
            read: m.read,
        }
    }
}

/// One line of the `conversations` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationItem {
    /// Its id.
    pub id: ConversationId,
    /// Group title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Last visible seq.
    pub last_seq: Seq,
    /// Unread posts.
    pub unread: u64,
    /// False once left or removed.
    pub active: bool,
}

impl From<ConversationInfo> for ConversationItem {
    fn from(c: ConversationInfo) -> Self {
        Self {
            id: c.id,
            title: c.title,
            last_seq: c.last_seq,
            unread: c.unread,
            active: c.active,
        }
    }
}

impl ServerFrame {
    /// An error frame with a code.
    pub fn error_code(
        code: &str,
        message: impl Into<String>,
        client_id: Option<&ClientId>,
    ) -> Self {
        ServerFrame::Error {
            code: code.to_owned(),
            message: message.into(),
            client_id: client_id.map(|c| c.as_str().to_owned()),
        }
    }

    /// The error frame for a chat error; internals are not exposed.
    pub fn from_error(err: &ChatError, client_id: Option<&ClientId>) -> Self {
        let message = match err.code() {
            "internal" => "internal error".to_owned(),
            _ => err.to_string(),
        };
        Self::error_code(err.code(), message, client_id)
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys,
        // no custom serializers that error.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"encode failed"}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_send_and_rejects_garbage_with_codes() {
        let f = ClientFrame::parse(
            r#"{"type":"send","conversation":"dm:alice+bob","client_id":"c1","body":{"kind":"text","text":"hi"}}"#,
        )
        .unwrap();
        assert!(matches!(f, ClientFrame::Send { .. }));
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type":"nope"}"#,
            r#"{"type":"send","conversation":"dm:bob+alice","client_id":"c1","body":{"kind":"text","text":"hi"}}"#,
            r#"{"type":"send","conversation":"dm:alice+bob","client_id":"c 1","body":{"kind":"text","text":"hi"}}"#,
            r#"{"type":"read","conversation":"dm:alice+bob","seq":1,"extra":1}"#,
            r#"{"type":"presence","login":"NOT VALID"}"#,
        ] {
            match ClientFrame::parse(bad) {
                Err(ServerFrame::Error { code, .. }) => assert_eq!(code, "bad_frame", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let huge = format!(r#"{{"type":"sync","x":"{}"}}"#, "a".repeat(MAX_FRAME_BYTES));
        assert!(
            matches!(ClientFrame::parse(&huge), Err(ServerFrame::Error { code, .. }) if code == "too_large")
        );
    }

    #[test]
    fn server_frames_are_tagged_json() {
        let f = ServerFrame::Typing {
            conversation: ConversationId::parse("dm:alice+bob").unwrap(),
            user: Login::parse("alice").unwrap(),
            typing: true,
        };
        assert_eq!(
            f.to_json(),
            r#"{"type":"typing","conversation":"dm:alice+bob","user":"alice","typing":true}"#
        );
    }
}

#[cfg(test)]
mod shape_tests {
    use super::*;
    use crate::model::{Body, Payload};

    /// The `message` frame shape documented in docs/protocol.md ("Chat").
    #[test]
    fn message_frame_shape() {
        let f = ServerFrame::Message(Box::new(Entry {
            cursor: 7,
            message: Message {
                conversation: ConversationId::parse("dm:alice+bob").unwrap(),
                seq: Seq(3),
                sender: Login::parse("alice").unwrap(),
                client_id: "c1".into(),
                ts: Timestamp(5),
                payload: Some(Payload::Post {
                    body: Body::Text { text: "hi".into() },
                }),
                edited_at: None,
                deleted: false,
            },
        }));
        assert_eq!(
            f.to_json(),
            r#"{"type":"message","cursor":7,"conversation":"dm:alice+bob","seq":3,"sender":"alice","client_id":"c1","ts":5,"op":"post","body":{"kind":"text","text":"hi"}}"#
        );
    }
}
