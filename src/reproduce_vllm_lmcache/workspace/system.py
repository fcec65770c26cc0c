"""The platform's own programs that some scenarios need: Redis (the L2 tier, scripts/l2.sh and
nodes.sh), Prometheus (scripts/soak.sh, observe.sh), iproute2 (nodes.sh's network
namespaces), Chromium (the report's browser test) and tcmalloc (the allocator vLLM's CPU
install guide asks for, REPRO_VLLM_MALLOC). A fresh machine may lack them: with REPRO_SYSTEM_PACKAGES=auto, setup installs the
missing ones from the platform's packages where it can (Debian/Ubuntu as root: apt-get); else it
names the command that does. Standard library only (runs before the environment exists)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reproduce_vllm_lmcache import knobs


@dataclass(frozen=True)
class Program:
    knob: str  # the knob naming the binary ("" when it has none)
    binary: str
    deb: str
    brew: str
    needed_by: str
    library: str = ""  # a shared library's file pattern (then binary names it for messages)

    def present(self) -> bool:
        return bool(find_library(self.library)) if self.library else bool(shutil.which(self.command()))

    def command(self) -> str:
        if self.knob:
            try:
                return knobs.text(self.knob)
            except KeyError:
                pass
        return self.binary


LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_library(pattern: str, dirs: tuple[str, ...] = LIB_DIRS) -> str:
    """The first file matching pattern (e.g. libtcmalloc_minimal.so*) in the system's library folders; "" if none."""
    found = sorted(str(f) for d in dirs if os.path.isdir(d) for f in Path(d).glob(pattern) if f.is_file())
    return found[0] if found else ""


MALLOCS = {"tcmalloc": "libtcmalloc_minimal.so*", "jemalloc": "libjemalloc.so*"}


def malloc_library(value: str, system: str, lib_dirs: tuple[str, ...] = LIB_DIRS) -> str:
    """The allocator library preloaded into vLLM ("" = the system's malloc). tcmalloc is what
    vLLM's CPU install guide prescribes; glibc's malloc keeps freed memory in its arenas, which
    a long mixed load shows as private memory that grows and then holds (docs/soak.md)."""
    if value not in ("auto", "system", *MALLOCS):
        raise knobs.KnobError(f"REPRO_VLLM_MALLOC={value!r}: expected auto, system, {', '.join(MALLOCS)}")
    if value == "system" or system != "linux":
        return ""
    for name in ("tcmalloc",) if value == "auto" else (value,):
        found = find_library(MALLOCS[name], lib_dirs)
        if found:
            return found
        if value != "auto":
            deb = "libtcmalloc-minimal4" if name == "tcmalloc" else "libjemalloc2"
            raise knobs.KnobError(f"REPRO_VLLM_MALLOC={value}: no {MALLOCS[name]} in {', '.join(lib_dirs)} (apt install {deb})")
    return ""


PROGRAMS = (
    Program("REPRO_REDIS_SERVER", "redis-server", "redis-server", "redis", "the Redis L2 (scripts/l2.sh, nodes.sh)"),
    Program("REPRO_PROMETHEUS_BIN", "prometheus", "prometheus", "prometheus", "scripts/soak.sh, observe.sh"),
    Program("", "ip", "iproute2", "", "network namespaces of scripts/nodes.sh (Linux)"),
    Program("", "chromium", "chromium", "", "the report's browser test (headless)"),
    Program("", "tcmalloc", "libtcmalloc-minimal4", "", "vLLM's allocator (REPRO_VLLM_MALLOC=auto)", MALLOCS["tcmalloc"]),
)


def missing() -> list[Program]:
    return [p for p in PROGRAMS if not p.present() and (p.brew or sys.platform.startswith("linux"))]


def can_install() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def hint(programs: list[Program]) -> str:
    debs = " ".join(p.deb for p in programs)
    brews = " ".join(p.brew for p in programs if p.brew)
    return f"apt install {debs}" + (f" (macOS: brew install {brews})" if brews else "")


def ensure() -> str:
    """Install what is missing when allowed and possible; a line saying what was done."""
    lacking = missing()
    if not lacking:
        return "Redis, Prometheus, iproute2, Chromium and tcmalloc found"
    if knobs.text("REPRO_SYSTEM_PACKAGES") != "auto" or not can_install():
        needs = "; ".join(f"{p.binary} ({p.needed_by})" for p in lacking)
        return f"missing {needs}: those scenarios and their tests say so and skip; install with: {hint(lacking)}"
    debs = [p.deb for p in lacking]
    print(f"      installing {' '.join(debs)} from the platform's packages (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *debs], env=env, capture_output=True, text=True)
    still = missing()
    if done.returncode != 0 or still:
        return f"apt-get could not install {' '.join(p.deb for p in still) or ' '.join(debs)} ({done.stderr.strip()[-200:]}); those scenarios skip"
    return f"installed {' '.join(debs)} (apt-get)"
