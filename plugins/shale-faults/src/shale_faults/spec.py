"""The fault specification accepted by the ``faults=`` option and the ``SHALE_PLUGIN_FAULTS_SPEC``
variable.

A spec is JSON (or the same structure as Python objects). The full form::

    {
      "seed": 42,
      "match": "s3://",
      "rules": [
        {"ops": "put,put_if_absent", "probability": 0.1, "error": "transient"},
        {"ops": "put_if_absent", "probability": 0.05, "error": "transient", "after": true},
        {"ops": "*", "probability": 0.2, "error": null, "latency": 0.01},
        {"ops": "get", "prefix": "db/wal/", "error": "not_found", "limit": 1}
      ]
    }

Short forms: a list of rules, or one rule object (any object without ``"rules"``). A string
starting with ``@`` names a JSON file to read. Rule keys are the fields of
:class:`~shale_faults.store.FaultRule`: ``ops`` (``"*"``, a comma list or a JSON list),
``probability`` (default 1), ``error`` (``"transient"`` -- the default --, ``"permanent"``,
``"not_found"``, ``"conflict"`` or ``null`` for latency only), ``latency`` (seconds),
``after`` (perform, then raise), ``prefix``, ``limit``. Top-level keys: ``seed`` (int, default
none: not reproducible), ``match`` (only wrap stores whose URL starts with this), ``rules``.
Unknown keys are errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shale.spi import InvalidError
from shale_faults.store import FaultRule

__all__ = ["FaultSpec", "parse_spec"]

_RULE_KEYS = frozenset({"ops", "probability", "error", "latency", "after", "prefix", "limit"})
_TOP_KEYS = frozenset({"seed", "match", "rules"})


@dataclass(frozen=True)
class FaultSpec:
    """A parsed spec: the rules, the seed and the URL prefix it applies to."""

    rules: tuple[FaultRule, ...]
    seed: int | None = None
    match: str = ""

    def matches(self, url: str) -> bool:
        """Whether stores opened for ``url`` get wrapped."""
        return str(url).startswith(self.match)


def _rule(value: Any) -> FaultRule:
    if isinstance(value, FaultRule):
        return value
    if not isinstance(value, dict):
        raise InvalidError("a fault rule must be an object", rule=value)
    unknown = sorted(set(value) - _RULE_KEYS)
    if unknown:
        raise InvalidError(
            "unknown keys in a fault rule", keys=unknown, accepted=sorted(_RULE_KEYS)
        )
    return FaultRule(**value)


def parse_spec(spec: Any) -> FaultSpec:
    """A :class:`FaultSpec` from JSON text, ``@file``, a dict, a list, or a :class:`FaultSpec`.

    :raises InvalidError: malformed JSON, unknown keys, or bad rule values.
    """
    if isinstance(spec, FaultSpec):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("@"):
            try:
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            except OSError as exc:
                raise InvalidError("cannot read the fault spec file", path=text[1:]) from exc
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise InvalidError("fault spec is not valid JSON", error=str(exc)) from None
    if isinstance(spec, FaultRule):
        return FaultSpec((spec,))
    if isinstance(spec, (list, tuple)):
        return FaultSpec(tuple(_rule(r) for r in spec))
    if not isinstance(spec, dict):
        raise InvalidError("fault spec must be an object, a list of rules or JSON text")
    if "rules" not in spec:
        return FaultSpec((_rule(spec),))
    unknown = sorted(set(spec) - _TOP_KEYS)
    if unknown:
        raise InvalidError("unknown keys in a fault spec", keys=unknown, accepted=sorted(_TOP_KEYS))
    rules = spec["rules"]
    if not isinstance(rules, (list, tuple)):
        raise InvalidError("fault spec rules must be a list")
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidError("fault spec seed must be an int", seed=seed)
    match = spec.get("match", "")
    if not isinstance(match, str):
        raise InvalidError("fault spec match must be a str", match=match)
    return FaultSpec(tuple(_rule(r) for r in rules), seed, match)
