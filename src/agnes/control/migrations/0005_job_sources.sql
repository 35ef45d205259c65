-- Agnes control plane, schema 5: each source's own outcome in a sync job, so a
-- source's status (GET /api/admin/sources) is its own - not the whole job's -
-- and a source deleted and created again starts as never_synced.
-- status: succeeded | partial | failed | cancelled | skipped.

CREATE TABLE job_sources (
    job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('succeeded', 'partial', 'failed', 'cancelled', 'skipped')),
    error           TEXT,
    PRIMARY KEY (job_id, source)
);
CREATE INDEX job_sources_source ON job_sources(source);
