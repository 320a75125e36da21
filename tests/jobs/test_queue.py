"""The queue's storage: two deployments on one Redis (or one queue database) keep their tasks
apart by queue name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dripstone.config import ConfigError, load_settings
from dripstone.jobs.queue import configure_queue, huey
from dripstone.jobs.tasks import run_job


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One queue store that two deployments point at."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        yield request.getfixturevalue("redis_url")
    configure_queue("memory://")


def test_two_queue_names_on_one_store_are_two_queues(shared_url: str) -> None:
    run = uuid.uuid4().hex[:12]
    first, second = f"first_{run}", f"second_{run}"
    try:
        configure_queue(shared_url, first)
        run_job("jid-of-the-first-deployment")
        configure_queue(shared_url, second)
        assert huey.pending_count() == 0
        run_job("jid-of-the-second-deployment")
        assert [task.args for task in huey.pending()] == [("jid-of-the-second-deployment",)]
        configure_queue(shared_url, first)
        assert [task.args for task in huey.pending()] == [("jid-of-the-first-deployment",)]
    finally:
        for name in (first, second):
            configure_queue(shared_url, name)
            huey.storage.flush_all()
    if shared_url.startswith("redis"):
        assert list(redis.Redis.from_url(shared_url).scan_iter(f"*{run}*")) == []


def test_a_queue_name_that_is_not_a_plain_word_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="DRIPSTONE_QUEUE_NAME"):
        load_settings(queue_name="dripstone blue")
