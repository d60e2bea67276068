-- Chat store-and-forward. Plain SQL that also runs on PostgreSQL, except
-- `INTEGER PRIMARY KEY AUTOINCREMENT` (use BIGSERIAL / IDENTITY there).

CREATE TABLE chat_conversations (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,            -- 'direct' | 'group'
    title       TEXT,
    created_by  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    last_seq    BIGINT  NOT NULL DEFAULT 0   -- last assigned seq; bumped under the write lock
);

-- One row per (conversation, login) ever a member. A member sees the seqs
-- in [joined_seq, left_seq]; left_seq is NULL while they are in.
CREATE TABLE chat_members (
    conversation_id TEXT    NOT NULL REFERENCES chat_conversations(id),
    login           TEXT    NOT NULL,
    is_admin        BIGINT  NOT NULL DEFAULT 0,
    joined_seq      BIGINT  NOT NULL,
    left_seq        BIGINT,
    delivered_seq   BIGINT  NOT NULL DEFAULT 0,  -- reached at least one device up to here
    read_seq        BIGINT  NOT NULL DEFAULT 0,  -- marked read up to here
    PRIMARY KEY (conversation_id, login)
);
CREATE INDEX chat_members_login ON chat_members(login);

-- `id` is the global order used by per-device sync cursors; `seq` the
-- per-conversation order clients display.
CREATE TABLE chat_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL REFERENCES chat_conversations(id),
    seq             BIGINT  NOT NULL,
    sender          TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,     -- 'post' | 'edit' | 'delete' | 'group'
    payload         TEXT,                 -- JSON Payload; NULL for a tombstone
    ts              BIGINT  NOT NULL,
    edited_at       BIGINT,
    deleted         BIGINT  NOT NULL DEFAULT 0,
    expires_at      BIGINT                -- undelivered copies are dropped after this
);
CREATE UNIQUE INDEX chat_messages_conv_seq ON chat_messages(conversation_id, seq);
CREATE UNIQUE INDEX chat_messages_client ON chat_messages(sender, client_id);

CREATE TABLE chat_device_cursors (
    login     TEXT   NOT NULL,
    device    TEXT   NOT NULL,
    cursor    BIGINT NOT NULL,
    PRIMARY KEY (login, device)
);
