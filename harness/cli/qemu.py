"""`s2diff qemu`: Debian's QEMU builds of other suites, at hand beside the
system's (harness.qemu.builds): ``fetch``, ``list``, ``remove``.

    s2diff qemu fetch trixie sid        # download, unpack, write launchers
    s2diff qemu list                    # what is cached, with versions
    s2diff run --qemu trixie --qemu sid # then run them (a suite name is a --qemu PATH)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import S2DiffError, UsageError
from ..qemu import builds
from ..qemu.launcher import find_qemu, qemu_version
from .common import Outcome, Streams, Subcommand

_EXAMPLES = """\
examples:
  s2diff qemu fetch trixie                 # Debian 13's QEMU (10.0.x)
  s2diff qemu fetch bookworm-backports sid
  s2diff qemu list
  s2diff run --qemu trixie --qemu sid      # a cached suite's name is a --qemu value
  s2diff qemu remove sid
"""


def _cache_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="the cache folder (default: $S2DIFF_QEMU_CACHE, else "
                        "~/.cache/s2diff/qemu)")


def _qemu_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch", help="download Debian's qemu-system-arm of SUITE with its libraries into the "
        "cache (the system's packages are not touched)",
        description="Download Debian's qemu-system-arm of each SUITE (bookworm, "
        "bookworm-backports, trixie, sid, ...) with its whole library closure into the cache, "
        "unpack it and write launchers that run it with that suite's own loader and libraries. "
        "apt runs with a configuration of its own; the system's packages are neither read nor "
        "changed. A suite already cached is kept unless --refresh.")
    fetch.add_argument("suites", nargs="+", metavar="SUITE")
    fetch.add_argument("--mirror", default=builds.DEFAULT_MIRROR, metavar="URL",
                       help=f"Debian mirror (default {builds.DEFAULT_MIRROR})")
    fetch.add_argument("--refresh", action="store_true",
                       help="fetch again even if the suite is cached (sid moves daily)")
    _cache_argument(fetch)
    listing = actions.add_parser("list", help="the cached builds with their versions",
                                 description="The cached builds: suite, QEMU version, Debian "
                                 "package version, when fetched, and the --qemu value to use.")
    listing.add_argument("--json", action="store_true", help="as JSON")
    _cache_argument(listing)
    remove = actions.add_parser("remove", help="delete a suite's cached build",
                                description="Delete a suite's cached build.")
    remove.add_argument("suites", nargs="+", metavar="SUITE")
    _cache_argument(remove)


def _system_line() -> str:
    """The QEMU a run uses without --qemu, for the listing's first line."""
    parts = []
    for arch, name in builds.EMULATORS.items():
        try:
            path = find_qemu(arch)
            parts.append(f"{name} {builds.version_number(qemu_version(path))} ({path})")
        except (S2DiffError, OSError) as exc:   # missing, or not answering --version
            parts.append(f"{name}: {' '.join(str(exc).split())}")
    return "without --qemu: " + "; ".join(parts)


def run_qemu(args: argparse.Namespace, io: Streams) -> Outcome:
    if args.action == "fetch":
        for suite in args.suites:
            builds.check_suite(suite)
        for suite in args.suites:
            have = builds.find_cached(suite, args.cache)
            if have is not None and not args.refresh:
                print(f"{suite}: cached already ({_versions(have)}) in {have.folder} "
                      "(--refresh to fetch again)", file=io.out, flush=True)
                continue
            print(f"{suite}: fetching {builds.PACKAGE} from {args.mirror} ...", file=io.out,
                  flush=True)
            build = builds.fetch_debian(suite, args.cache, args.mirror, refresh=args.refresh)
            print(f"{suite}: {_versions(build)} (Debian {build.package_version}); "
                  f"use --qemu {suite} or --qemu {build.bin}", file=io.out, flush=True)
        return Outcome.OK
    if args.action == "list":
        cached = builds.list_cached(args.cache)
        if args.json:
            print(json.dumps([{"suite": b.suite, "versions": b.versions,
                               "package_version": b.package_version, "fetched": b.fetched,
                               "mirror": b.mirror, "bin": str(b.bin)} for b in cached],
                             indent=1), file=io.out)
            return Outcome.OK
        print(_system_line(), file=io.out)
        root = builds.cache_root(args.cache)
        if not cached:
            print(f"no cached build in {root} (s2diff qemu fetch SUITE)", file=io.out)
            return Outcome.OK
        print(f"cached in {root}:", file=io.out)
        width = max(len(b.suite) for b in cached)
        for b in cached:
            print(f"  {b.suite.ljust(width)}  {_versions(b)}  Debian {b.package_version}  "
                  f"fetched {b.fetched}  --qemu {b.suite}", file=io.out)
        return Outcome.OK
    for suite in args.suites:
        builds.check_suite(suite)
    missing = [s for s in args.suites if builds.find_cached(s, args.cache) is None
               and not (builds.cache_root(args.cache) / s).exists()]
    if missing:
        raise UsageError(f"no cached build of suite {missing[0]!r} in "
                         f"{builds.cache_root(args.cache)} (see s2diff qemu list)")
    for suite in args.suites:
        builds.remove_cached(suite, args.cache)
        print(f"{suite}: removed", file=io.out)
    return Outcome.OK


def _versions(build: builds.CachedBuild) -> str:
    """'10.0.13' (or each emulator's when they differ)."""
    numbers = sorted({builds.version_number(v) for v in build.versions.values()})
    return "QEMU " + "/".join(numbers) if numbers else "QEMU ?"


COMMANDS = (
    Subcommand("qemu", "Debian's QEMU builds of other suites beside the system's: fetch, list, "
               "remove (then run them with --qemu SUITE)", _qemu_arguments, run_qemu,
               epilog=_EXAMPLES),
)
