"""A dial when the process is out of file descriptors fails with urllib3's
``NewConnectionError``, as stock urllib3's does, not with a raw ``OSError`` turned into a
``ProtocolError``: at ``socket.socket()`` ("warm"), or already in ``getaddrinfo`` loading its
codec ("cold"). Each client runs in a fresh interpreter whose descriptor limit is used up on
purpose."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("resource")

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    import urllib3, fastpool
    port, client, warm = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "warm"
    if warm:
        import encodings.idna  # getaddrinfo's codec loaded: the dial fails at socket()
    manager = fastpool.PoolManager() if client == "fastpool" else urllib3.PoolManager()
    pool = manager.connection_from_url(f"http://127.0.0.1:{port}/")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # EMFILE: every descriptor is taken
    try:
        pool.request("GET", "/", retries=False, timeout=2)
        outcome = {"type": None}
    except Exception as e:
        outcome = {"type": type(e).__name__, "urllib3": isinstance(e, urllib3.exceptions.NewConnectionError),
                   "text": str(e)}
    for fd in held:
        os.close(fd)
    print(json.dumps(outcome))
    """
)


@pytest.mark.parametrize("warm", ["warm", "cold"])
@pytest.mark.parametrize("client", ["urllib3", "fastpool"])
def test_out_of_descriptors_is_a_new_connection_error(client: str, warm: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(port), client, warm],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "NewConnectionError", outcome
    assert outcome["urllib3"] is True
    assert "Too many open files" in outcome["text"], outcome
