"""Request bodies over DRIPSTONE_MAX_BODY_BYTES get 413 and change nothing, whether their
length is declared or they arrive in chunks; bodies under it arrive whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dripstone import db
from dripstone.app import create_app
from dripstone.config import load_settings
from dripstone.jobs.queue import run_tasks_inline
from tests.conftest import SECRET, Api, make_account
from tests.mailings.helpers import ok
from tests.subscribers.helpers import assert_error

LIMIT = 2048


@pytest.fixture
def small_api(database_url: str, tmp_path: Path, database: db.Database) -> Iterator[Api]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        max_body_bytes=LIMIT,
    )
    run_tasks_inline()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield make_account(client, database, "acme", orca=True)


def body_of(size: int) -> bytes:
    """A list named News, padded with white space to `size` bytes."""
    body = json.dumps({"subscription_list": {"name": "News"}}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 500):
        yield data[start : start + 500]


def post(api: Api, content: bytes | Iterator[bytes], **headers: str) -> object:
    return api.post(
        "/subscription_lists",
        content=content,
        headers={"content-type": "application/json", **headers},
    )


def names(api: Api) -> list[str]:
    return [row["attributes"]["name"] for row in ok(api.get("/subscription_lists"))["data"]]


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_body_over_the_limit_is_413_and_changes_nothing(small_api: Api, chunked: bool) -> None:
    data = body_of(LIMIT + 1)
    assert len(data) == LIMIT + 1
    response = post(small_api, chunks(data) if chunked else data)
    assert_error(response, 413, field="body")  # type: ignore[arg-type]
    assert names(small_api) == ["All contacts"]


@pytest.mark.parametrize("key", [None, "chunked-1"])
def test_a_chunked_body_under_the_limit_arrives_whole(small_api: Api, key: str | None) -> None:
    data = body_of(LIMIT - 10)
    headers = {"Idempotency-Key": key} if key else {}
    response = post(small_api, chunks(data), **headers)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    assert names(small_api) == ["All contacts", "News"]
