"""The one error hierarchy of Agnes.

Every failure a caller can see is an `AgnesError` with a stable `code`, an
HTTP-ish `status`, a `message` saying what was wrong and a `hint` saying how
to fix it. Codes are declared once in `CATALOG` (the source of docs/errors.md)
so an AI agent can rely on them; raising an undeclared code is a bug and fails
loudly in tests.

Startup problems (bad config, newer schema, wrong key) are `StartupError`s:
they stop the process with the same message + hint instead of an HTTP answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    meaning: str
    hint: str
    where: str = "api"  # "api" (an HTTP answer), "health" (GET /api/health errors, job rows) or "startup"
    # Other HTTP statuses this code is answered with (a raise site passing status=); for a health or
    # start-up code, the statuses it is also an HTTP answer with. The catalogue test checks every site.
    also: tuple[int, ...] = ()


# 4xx statuses of the HTTP layer that api/errors.py maps to no more specific code: request_error keeps them.
_OTHER_4XX = tuple(s.value for s in HTTPStatus
                   if 400 < s.value < 500 and s.value not in (401, 403, 404, 405, 413, 415, 429))


CATALOG: dict[str, ErrorSpec] = {
    # --- generic request problems -------------------------------------------------
    "bad_request": ErrorSpec(400, "The request could not be parsed.", "Send a JSON body that matches the OpenAPI schema at /schema/openapi.json."),
    "validation_failed": ErrorSpec(400, "A field of the request is missing, unknown or of the wrong type.", "Fix the field named in the message; the schema is at /schema/openapi.json."),
    "not_found": ErrorSpec(404, "No such route or resource.", "Check the path and id; GET /schema/openapi.json lists every route."),
    "method_not_allowed": ErrorSpec(405, "The route exists but not for this HTTP method.", "Use one of the methods in the Allow header."),
    "payload_too_large": ErrorSpec(413, "The request body is larger than allowed.", "Send a smaller body or split the upload; the limits are AGNES_MAX_REQUEST_BODY_MB and, for POST /api/admin/uploads, AGNES_MAX_UPLOAD_MB."),
    "unsupported_media_type": ErrorSpec(415, "The request body has a content type this route does not accept.", "Send Content-Type: application/json (or multipart/form-data for uploads)."),
    "request_error": ErrorSpec(400, "The request was refused by the HTTP layer with a status that has no more specific code; the answer keeps that status.", "Read the message; the route's documentation is at /schema/openapi.json.", also=_OTHER_4XX),
    "internal_error": ErrorSpec(500, "An unexpected server error.", "Retry once; if it persists, read GET /api/health and the server log (error id in the message)."),
    # --- setup ----------------------------------------------------------------------
    "setup_required": ErrorSpec(503, "The instance has no users yet; only setup routes answer.", "Bootstrap the first admin: POST /auth/bootstrap with {email, password, setup_token}; read the token with `agnes setup-token` (or `docker compose exec app agnes setup-token`)."),
    "invalid_setup_token": ErrorSpec(403, "The setup token is missing or wrong.", "Read the token with `agnes setup-token` (or state/setup-token in the data directory, or the server log) and send it as setup_token or the X-Setup-Token header."),
    "already_bootstrapped": ErrorSpec(409, "The first admin already exists; bootstrap works only once.", "Log in with POST /auth/token {email, password}; an admin can add users with POST /api/users. A locked-out admin runs `agnes users reset-password EMAIL`."),
    "not_ready": ErrorSpec(503, "The control plane is still being migrated.", "Wait a few seconds and retry; GET /api/health shows when it is ready."),
    # --- auth -----------------------------------------------------------------------
    "not_authenticated": ErrorSpec(401, "No valid credentials were sent.", "Send Authorization: Bearer <token>; get one with POST /auth/token {email, password} or create an API token with POST /api/tokens."),
    "invalid_token": ErrorSpec(401, "The bearer token is malformed, expired, revoked or its user is inactive.", "Get a fresh token with POST /auth/token {email, password}."),
    "invalid_credentials": ErrorSpec(401, "401: email or password is wrong, or the account is inactive (POST /auth/token). 400: a data source refused the credentials sent with POST /api/admin/configure (e.g. Keboola refused the Storage API token); the message names the source.", "Login (401): check the email and password; an admin can reset a password with PATCH /api/users/{id} {password}, or on the server `agnes users reset-password EMAIL`. Configure (400): send a valid token in the body (keboola_token) or fix KEBOOLA_STORAGE_TOKEN in the server environment, as the error's own hint says.", also=(400,)),
    "too_many_attempts": ErrorSpec(429, "Too many failed logins for this account from this address.", "Wait the number of seconds in the Retry-After header, then retry with the right password."),
    "forbidden": ErrorSpec(403, "Your role does not allow this.", "Ask an admin for a role with this permission (PATCH /api/users/{id} {role})."),
    "weak_password": ErrorSpec(400, "The password does not meet the password policy.", "Send a longer password (at least AGNES_MIN_PASSWORD_LENGTH characters, 12 by default) that is not all one character class, in the same call (POST /auth/bootstrap, POST /api/users or PATCH /api/users/{id})."),
    "invalid_email": ErrorSpec(400, "The email address is not valid.", "Send email as an address like name@example.com in the same call (POST /auth/bootstrap, POST /auth/token or POST /api/users)."),
    "invalid_role": ErrorSpec(400, "The role is not one of admin, analyst, viewer.", "Send role as one of: admin, analyst, viewer (POST /api/users or PATCH /api/users/{id})."),
    # --- users and tokens -------------------------------------------------------------
    "user_exists": ErrorSpec(409, "A user with this email already exists.", "Use another email, or change the existing user with PATCH /api/users/{id}."),
    "user_not_found": ErrorSpec(404, "No user has this id (or email).", "List users with GET /api/users."),
    "last_admin": ErrorSpec(409, "This would leave the instance without an active admin.", "Create or promote another admin first (POST /api/users or PATCH /api/users/{id} {role: admin})."),
    "token_not_found": ErrorSpec(404, "No API token of yours has this id.", "List your tokens with GET /api/tokens."),
    "empty_update": ErrorSpec(400, "The update named no field to change.", "Send at least one of the fields the route documents (GET /schema/openapi.json), e.g. PATCH /api/users/{id} {\"role\": \"analyst\"}."),
    # --- sync jobs --------------------------------------------------------------------
    "source_not_found": ErrorSpec(404, "No source has this name.", "List sources with GET /api/admin/sources, or add one with POST /api/admin/configure {data_source, name?}."),
    "no_sources": ErrorSpec(400, "No source is configured yet, so there is nothing to sync.", "Configure one with POST /api/admin/configure {data_source: 'sample'} (or the setup wizard), then trigger again."),
    "source_not_syncable": ErrorSpec(400, "This source has no connector to run: an external (Tier B) source is published when a run arrives in its inbox.", "Drop the run into $DATA_DIR/inbox/NAME/ and create READY last; trigger only sources that have a connector (GET /api/admin/sources)."),
    "tables_need_source": ErrorSpec(400, "`tables` was given without `source`.", "Name the source the tables belong to: POST /api/sync/trigger {source: 'NAME', tables: ['t1', ...]}, or drop `tables` to sync everything."),
    "job_not_found": ErrorSpec(404, "No job has this id.", "List jobs with GET /api/sync/jobs (newest first)."),
    "job_finished": ErrorSpec(409, "The job has already finished; only queued or running jobs can be cancelled.", "Read its outcome with GET /api/sync/jobs/{id}; start a new sync with POST /api/sync/trigger."),
    "queue_unavailable": ErrorSpec(503, "The job queue (Redis) cannot be reached, so the job was not queued.", "Check that Redis runs and REDIS_URL points at it (`docker compose ps`), then trigger again; unset REDIS_URL to run jobs inside the server."),
    # --- sync outcomes (health errors, never HTTP) -------------------------------------
    "sync_failed": ErrorSpec(500, "A sync of this source failed; the previously published data keeps serving.", "Read the job's error and log_tail (GET /api/sync/jobs?source=NAME), fix the cause (credentials, connector), then POST /api/sync/trigger {source: NAME}.", where="health"),
    "extract_invalid": ErrorSpec(500, "The connector's output broke the extract contract, so it was not published.", "Fix each violation named in the job error (run `agnes contract check PATH` on the connector's output), then sync again.", where="health"),
    "sync_interrupted": ErrorSpec(500, "The process running a sync stopped (killed, crashed or restarted) before it finished.", "Nothing half-written was published; trigger the sync again with POST /api/sync/trigger and check the server/worker logs for why it stopped.", where="health"),
    "schedule_invalid": ErrorSpec(500, "A source's cron schedule cannot be parsed, so it does not run.", "Fix it with PATCH /api/admin/sources/{name} {schedule: '0 3 * * *'} (five fields, UTC), or set schedule to null.", where="health"),
    # --- sources, table registry, uploads -----------------------------------------------
    "unsupported_data_source": ErrorSpec(400, "The data_source type is not one Agnes can configure.", "Send data_source as one of the types listed in the message to POST /api/admin/configure, e.g. {\"data_source\": \"sample\"}."),
    "invalid_source_name": ErrorSpec(400, "The source name breaks the naming rules.", "Use a lowercase name matching ^[a-z][a-z0-9_]{0,62}$ that is not a DuckDB keyword, e.g. POST /api/admin/configure {\"data_source\": \"csv\", \"name\": \"sales_csv\"}."),
    "unknown_option": ErrorSpec(400, "The body has a field this source type does not know.", "Remove the field named in the message from the POST /api/admin/configure body; the message lists the options this type accepts."),
    "invalid_option": ErrorSpec(400, "An option of the source is missing or has a wrong type or value.", "Fix the option named in the message as described there, then send POST /api/admin/configure again."),
    "missing_credentials": ErrorSpec(400, "A secret this source type needs was not given.", "Pass it in the body of POST /api/admin/configure, or set the environment variable named in the message on the server."),
    "source_type_conflict": ErrorSpec(409, "A source with this name exists and has another data_source type.", "Pick another name, or delete the existing source first (DELETE /api/admin/sources/{name}?confirm={name})."),
    "source_check_failed": ErrorSpec(400, "The live check of the source's configuration failed; nothing was stored.", "Fix the problem named in the message, then send the same POST /api/admin/configure again (nothing was stored)."),
    "connector_not_found": ErrorSpec(400, "The connector folder of this source does not exist or has no extractor.py.", "Put the connector folder (with extractor.py) in the custom connectors directory named in the message (AGNES_CUSTOM_CONNECTORS_DIR; /app/connectors/custom in the image), or fix the `connector` option of POST /api/admin/configure."),
    "invalid_schedule": ErrorSpec(400, "The schedule is not a valid cron expression.", "Send schedule as five cron fields in UTC (POST /api/admin/configure or PATCH /api/admin/sources/{name}), e.g. \"0 3 * * *\" (every day 03:00 UTC) or \"*/30 * * * *\", or null to sync only on demand."),
    "confirmation_required": ErrorSpec(400, "Deleting needs the name repeated in ?confirm= to prevent accidents.", "Repeat the call with the name again: DELETE /api/admin/sources/{name}?confirm={name}."),
    "source_busy": ErrorSpec(409, "A sync of this source is queued or running.", "Wait for the job to finish (GET /api/sync/jobs/{id}) or cancel it (POST /api/sync/jobs/{id}/cancel), then retry."),
    "nothing_to_roll_back": ErrorSpec(409, "The source has no previous run to serve again: it published only once, or its previous run is missing on disk or no longer valid.", "Check what is served with GET /api/admin/sources; publish a good run with POST /api/sync/trigger {\"source\": NAME} instead (a rollback goes back exactly one publication)."),
    "table_not_found": ErrorSpec(404, "No registered table has this id.", "Table ids are <source>.<table>; list them with GET /api/admin/tables?source=NAME, or register tables with POST /api/admin/discover-and-register."),
    "invalid_csv": ErrorSpec(400, "The uploaded file is not a usable CSV file; nothing was stored or changed.", "Fix the file at the line named in the message (UTF-8 text, one header row with unique names, the same number of fields on every row) and upload it again with POST /api/admin/uploads?source=NAME."),
    "wrong_source_type": ErrorSpec(400, "This operation does not apply to the source's type.", "Use a source of the type named in the message, e.g. create one with POST /api/admin/configure {\"data_source\": \"csv\"}."),
    "extract_attach_failed": ErrorSpec(500, "A published extract could not be attached to the serving catalog; the previous run (if any) is still served.", "Run `agnes contract check` on the run folder named in the message, fix the connector, then POST /api/sync/trigger {\"source\": NAME}.", where="health"),
    # --- permissions, catalog, query, downloads ------------------------------------------
    "grant_not_found": ErrorSpec(404, "This user has no grant on this target.", "List grants with GET /api/admin/grants?user_id=ID; grant with POST /api/admin/grants {user_id, target}."),
    "invalid_grant_target": ErrorSpec(400, "A grant target is '<source>.<table>' or '<source>.*' of an existing source and table.", "Send target like \"sample.orders\" or \"sample.*\"; list tables with GET /api/admin/tables and sources with GET /api/admin/sources."),
    "query_syntax": ErrorSpec(400, "The SQL could not be parsed.", "Fix the SQL near the position named in the message (DuckDB's SQL dialect) and send POST /api/query again; GET /api/catalog/tables lists the tables you may read."),
    "multiple_statements": ErrorSpec(400, "More than one SQL statement was sent.", "Send exactly one SELECT statement per POST /api/query, without a second ';'."),
    "query_too_long": ErrorSpec(413, "The SQL text is too long or nested too deeply.", "Send shorter SQL to POST /api/query: filter with WHERE or join a table instead of long literal lists."),
    "query_too_complex": ErrorSpec(400, "The SQL has too many parts (parse nodes, CTEs) to check safely.", "Simplify the query sent to POST /api/query: fewer WITH clauses and expressions; filter with WHERE or join a table instead of long literal lists."),
    "query_not_allowed": ErrorSpec(403, "Only read-only SELECT queries over catalog tables are allowed.", "Write one SELECT (or WITH … SELECT, VALUES, FROM t) over tables listed by GET /api/catalog/tables."),
    "function_not_allowed": ErrorSpec(403, "The query uses a function that is unknown or not allowed (it would read files, settings or the catalog).", "Use DuckDB's built-in scalar, aggregate and window functions; read tables by id (FROM source.table, as listed by GET /api/catalog/tables)."),
    "query_timeout": ErrorSpec(408, "The query ran longer than the time limit and was stopped.", "Filter earlier (WHERE), aggregate, or add LIMIT; for large exports download the table (GET /api/data/{id}/download) and query it locally."),
    "query_busy": ErrorSpec(503, "Too many queries are running on this instance right now.", "Retry after the number of seconds in the Retry-After header."),
    "query_failed": ErrorSpec(422, "DuckDB could not run the query (a binder or run-time error).", "Fix the column, type or function named in the message; GET /api/catalog/tables/{id} lists a table's columns and types."),
    "query_out_of_memory": ErrorSpec(422, "The query needed more memory than this instance allows.", "Aggregate or filter earlier, select fewer columns, or add LIMIT; for big data download the table (GET /api/data/{id}/download) and query it locally. The limit is AGNES_QUERY_MEMORY_LIMIT."),
    "query_cancelled": ErrorSpec(503, "The query was cancelled before it finished (the server is stopping or the request went away).", "Send the query again (POST /api/query); if the server was stopping, wait until GET /api/health answers."),
    "catalog_loading": ErrorSpec(503, "The serving catalog is still loading after a start.", "Retry in a few seconds; GET /api/health shows `catalog` ok when it is ready."),
    "not_acceptable": ErrorSpec(406, "The Accept header names no format this route can answer in.", "Send Accept: application/json (default), application/vnd.apache.arrow.stream or text/csv."),
    "format_unsupported": ErrorSpec(400, "The result has column types the requested format cannot hold.", "Cast the named columns in SQL (e.g. to_json(col) or col::VARCHAR), or ask for JSON or Arrow (Accept: application/json or application/vnd.apache.arrow.stream)."),
    "table_is_remote": ErrorSpec(409, "This table is served from a remote database and has no local data to download.", "Query it with POST /api/query {sql: \"SELECT … FROM source.table\"} instead."),
    "data_unavailable": ErrorSpec(503, "The table's published data changed while it was being read.", "Retry the download; GET /api/data/manifest shows the current version."),
    # --- startup (never HTTP) ---------------------------------------------------------
    "config_invalid": ErrorSpec(500, "The configuration file or an environment variable is invalid.", "Fix the file, line and key named in the message (every key is documented in config/instance.yaml.example) or unset the environment variable named there, then run `agnes serve` again.", where="startup"),
    "schema_too_new": ErrorSpec(500, "The control plane was migrated by a newer Agnes.", "Run the newer image again, or restore the backup from $DATA_DIR/state/backups/ taken before that upgrade.", where="startup"),
    "migration_failed": ErrorSpec(500, "A control-plane migration failed and was rolled back.", "Keep the data directory ($DATA_DIR) as it is and report the message; the database stays at the version named, and a backup from before the attempt is in $DATA_DIR/state/backups/.", where="startup"),
    "secret_too_short": ErrorSpec(500, "A configured secret is shorter than 32 bytes.", "Generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`, or unset the variable to let Agnes create and keep one in state/.", where="startup"),
    "encryption_key_mismatch": ErrorSpec(500, "The encryption key differs from the one the stored credentials were encrypted with.", "Restore the previous AGNES_ENCRYPTION_KEY (or state/.encryption_key), or run `agnes secrets reset-encryption-key` and re-enter source credentials with POST /api/admin/configure.", where="startup", also=(500,)),
    "data_dir_unusable": ErrorSpec(500, "The data directory cannot be created or written: at start-up, or (HTTP 500) when a configuration change cannot write its export into it, so the change was not applied.", "Point DATA_DIR at a writable folder with free space, or fix ownership (the container runs as uid 10001), then restart or repeat the call.", where="startup", also=(500,)),
}


class AgnesError(Exception):
    """A failure with a stable code, an explanation and a fix."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        hint: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        spec = CATALOG.get(code)
        if spec is None:
            raise KeyError(f"error code {code!r} is not declared in agnes.errors.CATALOG")
        self.code = code
        self.status = status or spec.status
        self.message = message or spec.meaning
        self.hint = hint or spec.hint
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message} (hint: {self.hint})"


class StartupError(AgnesError):
    """Raised before serving: the process prints it and exits non-zero."""
