CREATE TABLE _meta (
  table_name   VARCHAR NOT NULL,   -- also the view name inside extract.duckdb
  description  VARCHAR,
  rows         BIGINT,
  size_bytes   BIGINT,
  extracted_at TIMESTAMP,          -- when the data was pulled (freshness = this)
  query_mode   VARCHAR DEFAULT 'local'   -- 'local' | 'remote'
);
