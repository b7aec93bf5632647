"""``instanceapi doctor``: check the configuration and every target, step by step.

For each cloud/region: authenticate, discover the compute endpoint and its
microversions, prove (or fail to prove) all-project visibility, and count the
servers of every project. Prints a readable report; exit 0 only if all is well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TextIO

from instanceapi.check.catalog import RegionCoverage, coverages
from instanceapi.check.region import lists_unreachable_cells
from instanceapi.check.visibility import Rule, probe
from instanceapi.config import ConfigError, Settings
from instanceapi.openstack import NovaRegion, UpstreamError, build_regions

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG = 0, 1, 2
_HINTS = {
    401: "the credentials were refused: check the password or application credential "
    "(and, for an application credential, its access rules)",
    403: "the credentials may not do this: the service needs the admin role (see the "
    "README's least-privilege section)",
}


class Report:
    """Collects ✓/✗ lines and remembers whether anything failed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.problems = 0

    def ok(self, text: str) -> None:
        """Print a passing line."""
        print(f"  ✓ {text}", file=self.out)

    def note(self, text: str) -> None:
        """Print a line that is worth knowing but not a problem."""
        print(f"  ! {text}", file=self.out)

    def fail(self, text: str) -> None:
        """Print a failing line and count it."""
        self.problems += 1
        print(f"  ✗ {text}", file=self.out)


def run(environ: Mapping[str, str], out: TextIO) -> int:
    """Check everything; return the exit status."""
    try:
        settings = Settings.from_env(environ)
        novas = build_regions(settings)
    except ConfigError as ex:
        print(f"✗ configuration: {ex}", file=out)
        return EXIT_CONFIG
    excluded = ", ".join(f"{s.cloud}/{s.region}" for s in settings.exclude_regions)
    print(
        f"✓ configuration: {len(novas)} target(s), timeout {settings.timeout:g}s, "
        f"{settings.retries} retries; regions excluded (INSTANCEAPI_EXCLUDE_REGIONS): "
        f"{excluded or 'none'}",
        file=out,
    )
    report = Report(out)
    warning = settings.exposure_warning()
    if warning:
        report.note(warning)
    covering = coverages(novas, settings.exclude_regions)
    for nova in novas:
        print(f"\n{nova.name}", file=out)
        check_region(nova, report, covering[nova.cloud])
    verdict = "no problems" if not report.problems else f"{report.problems} problem(s)"
    print(f"\n{verdict} found", file=out)
    return EXIT_OK if not report.problems else EXIT_PROBLEM


def check_region(nova: NovaRegion, report: Report, coverage: RegionCoverage | None = None) -> None:
    """Run each step for one region; stop at the first step the others depend on.

    A catalog region nobody checks is reported, and the other steps still run.
    """
    coverage = coverage or RegionCoverage(nova.cloud, frozenset({nova.region}))

    def regions(nova: NovaRegion, report: Report) -> None:
        _regions(nova, report, coverage)

    steps: list[tuple[Callable[[NovaRegion, Report], None], bool]] = [
        (_authenticate, True),
        (regions, False),
        (_compute, True),
        (_visibility, True),
        (_count, True),
    ]
    for step, blocking in steps:
        before = report.problems
        try:
            step(nova, report)
        except UpstreamError as ex:
            hint = _HINTS.get(ex.status or 0, "")
            report.fail(ex.reason + (f": {hint}" if hint else ""))
        if blocking and report.problems > before:
            return


def _authenticate(nova: NovaRegion, report: Report) -> None:
    me = nova.identity()
    report.ok(f"authenticated: project {me.project_id}, roles {', '.join(sorted(me.roles))}")


def _regions(nova: NovaRegion, report: Report, coverage: RegionCoverage) -> None:
    found = nova.compute_regions(fresh=True)
    problem = coverage.problem(found)
    if nova.region and nova.region not in found:
        names = ", ".join(sorted(r or "(no region)" for r in found)) or "none"
        report.fail(
            f"the catalog has no compute endpoint in region {nova.region} "
            f"(a typo? its compute regions: {names})"
        )
    if problem:
        report.fail(f"every absent UUID would answer 500: {problem}")
    else:
        names = ", ".join(sorted(r or "(no region)" for r in found))
        report.ok(f"compute regions in the catalog: {names}; all checked or excluded")


def _compute(nova: NovaRegion, report: Report) -> None:
    version = nova.microversion()
    report.ok(
        f"compute endpoint {nova.endpoint}: microversions up to "
        f"{nova.offered_microversion}, using {version}"
    )
    if not lists_unreachable_cells(version):
        report.note(
            "below 2.69, listings omit servers of unreachable cells: only Nova's "
            "own answer by id can prove absence here"
        )


def _visibility(nova: NovaRegion, report: Report) -> None:
    seen = probe(nova, time.monotonic())
    if seen.rule is Rule.BY_ID:
        report.ok(f"sees every project's servers by id: {seen.reason}")
    elif seen.rule is Rule.LISTING:
        report.note(
            "absence is proven only by a DELETED record in the all-project listing "
            "(an omission is no proof; give the admin role to prove it by id): "
            f"{seen.reason}"
        )
    else:
        report.fail(f"cannot prove absence (every absent UUID would answer 500): {seen.reason}")


def _count(nova: NovaRegion, report: Report) -> None:
    started = time.perf_counter()
    total = pages = 0
    for page in nova.list_servers():
        total += len(page)
        pages += 1
    report.ok(
        f"{total} servers in all projects ({pages} page(s), {time.perf_counter() - started:.1f}s)"
    )
