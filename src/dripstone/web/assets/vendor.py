"""Copies the dashboard's front-end libraries from node_modules into ../static/vendor and
records what was copied in ../static/vendor/manifest.json.

Run by `make vendor` after `npm ci` here. The suite checks that every committed file matches
the manifest and that the manifest names the versions and tarball hashes of package-lock.json,
so a changed file or a changed lock without the other fails `make test`."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE.parent / "static" / "vendor"
# package -> the file of it the dashboard serves
FILES = {"htmx.org": "dist/htmx.min.js", "@dagrejs/dagre": "dist/dagre.min.js"}


def sha384(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


def served_name(package: str, version: str, file: str) -> str:
    return f"{package.replace('/', '-').lstrip('@')}-{version}-{Path(file).name}"


def main() -> None:
    lock = json.loads((HERE / "package-lock.json").read_text())
    VENDOR.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for package, file in FILES.items():
        entry = lock["packages"][f"node_modules/{package}"]
        name = served_name(package, entry["version"], file)
        shutil.copyfile(HERE / "node_modules" / package / file, VENDOR / name)
        manifest[package] = {
            "version": entry["version"],
            "tarball_integrity": entry["integrity"],
            "file": file,
            "served_as": name,
            "sha384": sha384(VENDOR / name),
        }
    (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"copied {len(manifest)} files into {VENDOR}")


if __name__ == "__main__":
    main()
