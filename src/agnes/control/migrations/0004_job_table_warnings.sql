-- Agnes control plane, schema 4: warnings on a table's sync outcome (e.g. values that
-- do not parse under a column's declared type, kept as text), so they stay with the
-- job instead of scrolling out of its log tail. A JSON array of strings; NULL = none.

ALTER TABLE job_tables ADD COLUMN warnings TEXT;
