"""What the numbers were measured on: CPU, BLAS, GPU, library versions."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import time
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:
        return None


def describe(device: str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: v for m in ("vnn", "numpy", "array_api_compat", "numba", "torch", "jax",
                                    "sklearn", "cupy") if (v := _version(m))},
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [f"{p.get('internal_api')} {p.get('version')} "
                        f"({p.get('architecture')}, {p.get('num_threads')} threads)"
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except Exception:
        info["blas"] = ["unknown (threadpoolctl not installed)"]
    if device.startswith("cuda"):
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception as exc:  # pragma: no cover - GPU only
            info["gpu"] = f"unknown ({exc})"
    return info


def _busy_seconds() -> float | None:
    """CPU seconds all processes have been busy since boot (/proc/stat), None where unknown."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Load:
    """The cores other processes kept busy while a timed run ran: all CPU time the machine spent
    (``/proc/stat``) less this process's own (``os.times``), over the run's wall time. A 2-thread
    BLAS collapses when another process takes a core, so runs with load are dropped."""

    def __enter__(self) -> Load:
        self._busy, self._own = _busy_seconds(), _own_seconds()
        self._t = time.perf_counter()
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._t
        busy = _busy_seconds()
        if busy is None or self._busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (_own_seconds() - self._own)
        self.cores = max(0.0, others / wall)


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def one_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    blas = "; ".join(info.get("blas", []))
    libs = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    return (f"{info['cpu']} ({info['cores']} cores){gpu}; BLAS {blas}; Python {info['python']}"
            + (f"\n{libs}" if libs else ""))


def write_results(out: str, stem: str, title: str, table: str, rows: list[Any],
                  device: str = "cpu") -> str:
    """A benchmark's results as ``out/stem.txt`` (the title with the date, this machine, the
    table; also printed) and ``out/stem.json`` (the machine and the rows); returns the text."""
    import json
    import pathlib
    import time

    text = (f"{title}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"{one_line(describe(device))}\n\n{table}")
    print(text)
    folder = pathlib.Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
    (folder / f"{stem}.json").write_text(json.dumps({"machine": describe(device), "rows": rows},
                                                    indent=1), encoding="utf-8")
    return text
