"""No single request may freeze the server: template bombs and catastrophic regexes are sent
to a real `dripstone serve` while `/healthz` is polled, and must answer at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from dripstone.config import Settings
from tests.conftest import SECRET, Api
from tests.drips.helpers import chain, create, node
from tests.mailings.helpers import make_mailing, ok
from tests.processes import DRIPSTONE, free_port, queue_url, wait_until

# Each must answer well within this; a frozen process answers nothing at all.
HEALTHZ_SECONDS = 1.0


@dataclass
class Server:
    url: str
    api: Api

    def get(self, path: str, **params: str) -> httpx2.Response:
        return httpx2.get(
            self.url + self.api.base + path, params=params, headers=self._auth(), timeout=30
        )

    def post(self, path: str, body: object) -> httpx2.Response:
        return httpx2.post(
            self.url + self.api.base + path, json=body, headers=self._auth(), timeout=30
        )

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Token token={self.api.key}"}


@pytest.fixture
def server(settings: Settings, database_url: str, api: Api, tmp_path: Path) -> Iterator[Server]:
    """A real `dripstone serve` on the test database, with `api`'s account."""
    port = free_port()
    env = {
        **os.environ,
        "DRIPSTONE_DATA_DIR": str(settings.data_dir),
        "DRIPSTONE_DATABASE_URL": database_url,
        "DRIPSTONE_QUEUE_URL": queue_url(settings, database_url),
        "DRIPSTONE_SECRET_KEY": SECRET,
    }
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [DRIPSTONE, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx2.get(url + "/healthz", timeout=1).status_code == 200
        except httpx2.HTTPError:
            return False

    try:
        wait_until(answers, "the server's start", timeout=60)
        yield Server(url, api)
    finally:
        process.kill()
        process.wait()


def while_healthz_answers(
    server: Server, hostile: Callable[[], httpx2.Response]
) -> httpx2.Response:
    """Run `hostile` while polling /healthz; every poll must answer within HEALTHZ_SECONDS."""
    result: list[httpx2.Response | BaseException] = []

    def run() -> None:
        try:
            result.append(hostile())
        except BaseException as exc:  # handed to the test thread below
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    polls = 0
    while worker.is_alive() or polls == 0:
        started = time.monotonic()
        try:
            status = httpx2.get(server.url + "/healthz", timeout=HEALTHZ_SECONDS).status_code
        except httpx2.TimeoutException:
            pytest.fail(f"/healthz did not answer within {HEALTHZ_SECONDS}s during the request")
        assert status == 200
        assert time.monotonic() - started < HEALTHZ_SECONDS
        polls += 1
        time.sleep(0.05)
    (outcome,) = result
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param("<p>{{ 'a' * 10**8 }}</p>", id="string-repetition"),
        pytest.param("<p>{{ 9**(9**9) }}</p>", id="power"),
        pytest.param(
            "<p>{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}"
            "{% endfor %}</p>",
            id="nested-loops",
        ),
        pytest.param(
            "{% set ns = namespace(s='ab') %}{% for i in range(26) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}<p>{{ ns.s|length }}</p>",
            id="doubling-concatenation",
        ),
    ],
)
def test_a_template_bomb_is_refused_at_once_while_healthz_answers(
    server: Server, bomb: str
) -> None:
    body = {"campaign_mailing": {"subject": "Bomb", "html_part": bomb}}
    started = time.monotonic()
    response = while_healthz_answers(server, lambda: server.post("/campaign_mailings", body))
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    assert errors[0].startswith("html_part line 1: "), errors
    assert "in one render" in errors[0] or "bits" in errors[0], errors
    assert elapsed < 2, f"the refusal took {elapsed:.1f}s"


@pytest.mark.parametrize("path", ["/campaign_mailings", "/drip_campaigns"])
def test_a_catastrophic_regex_answers_at_once_while_healthz_answers(
    server: Server, path: str
) -> None:
    evil = "a" * 39 + "!"
    make_mailing(server.api, evil)
    everyone = ok(server.api.get("/subscription_lists"))["data"][0]["id"]
    create(server.api, everyone, _one_email_graph(server.api), name=evil)

    started = time.monotonic()
    response = while_healthz_answers(server, lambda: server.get(path, search="(a+)+$"))
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []
    assert elapsed < 1, f"the search took {elapsed:.1f}s"


def _one_email_graph(api: Api) -> str:
    mailing = make_mailing(api, "Welcome")
    return chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=mailing))
