#!/usr/bin/env bash
# Post-deploy smoke test of one Agnes instance (used by .github/workflows/smoke-test.yml).
#   scripts/smoke-test.sh HOST:PORT|URL
# Credentials from the environment: AGNES_SMOKE_TOKEN (an admin API token), or
# AGNES_SMOKE_EMAIL + AGNES_SMOKE_PASSWORD. Optional: AGNES_SMOKE_REPORT (JSON
# report file, default smoke-report.json), AGNES_SMOKE_SYNC_TIMEOUT (s, 300).
# Exit 0 passed, 1 a step failed (named on stderr), 2 usage.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 HOST:PORT|URL   (credentials: AGNES_SMOKE_TOKEN, or AGNES_SMOKE_EMAIL + AGNES_SMOKE_PASSWORD)" >&2
  exit 2
fi
target=$1
case "$target" in
  http://*|https://*) url=$target ;;
  *) url="http://$target" ;;
esac

if command -v agnes >/dev/null 2>&1; then
  agnes=(agnes)
else
  agnes=(python3 -m agnes)  # a checkout with the package installed but no script on PATH
fi

args=(smoke "$url" --report "${AGNES_SMOKE_REPORT:-smoke-report.json}" --sync-timeout "${AGNES_SMOKE_SYNC_TIMEOUT:-300}")
if [ -z "${AGNES_SMOKE_TOKEN:-}" ]; then
  if [ -z "${AGNES_SMOKE_EMAIL:-}" ] || [ -z "${AGNES_SMOKE_PASSWORD:-}" ]; then
    echo "error: set AGNES_SMOKE_TOKEN, or AGNES_SMOKE_EMAIL and AGNES_SMOKE_PASSWORD" >&2
    echo "hint: an admin API token is best: POST /api/tokens on the instance" >&2
    exit 2
  fi
  args+=(--email "$AGNES_SMOKE_EMAIL")  # the password is read from AGNES_SMOKE_PASSWORD, never argv
fi
exec "${agnes[@]}" "${args[@]}"
