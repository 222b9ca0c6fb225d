"""A request fastpool refuses before sending reaches a requests user as requests' exception.

http.client lets a NUL in a header value or a space in a header name through (so stock
requests sends them); fastpool refuses them before a byte is sent. Through the adapter and the
Session the refusal is requests' ``InvalidHeader`` (or ``InvalidURL``), which is still a
``ValueError`` as before, and the connection dialed for it serves the next request.
"""

from __future__ import annotations

import pytest
import requests
import urllib3.exceptions as urllib3_exceptions

import fastpool


@pytest.fixture(params=["adapter", "session"])
def session(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "adapter":
        s = requests.Session()
        s.mount("http://", fastpool.HTTPAdapter())
    else:
        s = fastpool.Session()
    yield s
    s.close()


@pytest.mark.parametrize(
    "headers", [{"X-A": "a\x00b"}, {"X A": "b"}, {"X-A": "caf\u20ac"}], ids=["nul", "space", "utf8"]
)
def test_a_refused_header_is_requests_invalid_header(server_factory, session, headers):
    server = server_factory()
    assert session.get(server.url + "/bytes/1").status_code == 200
    with pytest.raises(requests.exceptions.InvalidHeader) as info:
        session.get(server.url + "/bytes/1", headers=headers)
    assert isinstance(info.value, ValueError)
    assert isinstance(
        info.value.__cause__ or info.value.args[0], fastpool.exceptions.InvalidRequestError
    )
    assert session.get(server.url + "/bytes/1").status_code == 200
    assert server.connections == 1


@pytest.mark.parametrize("kind", ["adapter", "session", "pm"])
def test_the_head_bounds_can_be_set_on_every_route(server_factory, kind):
    # /headers answers with 7 header lines or so: a bound of 3 refuses it, the default takes it.
    server = server_factory()
    url = server.url + "/headers"
    if kind == "pm":
        with fastpool.PoolManager() as pm:
            assert pm.request("GET", url).status == 200
        with (
            fastpool.PoolManager(max_headers=3, retries=False) as pm,
            pytest.raises(urllib3_exceptions.ProtocolError, match="max_headers=3"),
        ):
            pm.request("GET", url)
        return
    if kind == "adapter":
        s = requests.Session()
        s.mount("http://", fastpool.HTTPAdapter(max_headers=3))
    else:
        s = fastpool.Session(max_headers=3)
    with s, pytest.raises(requests.exceptions.ConnectionError, match="max_headers=3"):
        s.get(url)
