"""Check what ``nox -s wheels`` built: ``python tools/check_dist.py [DIST_DIR]``.

- every distribution has an sdist and a wheel, all at the project's one version
  (``__version__`` in shale-core's ``src/shale/__init__.py``);
- shale-core's wheel is a platform wheel holding every compiled twin and no generated ``.c``;
  its sdist holds every ``.pyx`` and no ``.c`` or binary;
- the other wheels are pure (``py3-none-any``);
- the umbrella's wheel depends on its siblings by name and version and offers the extras
  ``s3``, ``compactor``, ``gc`` and ``all``.

Exits 1 and names every problem.
"""

from __future__ import annotations

import email.parser
import pathlib
import re
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ROOT / "packages" / "shale-core"
NAMES = {
    "shale_core": "packages/shale-core",
    "shale_compactor": "packages/shale-compactor",
    "shale_gc": "packages/shale-gc",
    "shale_minio": "packages/shale-minio",
    "shale": "packages/shale",
    "shale_template": "plugins/_template",
    "shale_faults": "plugins/shale-faults",
    "shale_example_filter": "plugins/shale-example-filter",
    "shale_obstore": "plugins/shale-obstore",
    "shale_prometheus": "plugins/shale-prometheus",
    "shale_otel": "plugins/shale-otel",
}
EXTRAS = {"s3", "compactor", "gc", "all"}


def version() -> str:
    text = (CORE / "src" / "shale" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    assert found, "no __version__ in shale/__init__.py"
    return found.group(1)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def problems(dist: pathlib.Path) -> list[str]:
    want = version()
    out = []
    for name in NAMES:
        sdists = sorted(dist.glob(f"{name}-*.tar.gz"))
        wheels = sorted(dist.glob(f"{name}-*.whl"))
        if [s.name for s in sdists] != [f"{name}-{want}.tar.gz"]:
            out.append(f"{name}: want one sdist {name}-{want}.tar.gz, found {sdists}")
        if len(wheels) != 1 or not wheels[0].name.startswith(f"{name}-{want}-"):
            out.append(f"{name}: want one wheel of version {want}, found {wheels}")
            continue
        with zipfile.ZipFile(wheels[0]) as wheel:
            files = wheel.namelist()
            meta = _metadata(wheel)
        if meta["Version"] != want:
            out.append(f"{wheels[0].name}: metadata version {meta['Version']}")
        for field in ("Summary", "License-Expression"):
            if not meta[field]:
                out.append(f"{wheels[0].name}: no {field}")
        if not meta.get_all("Classifier") or not meta.get_payload():
            out.append(f"{wheels[0].name}: no classifiers or no README")
        if name == "shale_core":
            out += _check_core(wheels[0], files, sdists)
        elif not wheels[0].name.endswith("-py3-none-any.whl"):
            out.append(f"{wheels[0].name}: should be a pure wheel")
        if name == "shale":
            requires = meta.get_all("Requires-Dist") or []
            extras = set(meta.get_all("Provides-Extra") or [])
            if EXTRAS - extras:
                out.append(f"{wheels[0].name}: missing extras {sorted(EXTRAS - extras)}")
            for requirement in requires:
                if "@" in requirement or f"=={want}" not in requirement:
                    out.append(f"{wheels[0].name}: {requirement!r} is not by name=={want}")
    return out


def _check_core(wheel: pathlib.Path, files: list[str], sdists: list[pathlib.Path]) -> list[str]:
    out = []
    if wheel.name.endswith("-none-any.whl"):
        out.append(f"{wheel.name}: shale-core's wheel should be a platform wheel")
    pyx = sorted(str(p.relative_to(CORE / "src")) for p in (CORE / "src").glob("shale/**/_*_c.pyx"))
    for source in pyx:
        stem = source.removesuffix(".pyx")
        if not any(f.startswith(stem + ".") and f.endswith((".so", ".pyd")) for f in files):
            out.append(f"{wheel.name}: no compiled {stem}")
    out += [f"{wheel.name}: generated C {f}" for f in files if f.endswith(".c")]
    for sdist in sdists:
        with tarfile.open(sdist) as tar:
            members = [m.split("/", 1)[1] for m in tar.getnames() if "/" in m]
        for source in pyx:
            if f"src/{source}" not in members:
                out.append(f"{sdist.name}: no {source}")
        out += [f"{sdist.name}: {m}" for m in members if m.endswith((".c", ".so", ".pyd", ".o"))]
    return out


def main(argv: list[str]) -> int:
    found = problems(pathlib.Path(argv[0] if argv else "dist"))
    for problem in found:
        print(f"dist: {problem}", file=sys.stderr)
    if not found:
        print(f"dist: {len(NAMES)} distributions, sdist and wheel each, version {version()}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
