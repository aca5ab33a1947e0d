"""Counting the bytes and the work of a traced training step.

`StepTracker` is a TorchDispatchMode that sees every aten (and bitsandbytes) op the step runs on fake
tensors. For each new tensor storage it adds the storage's bytes, rounded the way PyTorch's CUDA
caching allocator rounds blocks, to a live total and to a category; a weakref finalizer subtracts them
when the storage dies. It keeps, for every named phase of the step (forward, backward, optimizer step
of each micro-step), the peak live bytes and the per-category split at that peak. It also files each op
under an `OpKey` (its kind, shape, FLOPs, bytes; see _perf.py), so that the performance model can price the
phase on any card afterwards.
"""

from __future__ import annotations

import math
import weakref
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from ..memory_categories import CATEGORIES
from ._perf import OpKey
from ._records import PhaseRecord

_aten = torch.ops.aten
# Ops that allocate without touching memory, or only reinterpret it: no bytes moved, no kernel launched.
_FREE_OPS = {_aten.empty.memory_format, _aten.empty_strided.default, _aten.empty_like.default,
             _aten.detach.default, _aten.alias.default, _aten.lift_fresh.default, _aten._unsafe_view.default}


_GEMMS = {_aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm}
_QUANTIZED = (torch.int8, torch.uint8)
# torch's multi_tensor_apply launches one kernel per chunk of tensors; a chunk holds about this many
_FOREACH_TENSORS_PER_LAUNCH = 48


def _shape(t):
    return tuple(t.shape)


def _sdpa_cpu_flops(args, kwargs):
    q, k, v = args[:3]
    causal = kwargs.get("is_causal", args[4] if len(args) > 4 else False)
    flops = sdpa_flop_count(_shape(q), _shape(k), _shape(v))
    return flops / 2 if causal else flops  # causal kernels skip the masked half


def _sdpa_cpu_backward_flops(args, kwargs):
    grad_out, q, k, v = args[:4]
    causal = kwargs.get("is_causal", args[7] if len(args) > 7 else False)
    flops = sdpa_backward_flop_count(_shape(grad_out), _shape(q), _shape(k), _shape(v))
    return flops / 2 if causal else flops


def _gemm_4bit_flops(args, kwargs):
    a, shape = args[0], args[2]  # A [..., K], weight shape [N, K]
    return 2 * (a.numel() // a.shape[-1]) * shape[0] * shape[1]


def _int8_matmul_flops(args, kwargs):
    a, b = args[0], args[1]  # A [..., K] int8, B [N, K] int8
    return 2 * (a.numel() // a.shape[-1]) * b.shape[0] * b.shape[1]


def _extra_flop_formulas():
    """FLOP formulas for ops torch's flop counter does not know: CPU flash attention (what fake CPU
    tensors run in place of the CUDA flash kernel) and bitsandbytes' quantized matmuls."""
    table = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flops),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flops)):
        packet = getattr(_aten, name, None)
        if packet is not None:
            table[packet] = fn
    bnb_ops = getattr(torch.ops, "bitsandbytes", None)
    if bnb_ops is not None:
        for name, fn in (("gemm_4bit", _gemm_4bit_flops), ("int8_linear_matmul", _int8_matmul_flops)):
            try:
                table[getattr(bnb_ops, name)] = fn
            except (AttributeError, RuntimeError):
                pass
    return table


