"""Users: created, checked, disabled and reset, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from dripstone import clock, db
from dripstone.accounts import service as accounts
from dripstone.accounts.models import Account
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.users import service as users
from dripstone.users.models import Role, User
from dripstone.users.service import Action

PASSWORD = "correct horse battery staple"


@pytest.fixture
def account(database: db.Database) -> Account:
    with database.transaction() as session:
        created, _ = accounts.create_account(session, "acme")
    return created


def _create(
    database: db.Database,
    account: Account,
    email: str = "Ann@Example.COM",
    role: Role = Role.EDITOR,
) -> User:
    with database.transaction() as session:
        return users.create_user(session, account, "ann", email, role, PASSWORD)


def _verify(database: db.Database, email: str, password: str) -> User | None:
    with database.transaction() as session:
        return users.verify_password(session, email, password)


def test_a_created_user_signs_in_with_the_address_in_any_case_and_only_with_the_password(
    database: db.Database, account: Account
) -> None:
    user = _create(database, account)
    assert user.email == "ann@example.com"
    assert user.role is Role.EDITOR
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash

    signed_in = _verify(database, "ANN@example.com", PASSWORD)
    assert signed_in is not None
    assert signed_in.id == user.id
    assert _verify(database, "ann@example.com", PASSWORD + "x") is None
    assert _verify(database, "nobody@example.com", PASSWORD) is None


def test_an_address_is_taken_once_in_the_whole_installation(
    database: db.Database, account: Account
) -> None:
    _create(database, account, "ann@example.com")
    with database.transaction() as session:
        other, _ = accounts.create_account(session, "globex")
    with database.transaction() as session, pytest.raises(Conflict) as refused:
        users.create_user(session, other, "ann2", "ANN@example.com", Role.VIEWER, PASSWORD)
    assert refused.value.details["field"] == "email"


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-address", PASSWORD, "email"),
        ("ann@example.com", "", "password"),
        ("ann@example.com", "   ", "password"),
        ("ann@example.com", "short", "password"),
    ],
)
def test_bad_addresses_and_weak_passwords_are_refused_and_nothing_is_created(
    database: db.Database, account: Account, email: str, password: str, field: str
) -> None:
    with database.transaction() as session, pytest.raises(Invalid) as refused:
        users.create_user(session, account, "ann", email, Role.OWNER, password)
    assert refused.value.details["field"] == field
    with database.read_sessions() as session:
        assert session.scalars(select(User)).all() == []


def test_a_disabled_user_never_verifies_and_their_sessions_are_revoked(
    database: db.Database, account: Account, manual_clock: clock.ManualClock
) -> None:
    _create(database, account)
    with database.transaction() as session:
        disabled = users.disable_user(session, "ann@example.com")
    assert disabled.disabled
    assert disabled.sessions_revoked_at == manual_clock.now()
    assert _verify(database, "ann@example.com", PASSWORD) is None


def test_a_reset_password_replaces_the_old_one_and_ends_sessions(
    database: db.Database, account: Account, manual_clock: clock.ManualClock
) -> None:
    _create(database, account)
    manual_clock.advance(timedelta(minutes=1))
    with database.transaction() as session:
        reset = users.reset_password(session, "ann@example.com", "a brand new passphrase")
    assert reset.sessions_revoked_at == manual_clock.now()
    assert _verify(database, "ann@example.com", PASSWORD) is None
    assert _verify(database, "ann@example.com", "a brand new passphrase") is not None
    with database.transaction() as session, pytest.raises(Invalid):
        users.reset_password(session, "ann@example.com", "short")
    with database.transaction() as session, pytest.raises(NotFound):
        users.reset_password(session, "nobody@example.com", "a brand new passphrase")


@pytest.fixture
def cheap_hasher() -> Iterator[PasswordHasher]:
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    previous = users.use_hasher(cheap)
    yield cheap
    users.use_hasher(previous)


def test_a_hash_made_with_old_parameters_is_replaced_at_the_next_sign_in(
    database: db.Database, account: Account, cheap_hasher: PasswordHasher
) -> None:
    old_hash = _create(database, account).password_hash
    assert "m=8192,t=1,p=1" in old_hash
    current = PasswordHasher()
    users.use_hasher(current)

    assert _verify(database, "ann@example.com", "wrong password here") is None
    with database.read_sessions() as session:
        assert users.get_user(session, "ann@example.com").password_hash == old_hash

    assert _verify(database, "ann@example.com", PASSWORD) is not None
    with database.read_sessions() as session:
        new_hash = users.get_user(session, "ann@example.com").password_hash
    assert new_hash != old_hash
    assert not current.check_needs_rehash(new_hash)
    assert _verify(database, "ann@example.com", PASSWORD) is not None


def test_users_are_listed_per_account(database: db.Database, account: Account) -> None:
    _create(database, account, "ann@example.com")
    with database.transaction() as session:
        other, _ = accounts.create_account(session, "globex")
        users.create_user(session, other, "bob", "bob@example.com", Role.VIEWER, PASSWORD)
    with database.read_sessions() as session:
        assert [u.email for u in users.list_users(session, account)] == ["ann@example.com"]
        assert [u.email for u in users.list_users(session)] == [
            "ann@example.com",
            "bob@example.com",
        ]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.OWNER, {Action.READ, Action.EDIT_CONTENT, Action.MANAGE_USERS}),
        (Role.EDITOR, {Action.READ, Action.EDIT_CONTENT}),
        (Role.VIEWER, {Action.READ}),
    ],
)
def test_each_role_may_do_what_it_is_for_and_nothing_more(role: Role, allowed: set[Action]) -> None:
    assert {action for action in Action if users.may(role, action)} == allowed
