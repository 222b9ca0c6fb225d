"""A peer client in a child process (its own venv), driven by bench/peers/run.py over pipes.

``python child.py KEY`` reads one JSON object per line on stdin and answers one per line on
stdout: ``{"cmd": "open", "ca_bundle": PATH, "timeout": S}`` -> ``{"versions": {...}}``;
``{"cmd": "run", "urls": [...], "threads": N, "max_requests": N, "max_seconds": S,
"expected": BYTES}`` -> ``{"result": {...}}`` (measure.RunResult); ``{"cmd": "close"}`` ->
``{}`` and exit. An exception answers ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

# bench/ too (clients uses floor.py's exchange): run.py sets the same path for itself.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from clients import LOCAL_CLIENTS
from measure import quiet_pool_logs


def main() -> int:
    quiet_pool_logs()
    client = LOCAL_CLIENTS[sys.argv[1]]()
    for line in sys.stdin:
        message = json.loads(line)
        try:
            if message["cmd"] == "open":
                client.open(message["ca_bundle"], message["timeout"])
                versions = {**client.versions(), "python (child)": platform.python_version()}
                reply: dict[str, object] = {"versions": versions}
            elif message["cmd"] == "run":
                result = client.run(
                    message["urls"],
                    message["threads"],
                    message["max_requests"],
                    message["max_seconds"],
                    message["expected"],
                )
                reply = {"result": result.as_dict()}
            else:
                client.close()
                reply = {}
        except Exception as exc:  # noqa: BLE001 - the parent reports it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
        if message["cmd"] == "close":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
