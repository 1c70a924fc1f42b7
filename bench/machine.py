"""A description of the machine and software the numbers were measured on."""

import os
import platform
import sqlite3
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

# Above this 1-minute load average other work competes for the CPU and the numbers wobble.
BUSY_LOAD = 1.0


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gb: float
    kernel: str
    python: str
    sqlite: str
    packages: dict[str, str]
    wrk: str
    load_at_start: tuple[float, float, float]

    @property
    def busy(self) -> bool:
        return self.load_at_start[0] > BUSY_LOAD

    def markdown(self) -> str:
        load = " / ".join(f"{value:.2f}" for value in self.load_at_start)
        packages = ", ".join(f"{name} {number}" for name, number in self.packages.items())
        lines = [
            f"- CPU: {self.cpu}, {self.cores} cores",
            f"- RAM: {self.ram_gb:.1f} GB; Linux {self.kernel}",
            f"- Python {self.python}, SQLite {self.sqlite}",
            f"- {packages}",
            f"- Load generator: {self.wrk}",
            f"- Load average at start (1/5/15 min): {load}",
        ]
        if self.busy:
            lines.append(
                f"- **Warning: 1-min load was above {BUSY_LOAD} at start; "
                "other work shared the CPU and these numbers are unreliable.**"
            )
        return "\n".join(lines)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe(wrk: str) -> Machine:
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        ram_gb=_ram_gb(),
        kernel=platform.release(),
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        packages={
            name: version(name)
            for name in ("uvicorn", "fastapi", "starlette", "SQLAlchemy", "Jinja2")
        },
        wrk=wrk,
        load_at_start=os.getloadavg(),
    )
