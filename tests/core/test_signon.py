"""Single sign-on's rules without the browser: the role map, the roles a sign-in sets, the
ID token's checks, the sign-in page with passwords off, and the settings it refuses.
tests/browser/test_sso.py signs in through a real provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import SuspiciousOperation
from django.test import Client, RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from approvals import accounts
from approvals.oidc import ConsoleOIDCBackend
from audit.models import AuditEvent
from soc_console import roles
from tests import factories

ROLE_MAP = roles.parse_role_map("soc-analysts=analyst,soc-leads=senior_analyst,soc-leads=analyst")

# Group names as providers write them, commas and `=` included (LDAP distinguished names).
group_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda name: name.strip() == name and name != "")
role_maps = st.dictionaries(
    group_names, st.frozensets(st.sampled_from(roles.ALL), min_size=1), min_size=1, max_size=6
)


@given(mapping=role_maps, claim=st.lists(group_names, max_size=8))
def test_a_claim_gives_only_the_roles_its_mapped_groups_name(
    mapping: roles.RoleMap, claim: list[str]
) -> None:
    given_roles = roles.from_claim(claim, mapping)
    expected: set[str] = set()
    for group in claim:
        expected |= mapping.get(group, frozenset())
    assert given_roles == expected
    assert given_roles <= set(roles.ALL)


@given(mapping=role_maps, claim=st.lists(group_names, max_size=8), extra=st.lists(group_names))
def test_groups_the_map_does_not_name_never_add_a_role(
    mapping: roles.RoleMap, claim: list[str], extra: list[str]
) -> None:
    unmapped = [group for group in extra if group not in mapping]
    assert roles.from_claim(claim + unmapped, mapping) == roles.from_claim(claim, mapping)


@given(
    mapping=role_maps,
    value=st.one_of(
        st.none(),
        st.integers(),
        st.booleans(),
        st.dictionaries(group_names, group_names),
        st.lists(st.lists(group_names, min_size=1), min_size=1),
    ),
)
def test_a_claim_of_an_unexpected_shape_gives_no_role(mapping: roles.RoleMap, value: Any) -> None:
    assert roles.from_claim(value, mapping) == frozenset()


@given(mapping=role_maps)
def test_the_role_map_reads_back_as_written_in_json(mapping: roles.RoleMap) -> None:
    written = json.dumps({group: sorted(given) for group, given in mapping.items()})
    assert roles.parse_role_map(written) == mapping


@given(
    mapping=role_maps.filter(
        lambda m: (
            all("," not in g and "=" not in g for g in m) and not next(iter(m)).startswith("{")
        )
    )
)
def test_the_role_map_reads_back_as_written_in_pairs(mapping: roles.RoleMap) -> None:
    written = ",".join(f"{group}={role}" for group, given in mapping.items() for role in given)
    assert roles.parse_role_map(written) == mapping


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("soc=analysts", "'analysts' (for 'soc') is not a role"),
        ("soc", "'soc' is not group=role"),
        ("=analyst", "'=analyst' is not group=role"),
        ("", "it maps no group to a role"),
        ('{"soc": 3}', "'soc' must map to a role or a list of roles"),
        ("{soc", "not valid JSON"),
    ],
)
def test_a_role_map_that_cannot_be_read_names_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        roles.parse_role_map(raw)


def _apply(username: str, groups: list[str]) -> accounts.SigninResult:
    return accounts.signin_roles_apply(
        username=username,
        email=f"{username}@corp.example",
        roles_given=roles.from_claim(groups, ROLE_MAP),
        provider_groups=groups,
    )


def _roles_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


@pytest.mark.django_db
def test_first_sign_in_creates_the_user_with_the_mapped_roles_and_no_password() -> None:
    result = _apply("dana", ["soc-leads", "everyone"])
    assert result.user is not None and result.refusal == ""
    assert _roles_of("dana") == {"analyst", "senior_analyst"}
    assert not result.user.has_usable_password()
    [event] = AuditEvent.objects.filter(event_type="role.synced")
    assert event.actor == "dana"
    assert event.data == {
        "user": "dana",
        "roles": ["analyst", "senior_analyst"],
        "granted": ["analyst", "senior_analyst"],
        "revoked": [],
        "source": "oidc",
    }


@pytest.mark.django_db
def test_the_same_groups_again_change_nothing_and_record_nothing() -> None:
    _apply("dana", ["soc-analysts"])
    _apply("dana", ["soc-analysts", "everyone"])
    assert AuditEvent.objects.filter(event_type="role.synced").count() == 1


@pytest.mark.django_db
def test_roles_follow_the_groups_and_a_role_granted_here_by_hand_is_taken_away() -> None:
    factories.user("erin", roles.MANAGER, "on-call")
    result = _apply("erin", ["soc-analysts"])
    assert result.user is not None
    assert _roles_of("erin") == {"analyst", "on-call"}  # a group that is no role is left alone
    event = AuditEvent.objects.get(event_type="role.synced")
    assert event.data["granted"] == ["analyst"] and event.data["revoked"] == ["manager"]
    assert roles.names(result.user) == {"analyst", "on-call"}


@pytest.mark.django_db
def test_no_mapped_group_refuses_a_new_user_and_creates_nobody() -> None:
    result = _apply("frank", ["marketing"])
    assert result.user is None and result.refusal == "no_role"
    assert not User.objects.filter(username="frank").exists()
    [event] = AuditEvent.objects.filter(event_type="signin.refused")
    assert event.data["reason"] == "no_role"
    assert event.data["provider_groups"] == ["marketing"]


@pytest.mark.django_db
def test_a_user_out_of_every_mapped_group_loses_every_role_and_is_refused() -> None:
    _apply("gwen", ["soc-leads"])
    result = _apply("gwen", [])
    assert result.user is None and result.refusal == "no_role"
    assert _roles_of("gwen") == set()
    refused = AuditEvent.objects.get(event_type="signin.refused")
    assert refused.data["revoked"] == ["analyst", "senior_analyst"]


@pytest.mark.django_db
def test_a_user_disabled_here_is_refused_whatever_the_provider_says() -> None:
    factories.user("hal", roles.ANALYST)
    User.objects.filter(username="hal").update(is_active=False)
    result = _apply("hal", ["soc-analysts"])
    assert result.user is None and result.refusal == "inactive"


# The ID token: only one meant for this console, from the configured issuer.

ISSUER = "https://idp.corp.example"


@pytest.fixture
def oidc_backend(settings: Any) -> ConsoleOIDCBackend:
    settings.OIDC_RP_CLIENT_ID = "soc-console"
    settings.OIDC_RP_CLIENT_SECRET = "secret"  # noqa: S105
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{ISSUER}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{ISSUER}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{ISSUER}/jwks"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_OP_ISSUER = ISSUER
    return ConsoleOIDCBackend()


SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _id_token(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "soc-console", "sub": "42", "iat": now, "exp": now + 300}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SIGNING_KEY, "RS256")


def test_an_id_token_for_this_console_from_its_issuer_is_accepted(
    oidc_backend: ConsoleOIDCBackend,
) -> None:
    payload = oidc_backend._verify_jws(_id_token(), SIGNING_KEY.public_key())
    assert payload["sub"] == "42"


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-client"},
        {"aud": None},
        {"iss": "https://evil.example"},
        {"exp": int(time.time()) - 600},
    ],
    ids=["other audience", "no audience", "other issuer", "expired"],
)
def test_an_id_token_for_another_client_or_issuer_is_refused(
    oidc_backend: ConsoleOIDCBackend, claims: dict[str, Any]
) -> None:
    with pytest.raises(SuspiciousOperation, match="ID token refused"):
        oidc_backend._verify_jws(_id_token(**claims), SIGNING_KEY.public_key())


def test_an_id_token_signed_by_another_key_is_refused(oidc_backend: ConsoleOIDCBackend) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SuspiciousOperation):
        oidc_backend._verify_jws(_id_token(), other.public_key())


@pytest.mark.django_db
def test_an_address_locked_out_cannot_sign_in_through_the_provider_either(
    oidc_backend: ConsoleOIDCBackend, settings: Any
) -> None:
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "approvals.oidc.ConsoleOIDCBackend",
    ]
    # Nothing listens there: a sign-in that got as far as the provider would raise.
    settings.OIDC_OP_TOKEN_ENDPOINT = "http://127.0.0.1:9/token"
    factories.user("alice")
    address = "203.0.113.9"
    for n in range(django_settings.AXES_FAILURE_LIMIT):
        page = Client(REMOTE_ADDR=address).post(
            "/accounts/login/", {"username": "alice", "password": f"guess-{n}"}
        )
    # The lockout page still offers what the sign-in page does.
    assert page.status_code == 429 and b'name="password"' in page.content
    callback = RequestFactory().get(
        "/oidc/callback/", {"code": "a-code", "state": "a-state"}, REMOTE_ADDR=address
    )
    callback.session = SessionStore()
    assert authenticate(request=callback, nonce="n", code_verifier="v") is None
    assert callback.axes_locked_out is True


# The sign-in page.


@pytest.mark.django_db
def test_without_single_sign_on_the_page_offers_the_password_form_only() -> None:
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    assert b"Sign in with" not in page.content


@pytest.mark.django_db
def test_with_local_login_off_a_right_password_signs_nobody_in(settings: Any) -> None:
    factories.user("ivan", roles.ANALYST)
    settings.LOCAL_LOGIN = False
    client = Client()
    page = client.get("/accounts/login/")
    assert b'name="password"' not in page.content
    answer = client.post("/accounts/login/", {"username": "ivan", "password": "pass-for-tests"})
    assert answer.status_code == 403
    assert b"Password sign-in is turned off" in answer.content
    assert "_auth_user_id" not in client.session


# Settings: single sign-on configured wrong stops start-up, naming what is wrong.

PROVIDER = {
    "OIDC_RP_CLIENT_ID": "soc-console",
    "OIDC_RP_CLIENT_SECRET": "secret",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.corp.example/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://idp.corp.example/token",
    "OIDC_OP_USER_ENDPOINT": "https://idp.corp.example/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://idp.corp.example/jwks",
    "OIDC_ROLE_MAP": "soc-analysts=analyst",
}


def _start(**env: str) -> str:
    """Load the console's settings with `env`; what start-up says ("" when it starts)."""
    process = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "soc_console.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "" if process.returncode == 0 else process.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, ""),
        ({"LOCAL_LOGIN": "off"}, ""),
        (
            {"OIDC_OP_TOKEN_ENDPOINT": "http://idp.corp.example/token"},
            "OIDC_OP_TOKEN_ENDPOINT must use https (plain http on loopback only)",
        ),
        ({"OIDC_ROLE_MAP": "soc=root"}, "OIDC_ROLE_MAP: 'root' (for 'soc') is not a role"),
        ({"OIDC_RP_SIGN_ALGO": "HS256"}, "OIDC_RP_SIGN_ALGO must be an RS or ES algorithm"),
        ({"OIDC_RP_CLIENT_SECRET": ""}, "OIDC_RP_CLIENT_SECRET is required"),
    ],
)
def test_single_sign_on_settings_are_checked_at_start_up(env: dict[str, str], message: str) -> None:
    said = _start(**{**PROVIDER, **env})
    assert (message in said) if message else said == ""


def test_passwords_cannot_be_switched_off_without_single_sign_on() -> None:
    assert "LOCAL_LOGIN=off needs single sign-on" in _start(LOCAL_LOGIN="off")
