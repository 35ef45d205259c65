#!/opt/venv/bin/python
"""Container HEALTHCHECK: exit 0 when GET /api/health answers 200 (healthy or degraded), else 1.

Standard library only and a short timeout, so a hung server is reported
unhealthy instead of hanging the check. AGNES_HEALTH_URL overrides the URL.
"""

import os
import sys
import urllib.error
import urllib.request

url = os.environ.get("AGNES_HEALTH_URL") or f"http://127.0.0.1:{os.environ.get('AGNES_PORT') or '8000'}/api/health"
try:
    with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 - a fixed local http URL
        status = resp.status
except urllib.error.HTTPError as exc:
    status = exc.code
except (OSError, ValueError) as exc:
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"{url}: HTTP {status}")
sys.exit(0 if status == 200 else 1)
