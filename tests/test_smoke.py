from tests.conftest import Api


def test_create_and_list_subscriber(api: Api) -> None:
    created = api.post(
        "/subscribers", {"subscriber": {"email": "Ann@Example.com", "first_name": "Ann"}}
    )
    assert created.status_code == 200, created.text
    listed = api.get("/subscribers").json()["data"]
    assert [s["attributes"]["email"] for s in listed] == ["ann@example.com"]
