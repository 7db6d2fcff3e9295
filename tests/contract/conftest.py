from __future__ import annotations

# The contract run fuzzes the same live server the browser tests drive.
from tests.browser.conftest import live_server_url  # noqa: F401
