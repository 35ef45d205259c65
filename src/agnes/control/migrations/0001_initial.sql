-- Agnes control plane, schema 1: identity, tokens, audit, settings, health errors.
-- Timestamps are UTC ISO-8601 text ('2026-12-04T16:39:40.123Z').

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    last_login_at   TEXT
);

CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    prefix          TEXT    NOT NULL,
    token_hash      TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL,
    expires_at      TEXT,
    last_used_at    TEXT,
    revoked_at      TEXT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              TEXT    NOT NULL,
    actor_user_id   INTEGER,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT,
    detail          TEXT    NOT NULL DEFAULT '{}',
    ip              TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);

-- Instance-wide key/value facts: setup token hash, encryption key fingerprint …
CREATE TABLE settings (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Failed logins per (account, client address), for back-off without lock-out.
CREATE TABLE login_failures (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failed_at  REAL    NOT NULL,
    blocked_until   REAL    NOT NULL
);

-- Errors shown by /api/health until resolved (a failed sync, a bad extract …).
CREATE TABLE health_errors (
    id              INTEGER PRIMARY KEY,
    at              TEXT    NOT NULL,
    code            TEXT    NOT NULL,
    source          TEXT,
    message         TEXT    NOT NULL,
    resolved_at     TEXT
);
CREATE INDEX health_errors_open ON health_errors(resolved_at);
