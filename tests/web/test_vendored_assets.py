"""The front-end libraries the dashboard serves are the ones package-lock.json pins."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fastapi.testclient import TestClient

WEB = Path(str(resources.files("dripstone.web")))
VENDOR = WEB / "static" / "vendor"


def _manifest() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads((VENDOR / "manifest.json").read_text())
    return loaded


def _vendor_tool():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("vendor", WEB / "assets" / "vendor.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_served_library_is_the_locked_version_byte_for_byte() -> None:
    lock = json.loads((WEB / "assets" / "package-lock.json").read_text())
    package = json.loads((WEB / "assets" / "package.json").read_text())
    vendor = _vendor_tool()
    manifest = _manifest()
    assert set(manifest) == set(package["dependencies"]) == set(vendor.FILES)
    for name, entry in manifest.items():
        locked = lock["packages"][f"node_modules/{name}"]
        assert package["dependencies"][name] == locked["version"] == entry["version"]
        assert entry["tarball_integrity"] == locked["integrity"]
        assert entry["served_as"] == vendor.served_name(name, locked["version"], entry["file"])
        assert vendor.sha384(VENDOR / entry["served_as"]) == entry["sha384"], (
            f"{entry['served_as']} differs from what `make vendor` copied; run it again"
        )
    served = {path.name for path in VENDOR.iterdir()} - {"manifest.json"}
    assert served == {entry["served_as"] for entry in manifest.values()}


def test_pages_load_only_files_served_by_dripstone(client: TestClient) -> None:
    page = client.get("/sign-in")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text
    assert "https://" not in page.text
    for name, entry in _manifest().items():
        path = f"/static/vendor/{entry['served_as']}"
        # htmx is on every page; the graph layout only on the drip builder's.
        assert (path in page.text) == (name == "htmx.org")
        assert client.get(path).status_code == 200
