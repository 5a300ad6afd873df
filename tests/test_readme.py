"""The README's Python examples run (on the CPU: ``device="cuda"`` is read as ``"cpu"`` here)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import vnn

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X, X_test, y, y_test = train_test_split(X, y, random_state=0)
    X, Xv, y, yv = train_test_split(X, y, random_state=0)
    opt = vnn.Adam()
    namespace = {"X": X, "y": y, "Xv": Xv, "yv": yv, "X_test": X_test, "y_test": y_test,
                 "opt": opt}
    monkeypatch.chdir(tmp_path)
    runnable = [b for b in BLOCKS if "[...]" not in b]  # the GPU block lists constructors only
    assert len(runnable) >= 3
    try:
        for block in runnable:
            code = block.replace('device="cuda"', 'device="cpu"')
            if "history=h" in code:  # the checkpoint line reuses the Use section's history
                namespace["h"] = namespace["history"]
            exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    finally:
        vnn.set_tf32(False)  # the GPU section switches TF32 on
    assert (tmp_path / "digits.safetensors").exists() and (tmp_path / "clf.safetensors").exists()
    assert namespace["ck"].epoch == 12 and namespace["ck"].optimizer is not None
    assert namespace["clf"].score(X_test, y_test) > 0.9


def test_ci_workflow_is_valid_yaml_and_runs_the_readme_test_command():
    """GitHub reads the workflow as YAML: a plain `run:` value holding ': ' does not parse."""
    yaml = pytest.importorskip("yaml")
    root = README.parent
    workflow = yaml.safe_load((root / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    command = 'python -m pip install -e ".[test]" && python -m pytest'
    assert command in README.read_text(encoding="utf-8")
    assert any(command in r for r in runs)
    assert (root / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith(command)
