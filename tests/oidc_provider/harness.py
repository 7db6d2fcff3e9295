"""Starts the test OpenID Connect provider as a process of its own and changes its users."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = Path(__file__).resolve().parents[2]
CLIENT_ID = "soc-console"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"  # noqa: S105


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Provider:
    url: str
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log: Path | None = None

    def wait_ready(self) -> None:
        """Until the provider answers its discovery document (its database is then ready)."""
        assert self.process is not None
        deadline = time.monotonic() + 30
        discovery = f"{self.url}/o/.well-known/openid-configuration"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the test provider exited: see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(discovery, timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test provider did not start in 30 s: see {self.log}")
            time.sleep(0.1)

    def run(self, *argv: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "tests.oidc_provider", *argv],
            cwd=PROJECT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def register_client(self, redirect_uri: str) -> None:
        client = {"id": CLIENT_ID, "secret": CLIENT_SECRET, "redirect_uri": redirect_uri}
        self.run("apply", json.dumps({"client": client}))

    def set_users(self, users: dict[str, tuple[str, list[str]]]) -> None:
        """Each user's password and exactly these groups at the provider."""
        spec = {name: {"password": pw, "groups": groups} for name, (pw, groups) in users.items()}
        self.run("apply", json.dumps({"users": spec}))

    def console_env(self, role_map: str) -> dict[str, str]:
        """The console's settings for signing in through this provider."""
        return {
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.url}/o/authorize/",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.url}/o/token/",
            "OIDC_OP_USER_ENDPOINT": f"{self.url}/o/userinfo/",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.url}/o/.well-known/jwks.json",
            "OIDC_OP_ISSUER": f"{self.url}/o",
            "OIDC_RP_SCOPES": "openid profile email groups",
            "OIDC_ROLE_MAP": role_map,
            "OIDC_PROVIDER_NAME": "Test IdP",
        }


@contextlib.contextmanager
def running(directory: Path, *, wait: bool = True) -> Iterator[Provider]:
    """The provider on a free loopback port, with a new RSA signing key and database in
    `directory`; its log is directory/provider.log. With wait=False it is still starting:
    call wait_ready() before using it (meanwhile the caller may start something else)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = directory / "provider-key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "PROVIDER_DATABASE": str(directory / "provider.sqlite3"),
        "PROVIDER_RSA_KEY_FILE": str(key_file),
    }
    port = _free_port()
    provider = Provider(url=f"http://127.0.0.1:{port}", env=env)
    with open(directory / "provider.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider", "serve", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    provider.process = server
    provider.log = directory / "provider.log"
    try:
        if wait:
            provider.wait_ready()
        yield provider
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
