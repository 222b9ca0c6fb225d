"""bench/instructions.py's measured children, run without callgrind: ``pytest
bench/test_instructions.py``. Each must do the requests it is told to and fail loudly on a
wrong answer (a failed request would count as a cheap one). It measures nothing."""

from __future__ import annotations

import instructions
import pytest


@pytest.mark.parametrize("unique", [False, True], ids=["same", "unique"])
def test_pycurl_perform_does_its_requests(nginx, unique):
    pytest.importorskip("pycurl", reason="pycurl is not installed (bench/requirements-peers.txt)")
    accepts = nginx.accepts()
    instructions.child("pycurl-perform", nginx.http_url + "/100b", 300, unique)
    # kept alive: at most one connection a transfer in flight (a warm-up that opens them all)
    assert nginx.accepts() - accepts <= instructions.MAP_CONCURRENCY


def test_pycurl_perform_fails_on_a_wrong_answer(nginx):
    pytest.importorskip("pycurl", reason="pycurl is not installed")
    with pytest.raises(RuntimeError, match="pycurl-perform: 0 of"):
        instructions.child("pycurl-perform", nginx.http_url + "/64k", 10, False)


@pytest.mark.parametrize("key", sorted(instructions.MAP_CLIENTS))
def test_every_map_client_does_its_requests(nginx, key, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    instructions.child(key, nginx.http_url + "/100b", 200, False)
