-- Agnes control plane, schema 2: sources, the table registry, grants, sync jobs
-- and the publication counter the serving process watches.

CREATE TABLE sources (
    name            TEXT PRIMARY KEY,
    type            TEXT    NOT NULL,                 -- sample | csv | custom | external | keboola …
    options         TEXT    NOT NULL DEFAULT '{}',    -- JSON, non-secret options only
    schedule        TEXT,                             -- cron expression, evaluated in UTC; NULL = manual
    visible_to_all  INTEGER NOT NULL DEFAULT 0 CHECK (visible_to_all IN (0, 1)),
    origin          TEXT    NOT NULL DEFAULT 'api',   -- api | provisioning | environment | inbox
    auto_discover   INTEGER NOT NULL DEFAULT 0 CHECK (auto_discover IN (0, 1)),  -- discover on next sync, once
    last_scheduled_at TEXT,                           -- last cron tick that enqueued a sync
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

-- Secret options, encrypted with the instance key; never returned by the API.
CREATE TABLE source_secrets (
    source          TEXT NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (source, key)
);

-- The table registry: what an admin sees and edits; extracts bring the data.
CREATE TABLE registered_tables (
    id              TEXT PRIMARY KEY,                 -- '<source>.<table>'
    source          TEXT    NOT NULL REFERENCES sources(name) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    native_id       TEXT,                             -- e.g. Keboola 'in.c-crm.orders'
    description     TEXT,
    visibility      TEXT    NOT NULL DEFAULT 'inherit' CHECK (visibility IN ('inherit', 'all', 'restricted')),
    query_mode      TEXT    NOT NULL DEFAULT 'local' CHECK (query_mode IN ('local', 'remote')),
    columns         TEXT    NOT NULL DEFAULT '[]',    -- JSON [{name, type}] at registration, for drift
    edited          TEXT    NOT NULL DEFAULT '[]',    -- JSON list of fields an admin changed (never overwritten)
    registered_at   TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (source, name)
);

CREATE TABLE grants (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    target          TEXT    NOT NULL,                 -- '<source>.<table>' or '<source>.*'
    source          TEXT    NOT NULL,                 -- for cascade on source delete
    created_at      TEXT    NOT NULL,
    created_by      INTEGER,
    UNIQUE (user_id, target)
);
CREATE INDEX grants_source ON grants(source);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL DEFAULT 'sync',
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'cancelled')),
    sources         TEXT    NOT NULL,                 -- JSON list of source names
    tables          TEXT,                             -- JSON list of table names, NULL = all
    trigger         TEXT    NOT NULL DEFAULT 'api',   -- api | schedule | provisioning | inbox | cli
    requested_by    INTEGER,
    created_at      TEXT    NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    heartbeat_at    TEXT,                             -- a running job's owner refreshes this; stale = dead
    owner           TEXT,                             -- 'server:<pid>@<host>' or 'worker:<pid>@<host>'
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    log_tail        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX jobs_status ON jobs(status);

CREATE TABLE job_tables (
    job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    table_name      TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped')),
    rows            INTEGER,
    bytes           INTEGER,
    error           TEXT,
    PRIMARY KEY (job_id, source, table_name)
);

-- What each source currently serves; `serial` comes from the global counter below,
-- so a serving process that saw serial N only re-attaches sources with a higher one.
CREATE TABLE publications (
    source          TEXT PRIMARY KEY REFERENCES sources(name) ON DELETE CASCADE,
    run_id          TEXT    NOT NULL,
    previous_run_id TEXT,
    extracted_at    TEXT,
    published_at    TEXT    NOT NULL,
    serial          INTEGER NOT NULL
);

CREATE TABLE publication_counter (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    value           INTEGER NOT NULL
);
INSERT INTO publication_counter (id, value) VALUES (1, 0);
