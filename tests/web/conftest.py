"""Dashboard tests in-process: an account with a user of each role, and clients signed in as
them through the real sign-in form."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.users import service as users
from dripstone.users.models import Role

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


@dataclass(frozen=True)
class Team:
    """An account and the addresses of its owner, editor and viewer (all with `PASSWORD`)."""

    account: str
    api_key: str
    emails: dict[Role, str]


def make_team(database: db.Database, name: str | None = None) -> Team:
    name = name or f"t{uuid.uuid4().hex[:10]}"
    with database.transaction() as session:
        account, key = accounts.create_account(session, name)
        emails = {}
        for role in Role:
            email = f"{role.value}@{name}.example.com"
            users.create_user(session, account, role.value, email, role, PASSWORD)
            emails[role] = email
    return Team(name, key.secret, emails)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/sign-in")
    token = FORM_TOKEN.search(page.text)
    assert token is not None, page.text
    answer = client.post(
        "/sign-in",
        data={"email": email, "password": password, "form_token": token[1], "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: TestClient, path: str = "/") -> str:
    """The session's CSRF token, as a page carries it in its forms."""
    found = CSRF.search(client.get(path).text)
    assert found is not None
    return found[1]


@pytest.fixture(autouse=True, scope="session")
def quick_password_hashes() -> Iterator[None]:
    """Argon2id with its smallest cost: the dashboard tests hash and check passwords by the
    hundred, and the cost is not what they test (tests/users checks the real parameters)."""
    previous = users.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    users.use_hasher(previous)


@pytest.fixture
def team(database: db.Database) -> Team:
    return make_team(database)


@pytest.fixture
def signed_in(client: TestClient, team: Team) -> Callable[[Role], TestClient]:
    """`signed_in(Role.EDITOR)`: a client with a session of that role's user (one client per
    test: signing in as another role replaces the session)."""

    def as_role(role: Role) -> TestClient:
        client.cookies.clear()
        return sign_in(client, team.emails[role])

    return as_role
