CREATE TABLE _remote_attach (      -- optional: remote (pass-through) tables
  alias     VARCHAR,   -- ATTACH alias used by the views, e.g. 'kbc', 'pg'
  extension VARCHAR,   -- DuckDB extension, e.g. 'postgres', 'bigquery'
  url       VARCHAR,   -- connection string, without the secret
  token_env VARCHAR    -- NAME of the env var that holds the secret, never the secret
);
