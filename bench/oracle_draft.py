import hashlib, json, os, sys, time
from pathlib import Path
from multiprocessing import get_context

ORACLES = {
    "glm4-9b-24GB": {
        "model": "glm4-9b", "gpu_mem": "24GB", "gpu": "rtx4090",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8], "gradient_accumulation_steps": [1, 2, 4, 8, 16],
            "seq_len": [1024, 2048, 4096], "lora_rank": [0, 16], "quantization": ["none", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
    "llama3.1-8b-16GB": {
        "model": "llama3.1-8b", "gpu_mem": "16GB", "gpu": "rtx4090",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8, 16], "gradient_accumulation_steps": [2, 4, 8, 16],
            "seq_len": [512, 1024, 2048], "lora_rank": [0, 16], "quantization": ["none", "int8", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
    "qwen2.5-32b-48GB": {
        "model": "qwen2.5-32b", "gpu_mem": "48GB", "gpu": "l40s",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8, 16], "gradient_accumulation_steps": [4, 16],
            "seq_len": [512, 1024, 2048], "lora_rank": [0, 16, 64], "quantization": ["none", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
}


def setup(name):
    from autofit.budget import make_budget
    from autofit.candidates import build_candidates
    from autofit.gpus import get_gpu
    from autofit.models import resolve_model
    from autofit.probes import ProbeContext
    from autofit.space import SearchSpace
    spec = ORACLES[name]
    space = SearchSpace.from_mapping({k: {"choices": v, "default": v[0]} for k, v in spec["space"].items()}, fallback=SearchSpace.load())
    model = resolve_model(spec["model"])
    budget = make_budget(spec["gpu_mem"])
    cands = build_candidates(space, model.facts)
    ctx = ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=get_gpu(spec["gpu"]))
    return model, budget, cands, ctx


def trace_key(c):
    return c.replace(gradient_accumulation_steps=min(c.gradient_accumulation_steps, 2), zero_stage=0, offload="none").key()


def _work(args):
    import torch
    torch.set_num_threads(1)
    name, keys = args
    from autofit.probes import TraceProbe
    model, budget, cands, ctx = setup(name)
    probe = TraceProbe()
    out = {}
    for c in cands.configs:
        if trace_key(c) in keys:
            r = probe.run(model, c, ctx)
            out[c.key()] = (r.state, r.peak_memory_gib, r.tokens_per_s)
    return out


if __name__ == "__main__":
    name = sys.argv[1]
    jobs = int(sys.argv[2])
    t0 = time.time()
    model, budget, cands, ctx = setup(name)
    keys = sorted({trace_key(c) for c in cands.configs})
    print(name, len(cands), "configs", len(keys), "keys", flush=True)
    chunks = [set(keys[i::jobs * 4]) for i in range(jobs * 4)]
    res = {}
    with get_context("spawn").Pool(jobs) as pool:
        for part in pool.imap_unordered(_work, [(name, ch) for ch in chunks]):
            res.update(part)
    print("built in", time.time() - t0, flush=True)
    Path("/tmp/oracles").mkdir(exist_ok=True)
    Path(f"/tmp/oracles/{name}.json").write_text(json.dumps(res))
