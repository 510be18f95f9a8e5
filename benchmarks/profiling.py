"""Where the forward time goes, per op type, from the runtimes' own profilers.

`ort_profile` turns on ONNX Runtime's `enable_profiling` and sums the kernel times of the json trace;
`openvino_profile` compiles with `PERF_COUNT` and sums `get_profiling_info()`. Both return
`[(op type, ms per run, nodes per run, kernels)]`, slowest first, for one input repeated `runs` times.
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
from typing import List, Tuple

import numpy as np

OpTime = Tuple[str, float, int, str]  # op type, ms per run, nodes, kernel names seen


def ort_profile(path: str, batch: np.ndarray, threads: int, runs: int = 30) -> List[OpTime]:
    """Per-op-type kernel time of the ONNX model at `path` under ONNX Runtime."""
    import onnxruntime as ort

    from nanodet_ghost.inference.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory(prefix="ort_profile_") as tmp:
        session = ort.InferenceSession(path, session_options(threads, os.path.join(tmp, "trace")),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: batch})
        events = json.load(open(session.end_profiling()))
    totals: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            totals[op] += event["dur"] / 1000.0
            nodes[op] += 1
    return [(op, ms / runs, nodes[op] // runs, "") for op, ms in totals.most_common()]


def openvino_profile(path: str, batch: np.ndarray, threads: int, runs: int = 30) -> List[OpTime]:
    """Per-layer-type time of the OpenVINO IR at `path` (fp32 inference precision, as deployed)."""
    import openvino as ov

    from nanodet_ghost.inference.backends.openvino import compile_config

    core = ov.Core()
    request = core.compile_model(core.read_model(path), "CPU", compile_config(threads, profile=True)
                                 ).create_infer_request()
    totals: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    kernels = collections.defaultdict(set)
    for _ in range(runs):
        request.infer({0: batch})
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                totals[info.node_type] += info.real_time.total_seconds() * 1000.0
                nodes[info.node_type] += 1
                kernels[info.node_type].add(info.exec_type)
    return [(op, ms / runs, nodes[op] // runs, " ".join(sorted(kernels[op]))) for op, ms in totals.most_common()]


def render_profile(title: str, ops: List[OpTime], top: int = 8) -> List[str]:
    """Markdown lines: the `top` op types with their share of the summed op time."""
    total = sum(ms for _, ms, _, _ in ops) or 1.0
    lines = [f"**{title}** (op time summed {total:.2f} ms per run)", "",
             "| op type | ms / run | share | nodes | kernels |", "|---|---:|---:|---:|---|"]
    lines += [f"| {op} | {ms:.3f} | {100 * ms / total:.0f} % | {count} | {kern} |" for op, ms, count, kern in ops[:top]]
    return lines + [""]
