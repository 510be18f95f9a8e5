#!/usr/bin/env python
"""The model family on one speed–accuracy curve, with YOLOv8n on the same engines.

    python benchmarks/bench_family.py [--configs config/a.yml ...] [--threads 2] [--repeats 60]
                                      [--train] [--budget 00:00:15:00] [--reuse] [--yolo-json FILE]
                                      [--no-write] [--seeds 0 1 2]

(`--seeds` last: it takes every number after it.)

For every config, in one run: parameters of what is deployed (the training-only auxiliary head is not
counted), GFLOPs (2 x multiply-adds, `nanodet-ghost flops`) and the forward time at batch 1 of its ONNX
Runtime fp32, OpenVINO fp32 and OpenVINO INT8 (NNCF) exports at the config's `data.input_size`,
YOLOv8n (`yolov8n.yaml`, nothing downloaded) exported to the same engines at the same size. Rows take
turns in alternating blocks. Weights are random (speed does not depend on them) with BN statistics
from real photos.

Accuracy: BCCD test mAP@[.5:.95] of each config trained from scratch in the `--budget` time budget
(`benchmarks/bench_bccd.py`'s run, one folder per budget, config and seed under work_dirs/family/<budget>/). Without
`--train`, figures come from an earlier run's `bench.json` where there is one. YOLOv8n's comes from
`benchmarks/bench_yolo_bccd.py`'s `bench.json` (`--yolo-json`).

The table replaces the "## Model family" section of docs/benchmarks.md; the curve is drawn to
docs/speed_accuracy.png.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_formats import export_peer, raw_runner  # noqa: E402
from benchmarks.bench_inference import bench_model, cpu_info, load_peer, time_rows  # noqa: E402
from nanodet_ghost.config import load_config  # noqa: E402
from nanodet_ghost.export.calibration import calibration_images  # noqa: E402
from nanodet_ghost.export.formats import export_model  # noqa: E402
from nanodet_ghost.inference.common import preprocess_batch  # noqa: E402
from nanodet_ghost.inference.factory import load_predictor  # noqa: E402
from nanodet_ghost.model import count_parameters  # noqa: E402

logger = logging.getLogger("nanodet_ghost.bench_family")
SECTION = "Model family: speed and accuracy"
FAMILY = (
    "config/bccd_ghost050_pan.yml",
    "config/bccd_ghost050_d50_pan.yml",
    "config/bccd_ghost075_pan.yml",
    "config/bccd_ghost100_d50_pan.yml",
    "config/bccd_ghost_320.yml",
    "config/bccd_ghost_ghostpan_atss.yml",
    "config/bccd_nanodet_plus_ghost.yml",
)
ENGINES = ("onnx", "openvino", "openvino-int8")
ENGINE_NAMES = {"onnx": "ORT fp32", "openvino": "OpenVINO fp32", "openvino-int8": "OpenVINO INT8"}
SPEED_GOAL, MAP_GOAL = 0.70, 0.57
DEFAULT_YOLO_JSON = _REPO_ROOT / "work_dirs" / "yolo_bccd" / "bench.json"


def gflops(model: torch.nn.Module, input_size: List[int]) -> float:
    from nanodet_ghost.commands.flops import measure

    total = [p for p in measure(model, input_size) if p.name == "total"][0]
    return 2 * total.macs / 1e9


def budget_folder(budget: str) -> str:
    """'00:00:30:00' -> '30min': runs of different budgets keep apart folders."""
    days, hours, minutes, seconds = (int(v) for v in budget.split(":"))
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return f"{total // 60}min" if total % 60 == 0 else f"{total}s"


def accuracy(config: str, budget: str, seeds: List[int], train: bool, reuse: bool) -> Optional[Dict[str, object]]:
    """Test mAP per seed of `config` trained in `budget` (None where it was neither trained nor found)."""
    from benchmarks.bench_bccd import run_seed

    save_dir = _REPO_ROOT / "work_dirs" / "family" / budget_folder(budget) / Path(config).stem
    overrides = [f"train.time_budget={budget}", f"train.save_dir={save_dir}"]
    runs = []
    for seed in seeds:
        record = save_dir / f"seed{seed}" / "bench.json"
        if train:
            runs.append(run_seed(config, overrides, seed, reuse))
        elif record.is_file():
            runs.append(json.loads(record.read_text()))
    if not runs:
        return None
    maps = [float(r["test_stats"][0]) for r in runs]
    return {"maps": maps, "epochs": [int(r["epochs"]) for r in runs], "mean": statistics.mean(maps),
            "std": statistics.stdev(maps) if len(maps) > 1 else None}


def speed_rows(config: str, args: argparse.Namespace, workdir: Path, rows: Dict[str, Callable[[], object]],
               photos: List[np.ndarray]) -> Dict[str, object]:
    cfg = load_config(config)
    size = [int(v) for v in cfg.data.input_size]
    model, _ = bench_model(cfg, photos, 300)
    info = {"config": config, "params": count_parameters(model), "gflops": gflops(model, size), "size": size}
    images = calibration_images(cfg, "train", args.calib_images, size)
    batch, _ = preprocess_batch(photos[:1], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
    name = Path(config).stem
    for fmt in ENGINES:
        path = export_model(model, cfg, fmt, workdir / f"{name}.{fmt}{'.onnx' if fmt == 'onnx' else '.xml'}",
                            input_size=size, images=images)
        predictor = load_predictor(path, num_threads=args.threads)
        rows[f"{name} {fmt}"] = lambda p=predictor: p.forward(batch)
    return info


def accuracy_cell(acc: Dict[str, object], seeds: List[int], per_seed: bool = False) -> str:
    """Mean (± sample std) test mAP; says how many seeds where fewer than asked were run."""
    cell = f"{acc['mean']:.3f}" + (f" ± {acc['std']:.3f}" if acc["std"] is not None else "")
    if per_seed and len(acc["maps"]) > 1:
        cell += " (" + " / ".join(f"{m:.3f}" for m in acc["maps"]) + ")"
    if len(acc["maps"]) < len(seeds):
        cell += f" ({len(acc['maps'])} of {len(seeds)} seeds)"
    return cell


def render(infos: List[Dict[str, object]], timings: Dict[str, tuple], yolo: Dict[str, object],
           args: argparse.Namespace) -> List[str]:
    yolo_fastest = min(timings[f"YOLOv8n {fmt}"][0] for fmt in ENGINES) if yolo["timed"] else None
    lines = [f"| config | params (M) | GFLOPs | input | {' | '.join(ENGINE_NAMES[f] + ' ms' for f in ENGINES)} | "
             f"fastest / YOLOv8n's fastest | BCCD test mAP ({args.budget}, seeds {' '.join(map(str, args.seeds))}) "
             "| epochs |", "|---|---:|---:|---|" + "---:|" * len(ENGINES) + "---:|---:|---:|"]
    for info in infos:
        name = Path(str(info["config"])).stem
        ms = [timings[f"{name} {fmt}"][0] for fmt in ENGINES]
        ratio = f"{min(ms) / yolo_fastest:.3f}" if yolo_fastest else "—"
        acc = info["accuracy"]
        acc_cell = "not trained" if acc is None else accuracy_cell(acc, args.seeds, per_seed=True)
        epochs = "—" if acc is None else "/".join(map(str, acc["epochs"]))
        lines.append(f"| `{name}` | {int(info['params']) / 1e6:.3f} | {float(info['gflops']):.2f} | "
                     f"{info['size'][0]}x{info['size'][1]} | {' | '.join(f'{v:.2f}' for v in ms)} | {ratio} | "
                     f"{acc_cell} | {epochs} |")
    if yolo["timed"]:
        ms = [timings[f"YOLOv8n {fmt}"][0] for fmt in ENGINES]
        lines.append(f"| YOLOv8n (ultralytics {yolo['version']}) | {yolo['params'] / 1e6:.3f} | {yolo['gflops']:.2f} | "
                     f"{infos[0]['size'][0]}x{infos[0]['size'][1]} | {' | '.join(f'{v:.2f}' for v in ms)} | 1.000 | "
                     f"{yolo['map_cell']} | {yolo['epochs']} |")
    return lines


def readme_lines(infos: List[Dict[str, object]], yolo: Dict[str, object], timings: Dict[str, tuple],
                 args: argparse.Namespace) -> List[str]:
    """The README's short table: deployed size, cost, fastest forward against YOLOv8n's, BCCD mAP."""
    yolo_fastest = yolo.get("fastest")
    lines = [f"| config | params (M) | GFLOPs | fastest forward ms (engine) | vs YOLOv8n | BCCD test mAP ({args.budget}) |",
             "|---|---:|---:|---:|---:|---:|"]
    for info in infos:
        name = Path(str(info["config"])).stem
        engine = min(ENGINES, key=lambda f: timings[f"{name} {f}"][0])
        acc = info["accuracy"]
        ratio = f"{float(info['fastest']) / yolo_fastest:.2f}x" if yolo_fastest else "—"
        lines.append(f"| `{name}` | {int(info['params']) / 1e6:.2f} | {float(info['gflops']):.2f} | "
                     f"{float(info['fastest']):.2f} ({ENGINE_NAMES[engine]}) | {ratio} | "
                     f"{'—' if acc is None else accuracy_cell(acc, args.seeds)} |")
    if yolo_fastest:
        engine = min(ENGINES, key=lambda f: timings[f"YOLOv8n {f}"][0])
        lines.append(f"| YOLOv8n | {yolo['params'] / 1e6:.2f} | {yolo['gflops']:.2f} | {yolo_fastest:.2f} "
                     f"({ENGINE_NAMES[engine]}) | 1.00x | {yolo_map_cell(yolo)} |")
    return lines


def yolo_best_suffix(yolo: Dict[str, object]) -> str:
    """'; 0.573 at 320 (train imgsz)' where YOLOv8n scores higher at another eval size than ours, else ''."""
    return f"; {yolo['best_map']:.3f} at {yolo['best_size']}" if yolo["best_map"] > yolo["map"] else ""


def yolo_map_cell(yolo: Dict[str, object]) -> str:
    """YOLOv8n's mAP at our eval size, and at its own training size where that is higher."""
    return "—" if yolo["map"] is None else f"{yolo['map']:.3f}" + yolo_best_suffix(yolo)


