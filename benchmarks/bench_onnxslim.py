#!/usr/bin/env python
"""Does graph simplification help our exports? onnxslim on each head's ONNX graph: nodes, ms, parity.

    python benchmarks/bench_onnxslim.py [--config config/bccd_ghost_320.yml] [--threads 2]
                                        [--repeats 60] [--rounds 5] [--no-write]

For the raw, boxes and nms heads, the ONNX export (our own rewrites applied) is passed through
`onnxslim.slim`; the table gives the node count before and after, the forward median on ONNX
Runtime and on OpenVINO (converted from each graph) in one alternating run, and the largest output
difference between the two graphs on BCCD test photos. The result replaces the "Graph
simplification (onnxslim)" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import logging
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks.bench_inference import bench_model, cpu_info, time_rows  # noqa: E402
from nanodet_ghost.config import load_config  # noqa: E402
from nanodet_ghost.export.formats import export_model  # noqa: E402
from nanodet_ghost.inference.common import preprocess_batch  # noqa: E402

SECTION = "Graph simplification (onnxslim)"
HEADS = ("raw", "boxes", "nms")
ADOPT_GAIN = 0.03  # run-to-run noise of a forward median here is a few per cent


def slim(path: Path, out: Path) -> Path:
    """`onnxslim.slim` of the graph at `path`, metadata kept, saved to `out`."""
    import onnx
    import onnxslim

    model = onnx.load(str(path))
    slimmed = onnxslim.slim(model)
    del slimmed.metadata_props[:]
    slimmed.metadata_props.extend(model.metadata_props)
    onnx.save(slimmed, str(out))
    return out


def node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path)).graph.node)


def measure(cfg, photos: List[np.ndarray], workdir: Path, args: argparse.Namespace) -> List[Dict[str, object]]:
    from nanodet_ghost.export.openvino import export_openvino
    from nanodet_ghost.inference.exported_predictor import ExportedPredictor

    model, _ = bench_model(cfg, photos, 300)
    size = [int(v) for v in cfg.data.input_size]
    batch, _ = preprocess_batch(photos[:1], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
    results, rows = [], {}
    for head in HEADS:
        plain = Path(export_model(model, cfg, "onnx", workdir / f"{head}.onnx", input_size=size, head=head))
        slimmed = slim(plain, workdir / f"{head}.slim.onnx")
        graphs = {"plain": plain, "slim": slimmed}
        predictors = {}
        for kind, path in graphs.items():
            predictors[kind, "ORT"] = ExportedPredictor(path, num_threads=args.threads)
            xml = export_openvino(str(path), str(workdir / f"{head}.{kind}.xml"))
            predictors[kind, "OpenVINO"] = ExportedPredictor(xml, num_threads=args.threads)
        diff = 0.0
        for image in photos:
            one, _ = preprocess_batch([image], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
            a, b = predictors["plain", "ORT"].run(one), predictors["slim", "ORT"].run(one)
            diff = max(diff, max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) if a[k].size else 0.0
                                 for k in a))
        for (kind, engine), predictor in predictors.items():
            rows[f"{head} {kind} {engine}"] = lambda p=predictor: p.run(batch)
        results.append({"head": head, "nodes": node_count(plain), "slim_nodes": node_count(slimmed), "diff": diff})
    timings = time_rows(rows, args.warmup, args.repeats, args.rounds)
    for result in results:
        for engine in ("ORT", "OpenVINO"):
            for kind in ("plain", "slim"):
                result[f"{kind} {engine}"] = timings[f"{result['head']} {kind} {engine}"][0]
    return results


def render(results: List[Dict[str, object]], args: argparse.Namespace, config: str) -> List[str]:
    lines = [f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by "
             f"`python benchmarks/bench_onnxslim.py --config {config}` (one run); onnxslim "
             f"{importlib.metadata.version('onnxslim')}.", "",
             f"- Machine: {cpu_info()}; batch 1, {args.threads} threads, median of {args.repeats} runs in "
             f"{args.rounds} alternating blocks; random weights calibrated on BCCD test photos.", "",
             "| head | nodes | nodes after onnxslim | ORT ms | ORT ms slim | OpenVINO ms | OpenVINO ms slim | "
             "max abs output diff |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['head']} | {r['nodes']} | {r['slim_nodes']} | {r['plain ORT']:.2f} | {r['slim ORT']:.2f} | "
                     f"{r['plain OpenVINO']:.2f} | {r['slim OpenVINO']:.2f} | {r['diff']:.2g} |")
    lines.append("")
    for engine in ("ORT", "OpenVINO"):
        ratio = float(np.exp(np.mean([np.log(r[f"slim {engine}"] / r[f"plain {engine}"]) for r in results])))
        verdict = "faster" if ratio < 1 - ADOPT_GAIN else "no measurable gain"
        lines.append(f"- {engine}: slimmed / plain forward, geometric mean over the heads: {ratio:.3f} ({verdict}; "
                     f"adopting it would need a gain of more than {ADOPT_GAIN:.0%}, beyond this machine's noise).")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_onnxslim.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/bccd_ghost_320.yml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config)
    from nanodet_ghost.data.loader import build_source_for

    source = build_source_for(cfg.data.test, list(cfg.data.class_names), "test")
    photos = [source.load_image(i) for i in range(min(len(source), args.photos))]
    with tempfile.TemporaryDirectory(prefix="bench_onnxslim_") as tmp:
        results = measure(cfg, photos, Path(tmp), args)
    lines = render(results, args, args.config)
    print("\n".join(lines))
    if not args.no_write:
        from benchmarks.report import write_section

        write_section(SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
