"""The environment checks that end setup; the test suite asserts the same functions.

Runs inside the project environment.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reproduce_vllm_lmcache.config import ROOT
from reproduce_vllm_lmcache.workspace import patches, pins

Check = Callable[[], str]


class CheckFailed(AssertionError):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def imports() -> str:
    import lmcache
    import vllm

    for module, checkout in ((vllm, "vllm"), (lmcache, "LMCache")):
        where = Path(module.__file__ or "").resolve()
        _expect(where.is_relative_to(ROOT / checkout), f"{module.__name__} imported from {where}, not {checkout}/")
    return "vllm from vllm/, lmcache from LMCache/ (editable)"


def versions() -> str:
    from importlib.metadata import version

    want = {"vllm": f"{pins.source('vllm').version}+cpu", "lmcache": pins.source("lmcache").version}
    got = {name: version(name) for name in want}
    _expect(got == want, f"installed {got}, pinned {want}")
    import vllm

    _expect(vllm.__version__ == want["vllm"], f"vllm.__version__ is {vllm.__version__}")
    return ", ".join(f"{k} {v}" for k, v in got.items())


def connector_base() -> str:
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1

    return KVConnectorBase_V1.__qualname__


def lmcache_connector() -> str:
    from lmcache.integration.vllm.lmcache_mp_connector import LMCacheMPConnector
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1

    _expect(issubclass(LMCacheMPConnector, KVConnectorBase_V1), "LMCacheMPConnector is not a KVConnectorBase_V1")
    return f"{LMCacheMPConnector.__module__}.LMCacheMPConnector"


def expected_kernel_library() -> str:
    """The library vLLM's CPU platform imports on this CPU (mirrors CpuPlatform.import_kernels)."""
    import platform

    import torch

    if platform.machine() not in ("x86_64", "AMD64"):
        return "_C"
    if torch.cpu._is_avx512_supported():  # noqa: SLF001
        return "_C" if torch.cpu._is_avx512_bf16_supported() else "_C_AVX512"  # noqa: SLF001
    return "_C_AVX2"


def kernel_library() -> str:
    import torch
    from vllm.platforms import current_platform

    _expect(type(current_platform).__name__ == "CpuPlatform", f"vLLM platform is {type(current_platform).__name__}")
    current_platform.import_kernels()
    name = expected_kernel_library()
    maps = Path("/proc/self/maps")
    if maps.exists():
        loaded = {Path(line.split()[-1]).name for line in maps.read_text().splitlines() if ".abi3.so" in line}
        _expect(f"{name}.abi3.so" in loaded, f"{name}.abi3.so not loaded (loaded: {sorted(loaded)})")
    _expect(hasattr(torch.ops._C, "compute_slot_mapping_kernel_impl"), "torch.ops._C has no CPU kernels")  # noqa: SLF001
    return f"{name}.abi3.so loaded for this CPU"


def slot_mapping_patch() -> str:
    """The patch is committed in vllm/ and the CPU fallback now takes the kernel's arguments."""
    import torch
    from vllm.utils.cpu_triton_utils import _compute_slot_mapping_kernel_impl

    checkout = pins.source("vllm").path
    for patch in patches.for_checkout("vllm"):
        found = patches.state(checkout, patch)
        _expect(found in (patches.State.APPLIED, patches.State.UPSTREAM), f"{patch.name}: {found.value}")
    kernel_library()
    # Positional call in the order of ComputeSlotMappingKernel.kernel's parameters:
    # two requests of 3 and 2 tokens, block size 16, blocks 5 and 7.
    slots = torch.full((6,), -7, dtype=torch.int64)
    _compute_slot_mapping_kernel_impl(
        5,
        6,
        torch.tensor([0, 3, 5], dtype=torch.int32),
        torch.tensor([0, 1, 2, 16, 17], dtype=torch.int64),
        torch.tensor([[5, 0], [9, 7]], dtype=torch.int32),
        2,
        slots,
        16,
    )
    _expect(slots[:5].tolist() == [80, 81, 82, 7 * 16, 7 * 16 + 1], f"slot mapping {slots.tolist()}")
    return "patch committed; CPU slot mapping gives the right slots"


def no_cuda_packages() -> str:
    present = [n for n in ("torchvision", "torchaudio", "torchcodec", "triton") if importlib.util.find_spec(n)]
    _expect(not present, f"CUDA-built packages in the environment: {present}")
    import torch

    _expect(not torch.version.cuda, f"torch is a CUDA build ({torch.__version__})")
    return f"torch {torch.__version__}; no torchvision/torchaudio/torchcodec/triton"


def lmcache_cli() -> str:
    lmcache = Path(sys.executable).with_name("lmcache")
    result = subprocess.run([str(lmcache), "server", "--help"], capture_output=True, text=True, timeout=120)
    _expect(result.returncode == 0 and "--l1-size-gb" in result.stdout, result.stderr[-500:])
    return "lmcache server --help runs"


ALL: list[tuple[str, Check]] = [
    ("import vllm, lmcache (editable)", imports),
    ("pinned versions", versions),
    ("KVConnectorBase_V1 import", connector_base),
    ("LMCacheMPConnector import", lmcache_connector),
    ("CPU kernel library", kernel_library),
    ("slot-mapping patch", slot_mapping_patch),
    ("no CUDA-built packages", no_cuda_packages),
    ("lmcache server --help", lmcache_cli),
]


def main() -> int:
    failed = 0
    for title, check in ALL:
        started = time.monotonic()
        try:
            detail, mark = check(), "ok  "
        except Exception as exc:  # noqa: BLE001 - report every check, then fail
            detail, mark = f"{type(exc).__name__}: {exc}", "FAIL"
            failed += 1
        print(f"  [{mark}] {title:34s} {detail} ({time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
