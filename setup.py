"""Build fastpool: the compiled core, or a pure-Python build when FASTPOOL_NO_EXTENSIONS is set.

Metadata lives in pyproject.toml. A failed compile fails the build; a pure build happens only
when asked for (or on an interpreter other than CPython).
"""

import importlib.util
import os
import pathlib

from setuptools import Extension, setup

HERE = pathlib.Path(__file__).parent
# Read the env var with the very function the package uses at import time.
_spec = importlib.util.spec_from_file_location("_fastpool_compat", HERE / "fastpool" / "_compat.py")
_compat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_compat)

NO_EXTENSIONS = _compat.env_flag(os.environ.get("FASTPOOL_NO_EXTENSIONS")) or (
    _compat.sys.implementation.name != "cpython"
)

BANNER = "*" * 60 + "\n*{:^58}*\n" + "*" * 60

if NO_EXTENSIONS:
    print(BANNER.format("fastpool: Pure Python build"))
    ext_modules = []
else:
    print(BANNER.format("fastpool: Accelerated build (Cython)"))
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension(f"fastpool.{core}_c", [f"fastpool/{core}_c.pyx"]) for core in _compat.CORES],
        compiler_directives={"language_level": 3, "embedsignature": True},
    )

setup(ext_modules=ext_modules)
