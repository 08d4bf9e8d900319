"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts() -> dict:
    """CPU, logical CPUs, memory, platform and the versions that shape the figures."""
    from importlib.metadata import PackageNotFoundError, version

    memory_gb = None
    try:
        with open("/proc/meminfo") as f:
            memory_gb = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "numpy", "byot-keras", "ai-edge-litert"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "memory_gb": memory_gb,
            "platform": platform.platform(terse=True), "versions": versions}
