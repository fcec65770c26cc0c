"""patches/LMCache/0001-cpu-kv-copy: the one-copy-per-block path must move exactly the bytes
the per-layer path moves, both ways, for both single-plane layouts, with skipped blocks and
several blocks per chunk. Runs LMCache's own kernels from the checkout on random tensors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("lmcache.v1.platform.torch_ops.mp_mem_kernels")
fast_path = getattr(kernels, "_layers_as_one_tensor", None)
pytestmark = pytest.mark.skipif(fast_path is None, reason="LMCache checkout without the cpu-kv-copy patch")

NL, NB, NH, BS, CS = 4, 12, 3, 8, 10


class Spec:
    """The two attributes of a KV format spec the single-plane path reads."""

    def __init__(self, is_hnd: bool) -> None:
        self.is_hnd = is_hnd


def layers(spaced: bool, is_hnd: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    shape = (NB, NH, BS, CS) if is_hnd else (NB, BS, NH, CS)
    per_layer = NB * NH * BS * CS
    if spaced:  # one buffer, layer after layer (with a gap): the fast path applies
        buffer = torch.zeros(NL, per_layer + 16)
        return buffer, [buffer[i, :per_layer].view(shape) for i in range(NL)]
    separate = [torch.zeros(shape) for _ in range(NL)]  # unrelated allocations: per-layer path
    return torch.empty(0), separate


def run(spaced: bool, is_hnd: bool, is_d2h: bool, blocks_per_object: int, skip: int, seed: int):
    torch.manual_seed(seed)
    _, layer_tensors = layers(spaced, is_hnd)
    if spaced:
        assert fast_path(layer_tensors) is not None
    else:
        assert fast_path(layer_tensors) is None
    n_objects = 3
    objects = [torch.randn(NL, blocks_per_object * BS, NH * CS) for _ in range(n_objects)]
    if is_d2h:
        for layer in layer_tensors:
            layer.copy_(torch.randn(layer.shape))
        objects = [torch.zeros_like(o) for o in objects]
    block_ids = torch.randperm(NB)[: n_objects * blocks_per_object]
    kernels._transfer_per_layer_fused(layer_tensors, objects, block_ids, len(block_ids), blocks_per_object, BS, Spec(is_hnd), is_d2h, skip)
    return [t.clone() for t in layer_tensors], [o.clone() for o in objects]


@pytest.mark.parametrize("is_hnd", [True, False])
@pytest.mark.parametrize("is_d2h", [False, True])
@pytest.mark.parametrize("blocks_per_object,skip", [(1, 0), (2, 0), (2, 3)])
def test_one_copy_per_block_matches_per_layer_copy(is_hnd, is_d2h, blocks_per_object, skip) -> None:
    fast = run(True, is_hnd, is_d2h, blocks_per_object, skip, seed=7)
    slow = run(False, is_hnd, is_d2h, blocks_per_object, skip, seed=7)
    for a, b in zip(fast[0] + fast[1], slow[0] + slow[1], strict=True):
        assert torch.equal(a, b)
    moved = fast[1] if is_d2h else fast[0]
    assert any(t.abs().sum() > 0 for t in moved)  # something was copied at all


def test_layers_not_one_buffer_fall_back() -> None:
    buffer = torch.zeros(3, 100)
    uneven = [buffer[0, :40].view(4, 10), buffer[1, :40].view(4, 10), buffer[2, 10:50].view(4, 10)]
    assert fast_path(uneven) is None
    assert fast_path([torch.zeros(4, 10)[:, :5]]) is None  # not contiguous
