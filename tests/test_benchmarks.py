"""The benchmark suite's quick mode: every section runs and reports; a full run refuses a debug build."""

import pytest

from benchmarks import gradient_cost, run
from datafusion_autograd import _native


def test_quick_suite_reports_every_section():
    out = run.main(quick=True)
    report = (out / "RESULTS.md").read_text()
    for section in ("### P1–P3", "### P4", "### P5", "### P6", "### P7"):
        assert section in report
    for depth in (1, 2, 4, 8, 16, 32):
        assert f"\n| {depth} |" in report
    for case in gradient_cost.cases(quick=True):
        assert f"\n| {case.name} | {case.samples:,} |" in report
    for plot in ("elementwise.png", "nesting.png", "gradient_cost.png"):
        assert (out / plot).stat().st_size > 0


def test_a_full_run_refuses_a_debug_build():
    # The test command installs the extension with `maturin develop`: the test profile.
    assert not _native.OPTIMIZED, "the tests run against the debug build that scripts/dev.sh setup installs"
    with pytest.raises(SystemExit, match="debug build"):
        run.main(quick=False)
    with pytest.raises(SystemExit, match="debug build"):
        gradient_cost.main(quick=False)
