-- Web Push subscriptions, one per (login, device): a browser re-subscribing
-- replaces its row. Keys are stored base64url as the client sent them.
CREATE TABLE chat_push_subscriptions (
    login       TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    p256dh      TEXT    NOT NULL,
    auth        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (login, device)
);
CREATE INDEX chat_push_subscriptions_endpoint ON chat_push_subscriptions(endpoint);

-- Per-user push settings; no row means the defaults (no previews).
CREATE TABLE chat_push_settings (
    login       TEXT    PRIMARY KEY,
    preview     BIGINT  NOT NULL DEFAULT 0
);
