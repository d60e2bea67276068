-- namecall directory schema (SQLite).
-- Kept close to portable SQL: a PostgreSQL variant would swap
-- INTEGER PRIMARY KEY for BIGINT GENERATED ALWAYS AS IDENTITY and drop
-- WITHOUT ROWID. Times are unix milliseconds (BIGINT).

-- One namespace for every login: a name is a user, a tenant or a system entry.
CREATE TABLE names (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'tenant', 'system')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE REFERENCES names (name),
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE tenant_subnames (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sub          TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant_id, sub)
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE REFERENCES names (name),
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT
);

CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('webrtc', 'sip', 'push')),
    push_token  TEXT,
    created_at  BIGINT NOT NULL,
    last_seen   BIGINT
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE trunks (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('registration', 'ip')),
    host          TEXT NOT NULL,
    port          INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    transport     TEXT NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls')),
    username      TEXT,
    -- stored in clear on purpose: the digest client must answer challenges
    password      TEXT,
    realm         TEXT,
    -- comma-separated IPs/CIDRs allowed to send us calls on this trunk
    allowed_peers TEXT NOT NULL DEFAULT '',
    priority      INTEGER NOT NULL DEFAULT 0,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX trunks_tenant ON trunks (tenant_id);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Search: one row per searchable entry (user, tenant, sub-name, system).
CREATE TABLE search_entries (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- normalised display name (lower-case, no diacritics, words joined by ' ')
    name_norm    TEXT NOT NULL,
    -- the entry's normalised words, space separated, for re-scoring candidates
    words        TEXT NOT NULL
);
CREATE INDEX search_entries_norm ON search_entries (name_norm);

-- word -> entries posting lists (prefix search by range on word)
CREATE TABLE search_words (
    word      TEXT NOT NULL,
    entry_id  INTEGER NOT NULL,
    PRIMARY KEY (word, entry_id)
) WITHOUT ROWID;

-- distinct words with document frequency, the unit of fuzzy matching
CREATE TABLE search_vocab (
    word  TEXT PRIMARY KEY,
    df    INTEGER NOT NULL
) WITHOUT ROWID;

-- deletion key -> vocabulary word: the word and its one-character deletions
CREATE TABLE search_grams (
    gram  TEXT NOT NULL,
    word  TEXT NOT NULL,
    PRIMARY KEY (gram, word)
) WITHOUT ROWID;
