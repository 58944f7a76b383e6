"""Build the Cython accelerators unless SHALE_NO_EXTENSIONS is set, or no C compiler works.

Each accelerated module ``_x_c.pyx`` (beside its domain: ``shale/sst/``, ``shale/fbs/``,
``shale/merge/``) has a pure-Python twin ``_x_py.py``; its facade picks one at import time,
so skipping the build is always safe. That is why a failed build is not an error: without a C
compiler (or Python headers) ``pip install`` of the sdist prints a warning and installs the pure
twins (``python -m shale info`` shows which twins are in use). pip shows a build's output only
with ``-v``.

The version is ``__version__`` in ``src/shale/__init__.py`` (``pyproject.toml`` reads it): the
one place the project's version lives; every other distribution of the monorepo reads it too.
"""

import os
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).parent
WARNING = """
WARNING: shale-core: the Cython accelerators could not be built; shale-core installs with the
WARNING: pure-Python twins (same results, slower). To compile them, install a C compiler and the
WARNING: Python headers (Debian: apt-get install gcc python3-dev) and reinstall;
WARNING: `python -m shale info` shows which twins are in use. What failed:
{failures}
"""


class OptionalBuildExt(build_ext):
    """``build_ext`` whose failures (no compiler, no headers) skip the extension: one warning
    at the end names what was skipped and why."""

    def run(self) -> None:
        self.failures: list[str] = []
        try:
            super().run()
        except Exception as exc:  # DistutilsPlatformError (no compiler at all), OSError, ...
            self.failures.append(f"{type(exc).__name__}: {exc}")
        if self.failures:
            lines = "\n".join(f"WARNING:   {failure}" for failure in self.failures)
            print(WARNING.format(failures=lines), file=sys.stderr, flush=True)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # CCompilerError, CompileError, LinkError, ...
            self.failures.append(f"{ext.name}: {type(exc).__name__}: {exc}")


#: C libraries an accelerator links against (the compaction kernel calls zlib's crc32 directly).
LIBRARIES = {"_compact_c": ["z"], "_block_c": ["z"], "_datawriter_c": ["z"]}

ext_modules = []
if not os.environ.get("SHALE_NO_EXTENSIONS"):
    from Cython.Build import cythonize
    from setuptools import Extension

    sources = sorted((HERE / "src").glob("shale/**/_*_c.pyx"))
    ext_modules = cythonize(
        [
            Extension(
                ".".join(p.relative_to(HERE / "src").with_suffix("").parts),
                [str(p.relative_to(HERE))],
                extra_compile_args=["-O3"],
                libraries=LIBRARIES.get(p.stem, []),
            )
            for p in sources
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
