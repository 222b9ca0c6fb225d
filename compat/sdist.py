"""The unpacked sdist of an installed package, for running its own test suite against fastpool.

Used by ``requests_suite.py`` and ``urllib3_suite.py`` (run as scripts, with this folder first
on ``sys.path``): both need the tests a release shipped, which the wheel does not carry.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path


def fetch_sdist(package: str, version: str, cache: Path, folders: tuple[str, ...]) -> Path:
    """The sdist of ``package`` ``version`` unpacked in ``cache`` (downloaded from PyPI once);
    it must hold ``folders`` (its tests), or the run stops naming what is missing."""
    source = cache / f"{package}-{version}"
    if all((source / folder).is_dir() for folder in folders):
        return source
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", f"{package}=={version}", "--dest", str(cache),
        ],
        check=True,
    )  # fmt: skip
    archive = cache / f"{package}-{version}.tar.gz"
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(cache, filter="data")
        except TypeError:  # a Python without extraction filters (before 3.9.17 / 3.11.4)
            tar.extractall(cache)
    missing = [folder for folder in folders if not (source / folder).is_dir()]
    if missing:
        raise SystemExit(f"{archive} holds no {' and no '.join(f + '/' for f in missing)} folder")
    return source
