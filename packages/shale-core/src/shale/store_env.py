"""An object store chosen by environment variables (SlateDB's ``ObjectStore.from_env`` /
``load_object_store_from_env``): one environment, or one ``.env`` file, configures shale and the
official package alike.

``CLOUD_PROVIDER`` names the store (case-insensitive):

===========  ==================================================================================
``local``    the directory ``LOCAL_PATH`` (required)
``memory``   a fresh in-memory store
``aws``      the S3 bucket ``AWS_BUCKET`` (or ``AWS_BUCKET_NAME``); endpoint, credentials and
             region from the other ``AWS_*`` variables (the ``s3://`` plugin, ``shale-minio``)
``gcp``      the GCS bucket ``GOOGLE_BUCKET`` (or ``GOOGLE_BUCKET_NAME``), ``GOOGLE_*``
             credentials (the ``gs://`` plugin, ``shale-obstore``)
``azure``    the container ``AZURE_CONTAINER_NAME``, ``AZURE_*`` credentials (the ``az://``
             plugin, ``shale-obstore``)
===========  ==================================================================================

Invariants and why:

* **The env file does not override the environment.** Variables from ``env_file`` (default
  ``.env`` in the working directory; a missing file is ignored, as SlateDB's ``dotenvy`` does)
  are set in ``os.environ`` only where unset, so that the store plugins, which read their
  ``AWS_*``/``GOOGLE_*``/``AZURE_*`` variables from the environment, see them -- the same side
  effect SlateDB has.
* **Bad configuration is an ``InvalidError`` naming the variable**, before any store is
  opened: ``CLOUD_PROVIDER`` unset or unknown, a required variable missing, an unreadable or
  malformed env file (with its line number). Values are never quoted in errors for variables
  that may hold secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from shale.errors import InvalidError
from shale.objstore.protocol import ObjectStore
from shale.plugins import open_store

__all__ = ["DEFAULT_ENV_FILE", "PROVIDERS", "load_env_file", "store_from_env", "store_url_from_env"]

#: The env file read when none is named (SlateDB's default).
DEFAULT_ENV_FILE = ".env"
#: ``CLOUD_PROVIDER`` values and the variables that name each one's location.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "local": ("LOCAL_PATH",),
    "memory": (),
    "aws": ("AWS_BUCKET", "AWS_BUCKET_NAME"),
    "gcp": ("GOOGLE_BUCKET", "GOOGLE_BUCKET_NAME"),
    "azure": ("AZURE_CONTAINER_NAME",),
}
_SCHEMES = {"aws": "s3", "gcp": "gs", "azure": "az"}
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unquote(raw: str, path: Path, lineno: int) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0:
            raise InvalidError("unterminated quote in the env file", path=str(path), line=lineno)
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise InvalidError(
                "text after a quoted value in the env file", path=str(path), line=lineno
            )
        body = raw[1:end]
        if quote == "'":
            return body
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)
    value = raw.split(" #", 1)[0].split("\t#", 1)[0]
    return "" if value.startswith("#") else value.rstrip()


def load_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The variables of a ``.env`` file: ``KEY=value`` lines (``export KEY=value`` too), blank
    lines and ``#`` comments ignored; values bare (a `` #`` starts a comment), in single quotes
    (literal) or in double quotes (``\\n``, ``\\t``, ``\\"``, ``\\\\`` escapes).

    :raises InvalidError: the file cannot be read, or a line is malformed (its number named).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidError("cannot read the env file", path=str(p), error=str(exc)) from exc
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise InvalidError("malformed line in the env file", path=str(p), line=lineno)
        out[m.group(1)] = _unquote(m.group(2), p, lineno)
    return out


def _apply_env_file(
    env_file: str | os.PathLike[str] | None, environ: MutableMapping[str, str]
) -> None:
    if env_file is None:
        if not Path(DEFAULT_ENV_FILE).is_file():
            return
        env_file = DEFAULT_ENV_FILE
    elif not isinstance(env_file, str | os.PathLike):
        raise InvalidError("env_file must be a path", type=type(env_file).__name__)
    for key, value in load_env_file(env_file).items():
        environ.setdefault(key, value)


def _required(environ: Mapping[str, str], names: tuple[str, ...], provider: str) -> str:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    raise InvalidError(
        f"CLOUD_PROVIDER={provider} needs the environment variable {' or '.join(names)}",
        variable=names[0],
    )


def store_url_from_env(
    env_file: str | os.PathLike[str] | None = None,
    *,
    environ: MutableMapping[str, str] | None = None,
) -> str:
    """The store URL the environment describes (``file://``, ``memory://``, ``s3://``, ``gs://``,
    ``az://``), after loading ``env_file`` into ``environ`` (default ``os.environ``) where unset.

    :raises InvalidError: ``CLOUD_PROVIDER`` unset or unknown, a required variable missing, a
        bad env file.
    """
    env = os.environ if environ is None else environ
    _apply_env_file(env_file, env)
    raw = env.get("CLOUD_PROVIDER")
    provider = (raw or "").strip().lower()
    if provider not in PROVIDERS:
        raise InvalidError(
            "invalid environment variable CLOUD_PROVIDER: expected one of " + ", ".join(PROVIDERS),
            value=raw,
        )
    if provider == "memory":
        return "memory://"
    where = _required(env, PROVIDERS[provider], provider)
    if provider == "local":
        return Path(where).expanduser().resolve().as_uri()
    if "/" in where.strip("/") or not where.strip("/"):
        raise InvalidError(
            f"{PROVIDERS[provider][0]} must name a bucket or container, not a path",
            variable=PROVIDERS[provider][0],
        )
    return f"{_SCHEMES[provider]}://{where.strip('/')}"


def store_from_env(env_file: str | os.PathLike[str] | None = None) -> ObjectStore:
    """Open the object store the environment describes (SlateDB's ``ObjectStore.from_env``):
    ``env_file`` (default ``.env``, if present) is loaded into ``os.environ`` where unset, then
    :func:`store_url_from_env`'s URL is opened through the plugins
    (:func:`shale.plugins.open_store`), which read their credentials from ``os.environ``.
    The caller owns the store (``close()`` it). A database inside it is opened with
    ``Db.open(path, object_store=store)``.

    :raises InvalidError: as :func:`store_url_from_env`; or no installed plugin opens the
        provider's scheme (``aws`` needs ``shale-minio``, ``gcp``/``azure`` ``shale-obstore``).
    """
    return open_store(store_url_from_env(env_file))
