#!/bin/sh
# Container entrypoint (PID 1 is tini, which forwards SIGTERM here; we `exec`,
# so agnes itself receives it and shuts down cleanly).
#
#   serve (default)   agnes serve      - API + web UI on $AGNES_HOST:$AGNES_PORT
#   worker            agnes worker     - sync jobs from Redis (REDIS_URL)
#   fix-permissions   chown $DATA_DIR to $AGNES_UID:$AGNES_GID, then exit (run with --user 0)
#   anything else     run as given     - e.g. `agnes setup-token`, `sh`
#
# The data directory must be writable by the user agnes runs as:
# - started as root (`user: "0"`, `--user 0`): ownership is fixed, then agnes
#   runs as $AGNES_UID:$AGNES_GID (10001) - it never runs as root;
# - started as that user (the image default): a fresh named volume already
#   belongs to it; anything else is explained with the exact fix, exit 78.
set -eu

DATA_DIR=${DATA_DIR:-/data}
AGNES_UID=${AGNES_UID:-10001}
AGNES_GID=${AGNES_GID:-10001}
export DATA_DIR

log() { echo "agnes-entrypoint: $*" >&2; }

not_writable() {
  # The first path under DATA_DIR (or DATA_DIR itself) the current user cannot write, if any.
  if [ ! -w "$DATA_DIR" ]; then
    echo "$DATA_DIR"
    return
  fi
  find "$DATA_DIR" -maxdepth 3 ! -writable -print -quit 2>/dev/null
}

fix_ownership() {
  mkdir -p "$DATA_DIR"
  if [ -n "$(find "$DATA_DIR" \( ! -uid "$AGNES_UID" -o ! -gid "$AGNES_GID" \) -print -quit 2>/dev/null)" ]; then
    log "giving $DATA_DIR to uid $AGNES_UID:$AGNES_GID (it was owned by $(stat -c '%u:%g' "$DATA_DIR"))"
    chown -R "$AGNES_UID:$AGNES_GID" "$DATA_DIR"
  fi
}

explain() {
  bad=$1
  log "cannot write $bad as uid $(id -u) (owner $(stat -c '%u:%g' "$bad" 2>/dev/null || echo '?'), mode $(stat -c '%a' "$bad" 2>/dev/null || echo '?'))."
  log "hint: the host folder mounted at $DATA_DIR must belong to uid $(id -u). Either:"
  log "  sudo chown -R $(id -u):$(id -g) ./data          # on the host, for a bind mount like ./data:/data"
  log "  docker compose run --rm --user 0 app fix-permissions   # let the container fix it once"
  log "A named volume (the default in docker-compose.yml) needs neither."
  exit 78
}

[ $# -gt 0 ] || set -- serve
case "$1" in
  serve | worker) set -- agnes "$@" ;;
  fix-permissions)
    [ "$(id -u)" = 0 ] || { log "fix-permissions must run as root: docker compose run --rm --user 0 app fix-permissions"; exit 64; }
    fix_ownership
    log "done: $DATA_DIR belongs to $AGNES_UID:$AGNES_GID"
    exit 0 ;;
esac
if [ "$(id -u)" = 0 ]; then
  fix_ownership
  exec setpriv --reuid="$AGNES_UID" --regid="$AGNES_GID" --clear-groups --inh-caps=-all -- "$@"
fi
if [ "$1" = agnes ]; then  # a shell or other tool may still inspect a broken volume
  mkdir -p "$DATA_DIR" 2>/dev/null || true
  bad=$(not_writable)
  [ -z "$bad" ] || explain "$bad"
fi
exec "$@"
