"""README.md's five-minute tour runs as written (its python blocks, in order, in one process)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tour_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    tour = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", tour, flags=re.S)


def test_readme_has_a_tour():
    assert len(tour_blocks()) >= 4


@pytest.mark.xdist_group("subprocess-heavy")
def test_readme_tour_runs(tmp_path):
    # The tour uses paths relative to the repository root; run it in a scratch folder that links them,
    # so its outputs/ land in tmp_path.
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    (tmp_path / "hub_upload.py").symlink_to(REPO / "hub_upload.py")
    script = tmp_path / "tour.py"
    script.write_text("\n".join(tour_blocks()), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "parameters;" in result.stdout and "Hello 世界" in result.stdout
    assert "summary_text" in result.stdout
    # the short training learns what the tour says it does: at least one sentence comes back exactly
    assert "(exact copy)" in result.stdout, result.stdout[-2000:]
    # and nothing alarming on the way (see tests/test_main_job.py::ALARMING)
    assert "pin_memory" not in result.stderr and "seem to have been set" not in result.stderr
    folder = tmp_path / "outputs" / "tour-model"
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    assert not list(folder.glob("*.bin"))