class StepTracker(TorchDispatchMode):
    """Live tensor bytes per category and phase, and the ops (for the performance model) run under it."""

    def __init__(self, vocab_size: int, round_bytes: int = 512, limit_bytes: int | None = None):
        super().__init__()
        self.limit_bytes = limit_bytes  # real CPU probes: raise torch.OutOfMemoryError past this many live bytes
        self.vocab_size = vocab_size
        self.round_bytes = round_bytes
        self.live: dict[int, tuple[int, str]] = {}  # id(storage) -> (bytes, category)
        self.by_category = dict.fromkeys(CATEGORIES, 0)
        self.total = 0
        self.phases: dict[str, PhaseRecord] = {}
        self.phase_name = "init"
        self.default_category = "weights"
        self._phase_new: list = []  # weakrefs to storages created in the current phase
        self._extra_flops = _extra_flop_formulas()
        self._bnb_gemm_4bit = self._extra_flops_key("gemm_4bit")
        self._attention = {p: kind for name, kind in (("_scaled_dot_product_flash_attention_for_cpu", "attn_fwd"),
                                                      ("_scaled_dot_product_flash_attention_for_cpu_backward",
                                                       "attn_bwd"))
                           if (p := getattr(_aten, name, None)) is not None}
        self.start_phase("init", "weights")

    @staticmethod
    def _extra_flops_key(name):
        bnb_ops = getattr(torch.ops, "bitsandbytes", None)
        try:
            return getattr(bnb_ops, name) if bnb_ops is not None else None
        except (AttributeError, RuntimeError):
            return None

    # -- phases and categories -------------------------------------------------------------------
    def start_phase(self, name: str, default_category: str) -> None:
        """Begin a named phase; new storages default to `default_category`."""
        self.phase_name = name
        self.default_category = default_category
        self._phase_new = []
        record = self.phases.setdefault(name, PhaseRecord())
        self._note_peak(record, self.total, self.by_category)

    def retag(self, tensor: torch.Tensor, category: str) -> None:
        """Move a live tensor's storage to another category (e.g. a new .grad to gradients)."""
        key = id(tensor.untyped_storage())
        if key in self.live:
            nbytes, old = self.live[key]
            self.by_category[old] -= nbytes
            self.by_category[category] += nbytes
            self.live[key] = (nbytes, category)

    def retag_phase_survivors(self, category: str) -> None:
        """Storages created in this phase and still alive become `category` (optimizer state after a step)."""
        for ref in self._phase_new:
            storage = ref()
            if storage is not None and id(storage) in self.live:
                nbytes, old = self.live[id(storage)]
                self.by_category[old] -= nbytes
                self.by_category[category] += nbytes
                self.live[id(storage)] = (nbytes, category)

    # -- accounting ------------------------------------------------------------------------------
    @staticmethod
    def _note_peak(record: PhaseRecord, total: int, by_category: dict[str, int]) -> None:
        if total > record.peak_bytes or not record.breakdown:
            record.peak_bytes = total
            record.breakdown = dict(by_category)

    def _rounded(self, nbytes: int) -> int:
        r = self.round_bytes
        return max(r, -(-nbytes // r) * r) if nbytes else 0

    def _category_for(self, tensor: torch.Tensor) -> str:
        category = self.default_category
        if category in ("activations", "other") and tensor.dim() >= 1 and tensor.shape[-1] == self.vocab_size:
            return "logits"  # logits, their fp32 copies, log-softmax and their gradients
        return category

    def _add(self, tensor: torch.Tensor) -> None:
        if tensor.device.type == "meta":  # a model being built on meta holds no memory (fake tensors say "cpu")
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self.live:
            return
        nbytes = self._rounded(storage.nbytes())
        category = self._category_for(tensor)
        self.live[key] = (nbytes, category)
        self.by_category[category] += nbytes
        self.total += nbytes
        self._note_peak(self.phases[self.phase_name], self.total, self.by_category)
        self._phase_new.append(weakref.ref(storage))
        weakref.finalize(storage, self._free, key)
        if self.limit_bytes is not None and self.total > self.limit_bytes:
            raise torch.OutOfMemoryError(
                f"out of memory: live tensor bytes {self.total / 2**30:.3f} GiB passed the budget "
                f"{self.limit_bytes / 2**30:.3f} GiB")

    def _free(self, key: int) -> None:
        nbytes, category = self.live.pop(key, (0, "other"))
        self.by_category[category] -= nbytes
        self.total -= nbytes

    def _transient(self, nbytes: int) -> None:
        """A workspace a kernel allocates and frees inside one op (invisible to fake tensors)."""
        nbytes = self._rounded(nbytes)
        by_category = dict(self.by_category)
        by_category["other"] += nbytes
        self._note_peak(self.phases[self.phase_name], self.total + nbytes, by_category)

    def _price(self, func, args, kwargs, out) -> None:
        if func in _FREE_OPS or getattr(func, "is_view", False):
            return
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outputs:
            if not func._schema.is_mutable:  # metadata queries (prim.device, sizes): no kernel
                return
            # in-place ops that return nothing (the optimizer's _foreach_*_): they write their first argument
            outputs = [t for t in tree_flatten(args[0])[0] if isinstance(t, torch.Tensor)]
        packet = func._overloadpacket
        flops = 0.0
        if packet in self._extra_flops:
            flops = float(self._extra_flops[packet](args, kwargs))
        elif packet in flop_registry:
            flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        moved = sum(t.numel() * t.element_size() for t in inputs) + sum(t.numel() * t.element_size() for t in outputs)
        record = self.phases[self.phase_name]
        record.flops += flops
        record.bytes_moved += moved
        key = self._op_key(packet, args, kwargs, inputs, flops, moved)
        record.ops[key] = record.ops.get(key, 0.0) + 1.0

    def _op_key(self, packet, args, kwargs, inputs, flops: float, moved: int) -> OpKey:
        """File an op for the performance model (_perf.py)."""
        # checkpointing re-runs the forward inside the autograd engine with grad mode on; the engine runs the
        # backward itself with grad mode off. bitsandbytes' 4-bit matmul is an autograd.Function, whose forward
        # runs with grad mode off even when recomputed; only a forward runs it, so in the backward it is recompute.
        in_engine = torch._C._current_graph_task_id() != -1
        recompute = in_engine and (torch.is_grad_enabled() or packet is self._bnb_gemm_4bit)
        if self.phase_name.endswith(".opt"):
            tensors = len(inputs)
            return OpKey("optimizer", False, bytes_moved=moved,
                         launches=max(1, math.ceil(tensors / _FOREACH_TENSORS_PER_LAUNCH)))
        if packet in _GEMMS:
            a, b = (args[1], args[2]) if packet in (_aten.addmm, _aten.baddbmm) else (args[0], args[1])
            m = a.numel() // a.shape[-1]  # a batched GEMM counts its batches as rows
            return OpKey("gemm", recompute, m=int(m), n=int(b.shape[-1]), k=int(a.shape[-1]), flops=flops,
                         bytes_moved=moved)
        if packet is self._bnb_gemm_4bit:
            a, shape = args[0], args[2]
            return OpKey("gemm_4bit", recompute, m=int(a.numel() // a.shape[-1]), n=int(shape[0]), k=int(shape[1]),
                         flops=flops, bytes_moved=moved)
        if packet in self._attention:
            kind = self._attention[packet]
            causal = kwargs.get("is_causal", args[4 if kind == "attn_fwd" else 7]
                                if len(args) > (4 if kind == "attn_fwd" else 7) else False)
            # A decoder traced on unpadded batches gets transformers' causal mask as attn_mask on the CPU; the CUDA
            # flash / sdpa kernels trainers run take it as is_causal and skip the masked half.
            return OpKey(kind, recompute, flops=flops if causal else flops / 2, bytes_moved=moved)
        if any(t.dtype in _QUANTIZED for t in inputs):
            return OpKey("dequant", recompute, bytes_moved=moved)
        return OpKey("elementwise", recompute, bytes_moved=moved)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket is self._bnb_gemm_4bit:
            a, shape = args[0], args[2]
            if a.numel() // a.shape[-1] > 512:
                # bitsandbytes' CUDA gemm_4bit dequantizes the whole weight to the compute dtype and calls
                # F.linear when more than 512 rows come in (training), then frees it.
                self._transient(shape[0] * shape[1] * a.element_size())
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        self._price(func, args, kwargs, out)
        return out
