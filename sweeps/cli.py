"""`memsweep` command line: a thin layer over sweeps/ and analysis/."""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import version as _dist_version


def _cmd_version(args: argparse.Namespace) -> int:
    print(_dist_version("memsweep"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("version", help="print the installed version")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
