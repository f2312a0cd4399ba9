"""What machine a result was measured on, and how busy it was.

In:  nothing (reads /proc, lscpu-style sysfs files, torch).
Out: ``machine_info()`` -> dict (CPU model, cores, caches, memory, torch and
     Python versions, hostname, load average); ``machine_slug()`` -> a short
     file-name-safe name of the machine; ``copy_bandwidth()`` -> measured
     copy GB/s from DRAM and within the last-level cache.

The load average is recorded because two busy cores ruin 2-thread OpenMP
timings (a descheduled thread stalls every barrier): a result measured while
the machine was loaded says so in its table.
"""
from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import sys
import time


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> dict[str, str]:
    out = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            d = os.path.join(base, idx)
            if not idx.startswith("index"):
                continue
            level = open(os.path.join(d, "level")).read().strip()
            typ = open(os.path.join(d, "type")).read().strip()
            size = open(os.path.join(d, "size")).read().strip()
            key = f"L{level}" + ({"Data": "d", "Instruction": "i"}.get(typ, ""))
            out[key] = size
    except OSError:
        pass
    return out


def _mem_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    import torch

    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "caches": _caches(),
        "mem_gib": _mem_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
    }


def machine_slug(info: dict | None = None) -> str:
    info = info or {"cpu_model": _cpu_model(), "cores": os.cpu_count()}
    model = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$", "", info["cpu_model"].lower())
    model = re.sub(r"[^a-z0-9]+", "-", model).strip("-")
    return f"{model or 'cpu'}-{info['cores']}c"


def copy_bandwidth(quick: bool = False) -> dict[str, float]:
    """Copy bandwidth in GB/s, counting bytes read plus bytes written.

    DRAM: a 1 GiB -> 1 GiB copy is far larger than any last-level cache here
    (260 MiB); in-cache: 8 MiB -> 8 MiB stays in L3 between repetitions.
    """
    import torch

    def measure(nbytes: int, reps: int) -> float:
        n = nbytes // 4
        src = torch.ones(n)
        dst = torch.empty(n)
        dst.copy_(src)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - t)
        return 2 * nbytes / statistics.median(times) / 1e9

    # --quick: 512 MiB (still twice the L3 here) and fewer repetitions.
    big = (512 << 20) if quick else (1 << 30)
    return {"dram_copy_GBps": round(measure(big, 3 if quick else 7), 1),
            "cache_copy_GBps": round(measure(8 << 20, 10 if quick else 50), 1)}
