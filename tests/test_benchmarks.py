"""The benchmark suite's quick mode: every section runs and reports."""

from benchmarks import run


def test_quick_suite_reports_every_section():
    out = run.main(quick=True)
    report = (out / "RESULTS.md").read_text()
    for section in ("### P1–P3", "### P4", "### P5", "### P6"):
        assert section in report
    for depth in (1, 2, 4, 8, 16, 32):
        assert f"\n| {depth} |" in report
    assert (out / "elementwise.png").stat().st_size > 0
    assert (out / "nesting.png").stat().st_size > 0
