#!/usr/bin/env bash
# Start, stop or inspect the benchmark nginx (loopback only; run dir bench/.run/nginx).
#   bench/nginx/run.sh start [--hosts N] [--workers N]   installs nginx first when missing
#   bench/nginx/run.sh stop | status
# The work is done by bench/nginx_server.py, which the bench fixtures use as well.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

if [[ "${1:-}" == "start" ]] && ! command -v nginx >/dev/null; then
    echo "nginx is missing: installing it from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
fi
exec "$python" "$here/../nginx_server.py" "$@"
