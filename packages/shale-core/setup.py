"""Build the Cython accelerators unless SHALE_NO_EXTENSIONS is set.

Each accelerated module ``_x_c.pyx`` (beside its domain: ``shale/sst/``, ``shale/fbs/``,
``shale/merge/``) has a pure-Python twin ``_x_py.py``; its facade picks one at import time,
so skipping the build is always safe.
"""

import os
import pathlib

from setuptools import setup

HERE = pathlib.Path(__file__).parent
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

setup(ext_modules=ext_modules)
