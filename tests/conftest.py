"""Shared test setup: offline, deterministic, small."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tests exercise the checkout's top-level packages (modeling, recipes, ...); an install, editable included, maps
# them under forge.* (setup.cfg), so the checkout is the only place with these names. The processes the tests start
# (recipes, scripts, accelerate) import them from any working folder, as the tests do (setup.cfg: pythonpath = .).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
SHARED_DATA = Path(os.environ.get("FORGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    """Every test starts from the same seed and fp32 default dtype."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each test's outcome in its module's ``OUTCOMES`` dict, for modules that define one
    (tests/test_transformers_common.py compares Forge's skips with BART's)."""
    report = yield
    outcomes = getattr(getattr(item, "module", None), "OUTCOMES", None)
    if isinstance(outcomes, dict) and (report.when == "call" or report.skipped):
        reason = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
        outcomes[item.nodeid] = (report.outcome, reason)
    return report
