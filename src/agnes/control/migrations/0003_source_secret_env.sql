-- Agnes control plane, schema 3: remember which environment variable a stored
-- secret came from (provisioning `${ENV}` or a server-env fallback), so the
-- non-secret export writes the same `${ENV}` reference back instead of a guess.

ALTER TABLE source_secrets ADD COLUMN env_ref TEXT;
