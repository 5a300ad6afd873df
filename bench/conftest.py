"""pytest-benchmark settings for bench/.

Run as part of the plain test command (``python -m pytest``), every benchmark runs once with a
few steps, without statistics: a smoke test so the suite never rots. ``pytest bench/
--benchmark-only`` (or ``--benchmark-enable``) measures for real.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    measuring = getattr(opt, "benchmark_only", False) or getattr(opt, "benchmark_enable", False)
    if hasattr(opt, "benchmark_disable") and not measuring:
        opt.benchmark_disable = True
    config.bench_smoke = not measuring  # type: ignore[attr-defined]
