"""The ``shale`` command. Plugins add subcommands through the ``shale_cli`` hook."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shale import __version__, _accel
from shale.plugins import get_host


def _cmd_info(args: argparse.Namespace) -> int:
    host = get_host()
    print(f"shale {__version__}")
    print("accelerators:")
    for name in _accel.ACCELERATED:
        try:
            compiled = _accel.is_compiled(name)
            state = "compiled (Cython)" if compiled else "pure Python"
        except ImportError as exc:  # module not importable at all
            state = f"missing ({exc})"
        print(f"  {name:<8} {state}")
    print("plugins:")
    for name in host.plugin_names():
        print(f"  {name}")
    for name, why in host.failed.items():
        print(f"  {name} (failed to load: {why})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shale", description=__doc__)
    parser.add_argument("--version", action="version", version=f"shale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="show which accelerators are compiled and which plugins load")
    info.set_defaults(func=_cmd_info)
    get_host().add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
