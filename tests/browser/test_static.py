"""Static files as a deployment serves them: collectstatic's hashed, gzipped files through
WhiteNoise in front of the ASGI app, under soc_console.serve (no browser needed)."""

from __future__ import annotations

import gzip
import re

import httpx

YEAR = "max-age=315360000"


def _page_assets(live_server_url: str) -> list[str]:
    html = httpx.get(f"{live_server_url}/accounts/login/", timeout=5).text
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def test_pages_link_hashed_names_served_compressed_and_cached_for_a_year(
    live_server_url: str,
) -> None:
    assets = _page_assets(live_server_url)
    # The console's own CSS and JS, and htmx with its ws extension from django-htmx.
    assert any(re.fullmatch(r"/static/console/console\.[0-9a-f]{12}\.css", a) for a in assets)
    assert any(re.fullmatch(r"/static/console/console\.[0-9a-f]{12}\.js", a) for a in assets)
    htmx = [a for a in assets if a.startswith("/static/django_htmx/")]
    assert len(htmx) == 2, assets
    for asset in assets:
        plain = httpx.get(f"{live_server_url}{asset}", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200, asset
        assert YEAR in plain.headers["cache-control"]
        assert "immutable" in plain.headers["cache-control"]
        assert plain.headers["x-content-type-options"] == "nosniff"
        assert "content-encoding" not in plain.headers
        zipped = httpx.get(
            f"{live_server_url}{asset}", headers={"Accept-Encoding": "gzip"}, follow_redirects=False
        )
        assert zipped.headers["content-encoding"] == "gzip", asset
        assert int(zipped.headers["content-length"]) < len(plain.content)
        # httpx decodes: the bytes a browser ends with are the file's.
        assert zipped.content == plain.content
        again = httpx.get(
            f"{live_server_url}{asset}", headers={"If-None-Match": plain.headers["etag"]}
        )
        assert again.status_code == 304


def test_the_gzipped_copy_is_the_file(live_server_url: str) -> None:
    css = next(a for a in _page_assets(live_server_url) if a.endswith(".css"))
    with httpx.stream("GET", f"{live_server_url}{css}", headers={"Accept-Encoding": "gzip"}) as raw:
        body = b"".join(raw.iter_raw())
    plain = httpx.get(f"{live_server_url}{css}", headers={"Accept-Encoding": "identity"})
    assert gzip.decompress(body) == plain.content


def test_unhashed_names_are_served_briefly_cached_and_unknown_ones_reach_django(
    live_server_url: str,
) -> None:
    plain = httpx.get(f"{live_server_url}/static/console/console.css")
    assert plain.status_code == 200
    assert YEAR not in plain.headers["cache-control"]
    assert "immutable" not in plain.headers["cache-control"]
    # Not a static file: Django answers (and the API its own 404), nothing is invented.
    assert httpx.get(f"{live_server_url}/static/console/nope.css").status_code == 404
    assert httpx.get(f"{live_server_url}/api/v1/nope/").status_code == 404


def test_static_files_refuse_writes(live_server_url: str) -> None:
    response = httpx.post(f"{live_server_url}/static/console/console.css")
    assert response.status_code == 405
