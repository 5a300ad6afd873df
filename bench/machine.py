"""What the numbers were measured on: CPU, BLAS, GPU, library versions."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
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
        "versions": {m: v for m in ("vnn", "numpy", "array_api_compat", "torch", "jax",
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