def target_lines(infos: List[Dict[str, object]], yolo: Dict[str, object], timings: Dict[str, tuple]) -> List[str]:
    if not yolo["timed"]:
        return ["YOLOv8n was not timed: no target can be judged."]
    yolo_fastest = min(timings[f"YOLOv8n {fmt}"][0] for fmt in ENGINES)
    lines = []
    for info in infos:
        acc = info["accuracy"]
        fast = float(info["fastest"]) / yolo_fastest
        ok_speed = fast <= SPEED_GOAL
        beats_yolo = yolo["best_map"] is None or acc is not None and acc["mean"] > yolo["best_map"]
        ok_map = acc is not None and acc["mean"] >= MAP_GOAL and beats_yolo
        measured = "not measured" if acc is None else f"{acc['mean']:.3f}"
        lines.append(f"- `{Path(str(info['config'])).stem}`: speed {fast:.3f} (goal <= {SPEED_GOAL}) "
                     f"{'met' if ok_speed else 'MISSED'}; mAP {measured} (goal >= {MAP_GOAL} and above YOLOv8n) "
                     f"{'met' if ok_map else 'MISSED'}")
    return lines


def plot(infos: List[Dict[str, object]], yolo: Dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.add_subplot()
    for info in infos:
        acc = info["accuracy"]
        if acc is None:
            continue
        ax.errorbar(float(info["fastest"]), acc["mean"], yerr=acc["std"] or 0.0, fmt="o", color="tab:blue")
        ax.annotate(Path(str(info["config"])).stem.replace("bccd_", ""), (float(info["fastest"]), acc["mean"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    if yolo["timed"] and yolo["map"] is not None:
        ax.plot([yolo["fastest"]], [yolo["map"]], marker="*", markersize=14, color="tab:red", linestyle="none",
                label="YOLOv8n")
        if yolo["best_map"] > yolo["map"]:
            ax.plot([yolo["fastest"]], [yolo["best_map"]], marker="*", markersize=14, markerfacecolor="none",
                    color="tab:red", linestyle="none", label=f"YOLOv8n evaluated at {yolo['best_size']}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("fastest forward (ms, batch 1, 2 threads)")
    ax.set_ylabel("BCCD test mAP@[.5:.95]")
    ax.set_title("nanodet-ghost family vs YOLOv8n (same machine, same run)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def yolo_figures(args: argparse.Namespace, rows: Dict[str, Callable[[], object]], photos: List[np.ndarray],
                 size: List[int], workdir: Path) -> Dict[str, object]:
    peer, version = load_peer(args.threads)
    # best_map: the higher of YOLOv8n's eval sizes (ours, its training size), what the accuracy target must beat
    figures: Dict[str, object] = {"timed": peer is not None, "version": version, "map": None, "best_map": None,
                                  "best_size": None, "map_cell": "not trained", "epochs": "—", "command": "not run"}
    if args.yolo_json.is_file():
        record = json.loads(args.yolo_json.read_text())
        row = [r for r in record["rows"] if r["eval_size"] == f"{size[0]}x{size[1]}"][0]  # scored at our size
        best = max(record["rows"], key=lambda r: float(r["test_stats"][0]))
        test_map = float(row["test_stats"][0])
        figures.update(map=test_map, best_map=float(best["test_stats"][0]), best_size=best["eval_size"],
                       epochs=str(record["epochs"]), command=f"`{record['command']}`")
        figures["map_cell"] = f"{test_map:.3f} ({record['train_args']['time'] * 60:.0f} min)" + yolo_best_suffix(figures)
    if peer is None:
        return figures
    from nanodet_ghost.commands.flops import _count_macs

    x = torch.zeros(1, 3, size[1], size[0])
    figures["params"] = sum(p.numel() for p in peer.parameters())
    figures["gflops"] = 2 * _count_macs(peer, x) / 1e9
    batch = np.ascontiguousarray(np.stack([preprocess_batch([p], size, True, [0, 0, 0], [255, 255, 255])[0][0]
                                           for p in photos[:8]])[:, ::-1], dtype=np.float32)
    paths = export_peer(peer, batch, size, workdir)
    one = np.ascontiguousarray(batch[:1])
    for fmt in ENGINES:
        rows[f"YOLOv8n {fmt}"] = lambda fn=raw_runner(paths[fmt], args.threads): fn(one)
    return figures


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_family.py", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(FAMILY))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--budget", default="00:00:15:00", help="training time budget of each accuracy run")
    parser.add_argument("--train", action="store_true", help="train each config (else read earlier bench.json)")
    parser.add_argument("--reuse", action="store_true", help="with --train: keep a seed's earlier bench.json")
    parser.add_argument("--yolo-json", type=Path, default=DEFAULT_YOLO_JSON,
                        help="bench.json of benchmarks/bench_yolo_bccd.py")
    parser.add_argument("--plot", type=Path, default=_REPO_ROOT / "docs" / "speed_accuracy.png")
    parser.add_argument("--readme", type=Path, default=_REPO_ROOT / "README.md",
                        help="README whose bench_family table is replaced")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ and the README alone")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for quiet in ("nanodet_ghost.model", "nanodet_ghost.export", "nanodet_ghost.evaluation", "nncf"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    configs = [str(Path(c)) for c in args.configs]
    accuracies = {c: accuracy(c, args.budget, args.seeds, args.train, args.reuse) for c in configs}
    first = load_config(configs[0])
    from nanodet_ghost.data.loader import build_source_for

    source = build_source_for(first.data.test, list(first.data.class_names), "test")
    photos = [source.load_image(i) for i in range(min(len(source), 8))]
    load_before = os.getloadavg()
    rows: Dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_family_") as tmp:
        infos = [speed_rows(c, args, Path(tmp), rows, photos) for c in configs]
        for info in infos:
            info["accuracy"] = accuracies[str(info["config"])]
        yolo = yolo_figures(args, rows, photos, [int(v) for v in first.data.input_size], Path(tmp))
        torch.set_num_threads(args.threads)  # importing ultralytics may change it
        timings = time_rows(rows, args.warmup, args.repeats, args.rounds)
    load_after = os.getloadavg()
    for info in infos:
        info["fastest"] = min(timings[f"{Path(str(info['config'])).stem} {fmt}"][0] for fmt in ENGINES)
    if yolo["timed"]:
        yolo["fastest"] = min(timings[f"YOLOv8n {fmt}"][0] for fmt in ENGINES)
    import onnxruntime
    import openvino

    table = render(infos, timings, yolo, args)
    yolo_json = os.path.relpath(args.yolo_json.resolve(), _REPO_ROOT)
    body = [
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by "
        f"`python benchmarks/bench_family.py{' --train' if args.train else ''} --budget {args.budget} "
        f"--yolo-json {yolo_json} --seeds {' '.join(map(str, args.seeds))}` (one run; without --train the "
        "accuracy comes from the runs' bench.json).", "",
        f"- Machine: {cpu_info()}; load average (1 min) before / after the timing: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f}.",
        f"- Versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenVINO "
        f"{openvino.__version__.split('-')[0]}, ultralytics {yolo['version']}.",
        f"- Forward: the runtime alone on one preprocessed BCCD test photo, batch 1, {args.threads} threads, median "
        f"of {args.repeats} runs in {args.rounds} alternating blocks. INT8: NNCF, {args.calib_images} calibration "
        "images of data.train. Parameters: what is exported (no auxiliary head). GFLOPs: 2 x multiply-adds of "
        "convolutions and matrix products at the input size.",
        f"- Accuracy: BCCD test mAP@[.5:.95] at the config's input size, trained from scratch in {args.budget} "
        f"(`benchmarks/bench_bccd.py`'s loop, one folder per config under work_dirs/family/{budget_folder(args.budget)}/); YOLOv8n: "
        f"{yolo['command']} (ultralytics' own time budget, scored by the same evaluator at the same size).", "",
    ] + table + ["", f"Targets: fastest forward <= {SPEED_GOAL} x YOLOv8n's fastest, test mAP >= {MAP_GOAL} "
                     "and above YOLOv8n's (issue 21):", ""] + target_lines(infos, yolo, timings)
    print("\n".join(body))
    if not args.no_write:
        from benchmarks.report import write_section

        from benchmarks.report import replace_between_markers

        write_section(SECTION, "\n".join(body))
        if any(i["accuracy"] is not None for i in infos):
            plot(infos, yolo, args.plot)
        if not replace_between_markers(args.readme, "bench_family", readme_lines(infos, yolo, timings, args)):
            logger.warning("%s has no bench_family markers: the README table is not updated", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
