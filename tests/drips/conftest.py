"""Fixtures of the drip runner tests: the mailings tests' real SMTP server and tick, and a
list to run campaigns on."""

import pytest

from tests.conftest import Api
from tests.mailings.conftest import run_tick, settings, smtp_server
from tests.mailings.helpers import add_subscribers, make_list

__all__ = ["run_tick", "settings", "smtp_server"]


@pytest.fixture
def news(api: Api) -> str:
    """The list News: Alex (with a first name) and Blake."""
    list_id = make_list(api, "News")
    add_subscribers(
        api,
        list_id,
        [{"email": "alex@example.com", "first_name": "Alex"}, {"email": "blake@example.com"}],
    )
    return list_id
