#!/usr/bin/env python
"""Every deployment format in one table (our answer to `yolo benchmark`): size, BCCD mAP, latency.

    python benchmarks/bench_formats.py --ckpt best.ckpt [--config config/bccd_ghost_320.yml]
                                       [--input-size 320 320] [--threads 2] [--calib-images 200]
                                       [--repeats 60] [--profile] [--recipes] [--note TEXT] [--no-peer]
                                       [--out docs/benchmarks.md] [--readme README.md]

Each format is exported from the checkpoint with `nanodet_ghost.export.formats.export_model`, scored
on the config's test split with `evaluate_checkpoint` (the `tools/test.py` path) and timed at batch
1: *forward* is the runtime alone on a preprocessed image, *end to end* is `predict(image)` (pre,
forward, decode + NMS, mapping back) cycling over the test photos. YOLOv8n (`yolov8n.yaml`, random
weights, nothing downloaded) runs on the same engines: its ONNX export, that ONNX quantized by the
same ORT code on the same calibration images (with YOLO's RGB / 255 preprocessing), and OpenVINO
fp32 / INT8 (NNCF) converted from that ONNX. Rows take turns in alternating blocks, as in
bench_inference.py. Without --ckpt the model has random weights and mAP is not reported.
`--profile` adds the runtimes' per-op profiles, `--recipes` the mAP and time of each candidate INT8
recipe. The result replaces the "## Deployment formats" section of docs/benchmarks.md and the
table between the bench_formats markers of the README.
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata
import datetime
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_inference import (  # noqa: E402
    Timing, _FirstOutput, bench_model, cpu_info, cycle, load_peer, time_rows)
from benchmarks.format_heads import add_head_rows, export_heads, head_checks, head_notes  # noqa: E402
from nanodet_ghost.config import load_config  # noqa: E402
from nanodet_ghost.export.calibration import calibration_images  # noqa: E402
from nanodet_ghost.export.formats import export_model  # noqa: E402
from nanodet_ghost.export.onnx_int8 import DEFAULT_RECIPE  # noqa: E402
from nanodet_ghost.export.openvino import DEFAULT_NNCF_RECIPE  # noqa: E402
from nanodet_ghost.inference.common import preprocess_batch  # noqa: E402
from nanodet_ghost.inference.factory import load_predictor  # noqa: E402
from nanodet_ghost.inference.predictor import Predictor  # noqa: E402
from nanodet_ghost.model.fuse import optimize_for_inference  # noqa: E402
from nanodet_ghost.paths import CONFIG_DIR  # noqa: E402

logger = logging.getLogger("nanodet_ghost.bench_formats")
SECTION = "Deployment formats"
DEFAULT_CONFIG = CONFIG_DIR / "bccd_ghost_320.yml"
FILES = {"onnx": "ours.onnx", "onnx-int8": "ours.int8.onnx", "openvino": "ours.xml", "openvino-int8": "ours.int8.xml",
         "ncnn": "ours.ncnn.param", "mnn": "ours.mnn", "mnn-int8": "ours.int8.mnn"}  # runtimes (not safetensors)
ENGINE = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime", "openvino": "OpenVINO", "openvino-int8": "OpenVINO",
          "ncnn": "ncnn", "mnn": "MNN", "mnn-int8": "MNN", "pytorch": "PyTorch"}
FP32_OF = {"onnx-int8": "onnx", "openvino-int8": "openvino", "mnn-int8": "mnn"}
Row = Dict[str, object]
METHOD_NOTES = [
    "What the exports do to be fast, and why (each is exact or measured; the profiles below show the rest):",
    "",
    "- Graph: GhostModule's `cat(...)[:, :out_chs]` slice is skipped when the concatenation already has "
    "`out_chs` channels (all of GhostNet 1.0x), so no Slice reaches any format; the squeeze-excite means "
    "(`ReduceMean` over H, W) are written as `GlobalAveragePool`, which ONNX Runtime quantizes "
    "(`QLinearGlobalAveragePool`) instead of leaving them in float between Q/DQ pairs and layout transposes.",
    "- ONNX Runtime INT8: QDQ with uint8 activations and per-channel int8 weights (its VNNI kernels; int8 "
    "activations ran 2-3x slower), MinMax calibration, the graph optimised by `quant_pre_process` first. "
    "The head's three output convolutions stay in float: they make the class logits and the box "
    "distributions, whose softmax shape (not just their argmax) becomes the boxes; see the recipe table.",
    "- OpenVINO INT8: NNCF's performance preset (symmetric), every convolution quantized: there, keeping "
    "the head's output convolutions in float bought no mAP and cost time (recipe table). OpenVINO runs "
    "int8 on AMX / VNNI where the CPU has them. Every OpenVINO model is compiled with "
    "`INFERENCE_PRECISION_HINT: f32`: the CPU plugin's default on bf16-capable CPUs is bf16, which breaks "
    "the fp32 parity.",
    "- ncnn: pnnx with fp32 weights (`fp16=0`) and fp16 / bf16 storage and arithmetic switched off at "
    "run time, for the same reason.",
]


SIBLINGS = {".onnx": (), ".xml": (".bin",), ".param": (".bin", ".json"), ".mnn": (".mnn.json",)}


def file_size_mb(path: Path) -> float:
    """Size of a model file with its weights / sidecar (OpenVINO .bin, ncnn .bin + .json, MNN .mnn.json)."""
    return sum(p.stat().st_size for p in [path] + [path.with_suffix(s) for s in SIBLINGS[path.suffix]]) / 1e6


def model_map(cfg, path: Path, split: str) -> float:
    from nanodet_ghost.evaluation.runner import evaluate_checkpoint

    return float(evaluate_checkpoint(cfg, path, split, device="cpu").map)


def yolo_images(args: argparse.Namespace, size: List[int]) -> np.ndarray:
    """The calibration images again (same files), through YOLO's preprocessing: RGB / 255."""
    cfg = load_config(args.config, [f"data.input_size=[{size[0]},{size[1]}]", "data.mean=[0,0,0]",
                                    "data.std=[255,255,255]"] + list(args.override))
    return np.ascontiguousarray(calibration_images(cfg, args.calib_split, args.calib_images, size)[:, ::-1])


def export_peer(peer: torch.nn.Module, images: np.ndarray, size: List[int], workdir: Path) -> Dict[str, Path]:
    """YOLOv8n as ONNX, ONNX INT8 (our ORT recipe), OpenVINO fp32 and INT8 (NNCF)."""
    from nanodet_ghost.export.onnx_int8 import quantize_onnx
    from nanodet_ghost.export.openvino import export_openvino

    onnx_path = workdir / "yolov8n.onnx"
    with torch.no_grad():
        torch.onnx.export(_FirstOutput(copy.deepcopy(peer)), (torch.zeros(1, 3, size[1], size[0]),), str(onnx_path),
                          input_names=["images"], opset_version=13, dynamo=False)
    return {"onnx": onnx_path,
            "onnx-int8": Path(quantize_onnx(onnx_path, workdir / "yolov8n.int8.onnx", images)),
            "openvino": Path(export_openvino(onnx_path, workdir / "yolov8n.xml")),
            "openvino-int8": Path(export_openvino(onnx_path, workdir / "yolov8n.int8.xml", images))}


def raw_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A forward function over a model file without metadata (the peer's)."""
    if path.suffix == ".onnx":
        from nanodet_ghost.inference.backends.onnxruntime import session_options
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"images": x})
    import openvino as ov

    from nanodet_ghost.inference.backends.openvino import compile_config

    core = ov.Core()
    request = core.compile_model(core.read_model(str(path)), "CPU", compile_config(threads)).create_infer_request()
    return lambda x: request.infer({0: x})


def run(args: argparse.Namespace, workdir: Path) -> Tuple[List[Row], List[Row], Dict[str, Timing], List[str]]:
    size = [int(v) for v in args.input_size]
    cfg = load_config(args.config, [f"data.input_size=[{size[0]},{size[1]}]"] + list(args.override))
    from nanodet_ghost.data.loader import build_source_for

    test_source = build_source_for(cfg.data[args.split], list(cfg.data.class_names), args.split)
    photos = [test_source.load_image(i) for i in range(min(len(test_source), 12))]  # the scored split
    if args.ckpt:
        from nanodet_ghost.model import load_detector

        model = load_detector(cfg, args.ckpt, prefer_ema=True)
    else:
        model, _ = bench_model(cfg, photos, 300)
    images = calibration_images(cfg, args.calib_split, args.calib_images, size)
    paths = {fmt: Path(export_model(model, cfg, fmt, workdir / FILES[fmt], input_size=size, images=images))
             for fmt in FILES}
    ours: List[Row] = [{"format": "pytorch (fused, channels-last)", "key": "pytorch", "size": None,
                        "map": model_map(cfg, Path(args.ckpt), args.split) if args.ckpt else None}]
    paths.update(export_heads(model, cfg, size, workdir))
    for fmt, path in paths.items():
        label = fmt.replace("+", ", ") + " head" if "+" in fmt else fmt
        ours.append({"format": label, "key": fmt, "size": file_size_mb(path),
                     "map": model_map(cfg, path, args.split) if args.ckpt else None})
    batch, metas = preprocess_batch(photos[:1], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
    torch.set_num_threads(args.threads)
    fast = optimize_for_inference(model)
    predictors = {fmt: load_predictor(p, num_threads=args.threads) for fmt, p in paths.items()}
    torch_predictor = Predictor.from_config(cfg, model, fuse=True)
    x = torch.from_numpy(batch)
    rows: Dict[str, Callable[[], object]] = {"ours pytorch forward": lambda: fast(x)}
    raw_predictors = {fmt: p for fmt, p in predictors.items() if "+" not in fmt}
    for fmt, predictor in raw_predictors.items():
        rows[f"ours {fmt} forward"] = lambda p=predictor: p.forward(batch)
    rows["ours pytorch end to end"] = cycle([lambda img=img: torch_predictor.predict(img) for img in photos])
    for fmt, predictor in raw_predictors.items():
        rows[f"ours {fmt} end to end"] = cycle([lambda img=img, p=predictor: p.predict(img) for img in photos])
    add_head_rows(rows, {k: p for k, p in predictors.items() if "+" in k}, batch, photos, cfg, cycle)
    pre, post_torch, post_np, candidates = [], [], [], []
    for img in photos:  # pre and post alone, on each photo's own forward output
        b, m = preprocess_batch([img], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
        pre.append(lambda img=img: preprocess_batch([img], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std))
        with torch.inference_mode():
            raw = fast(torch.from_numpy(b))
        out = predictors["onnx"].forward(b)
        post_torch.append(lambda raw=raw, m=m: fast.predict(raw, m, (size[1], size[0])))
        post_np.append(lambda out=out, m=m: predictors["onnx"].postprocess(out, m, (size[1], size[0])))
        candidates.append(int((out[..., :model.num_classes] > cfg.model.postprocess.score_thr).sum()))
    rows.update({"ours pre": cycle(pre), "ours pytorch post": cycle(post_torch), "ours numpy post": cycle(post_np)})
    peer_rows: List[Row] = []
    peer, peer_note = (None, "skipped (--no-peer)") if args.no_peer else load_peer(args.threads)
    if peer is not None:
        yolo_batch = np.ascontiguousarray(batch[:, ::-1] * (np.array(cfg.data.std)[::-1, None, None] / 255.0)
                                          + np.array(cfg.data.mean)[::-1, None, None] / 255.0, dtype=np.float32)
        peer_paths = export_peer(peer, yolo_images(args, size), size, workdir)
        yolo_x = torch.from_numpy(yolo_batch)
        rows["YOLOv8n pytorch forward"] = lambda: peer(yolo_x)
        peer_rows.append({"format": "pytorch (fused)", "key": "pytorch", "size": None, "map": None})
        for fmt, path in peer_paths.items():
            rows[f"YOLOv8n {fmt} forward"] = lambda fn=raw_runner(path, args.threads): fn(yolo_batch)
            peer_rows.append({"format": fmt, "key": fmt, "size": file_size_mb(path), "map": None})
    recipe_paths: Dict[str, Path] = {}
    if args.recipes and args.ckpt:
        from benchmarks.int8_recipes import build_recipes

        recipe_paths = build_recipes(paths["onnx"], images, workdir)
        for label, path in recipe_paths.items():
            rows[f"recipe {label}"] = lambda p=load_predictor(path, num_threads=args.threads): p.forward(batch)
    torch.set_num_threads(args.threads)  # importing ultralytics may change it
    with torch.inference_mode():
        timings = time_rows(rows, args.warmup, args.repeats, args.rounds)
    notes = [f"ultralytics {peer_note}", f"{len(images)} calibration images of data.{args.calib_split}",
             "", f"Pre- and post-processing alone, per photo of the {args.split} split: pre (letterbox + normalise) "
             f"{timings['ours pre'][0]:.2f} ms, PyTorch post {timings['ours pytorch post'][0]:.2f} ms, numpy post "
             f"{timings['ours numpy post'][0]:.2f} ms, for {np.mean(candidates):.0f} (point, class) scores above "
             f"score_thr={cfg.model.postprocess.score_thr} per photo on average."]
    notes += ["", "With the nms head (medians of this run):", ""] + head_notes(timings)
    if recipe_paths:
        from benchmarks.int8_recipes import recipe_table

        maps = {label: model_map(cfg, path, args.split) for label, path in recipe_paths.items()}
        fp32_map = {r["key"]: r["map"] for r in ours}
        notes += ["", "### INT8 recipes (same calibration images, same run)", ""]
        notes += recipe_table(recipe_paths, maps, lambda label: timings[f"recipe {label}"][0], fp32_map)
    if args.profile:
        peer_model = (peer_paths["openvino-int8"], yolo_batch) if peer is not None else None
        notes += profile_section(paths, batch, args.threads, peer_model)
    return ours, peer_rows, timings, notes


def profile_section(paths: Dict[str, Path], batch: np.ndarray, threads: int,
                    peer: Optional[Tuple[Path, np.ndarray]] = None) -> List[str]:
    """Per-op-type profile tables of our ORT and OpenVINO models (and of YOLOv8n's OpenVINO INT8
    model when `peer` = (its IR, its input) is given), each with a one-line summary."""
    from benchmarks.profiling import openvino_profile, ort_profile, render_profile

    runs = [(f"ours {fmt}", ort_profile if fmt.startswith("onnx") else openvino_profile, paths[fmt], batch)
            for fmt in ("onnx", "onnx-int8", "openvino", "openvino-int8")]
    if peer is not None:
        runs.append(("YOLOv8n openvino-int8", openvino_profile, peer[0], peer[1]))
    lines = ["", "### Where the forward time goes (runtime profilers, same input, same threads)", ""]
    for title, profile, path, x in runs:
        ops = profile(str(path), x, threads)
        total = sum(ms for _, ms, _, _ in ops) or 1.0
        nodes = sum(count for _, _, count, _ in ops)
        top = ", ".join(f"{op} {100 * ms / total:.0f} % ({count} nodes)" for op, ms, count, _ in ops[:4])
        lines += [f"{title}: {nodes} nodes executed, {total:.2f} ms of op time; {top}.", ""]
        lines += render_profile(title, ops)
    return lines


def table(ours: List[Row], peers: List[Row], t: Dict[str, Timing], split: str) -> List[str]:
    lines = [f"| model | format | engine | size MB | {split} mAP | forward median ms | forward p90 ms | "
             "end to end median ms |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for who, rows in (("ours", ours), ("YOLOv8n", peers)):
        for row in rows:
            key = row["key"]
            fwd = t.get(f"{who} {key} forward")
            e2e = t.get(f"{who} {key} end to end")
            size = f"{row['size']:.1f}" if row["size"] is not None else "—"
            map_ = f"{row['map']:.3f}" if row["map"] is not None else "—"
            lines.append(f"| {who} | {row['format']} | {ENGINE[key.split('+')[0]]} | {size} | {map_} | "
                         f"{fwd[0]:.2f} | {fwd[1]:.2f} | {f'{e2e[0]:.2f}' if e2e else '—'} |")
    return lines


def target_lines(ours: List[Row], peers: List[Row], t: Dict[str, Timing]) -> List[str]:
    """The issue's targets, each with its measured value."""
    med = {name: v[0] for name, v in t.items()}
    deploy = [r["key"] for r in ours if r["key"] != "pytorch" and "+" not in r["key"]]
    fastest = min(deploy, key=lambda k: med[f"ours {k} forward"])
    ort_fp32 = med["ours onnx forward"]
    maps = {r["key"]: r["map"] for r in ours}
    checks: List[Tuple[str, Optional[float], str, float]] = [
        (f"our ORT fp32 forward / our fastest ({fastest}) forward", ort_fp32 / med[f"ours {fastest} forward"],
         ">=", 1.5)]
    peer_keys = [r["key"] for r in peers if r["key"] != "pytorch"]
    if peer_keys:
        peer_fastest = min(peer_keys, key=lambda k: med[f"YOLOv8n {k} forward"])
        checks.append((f"our fastest forward / YOLOv8n's fastest ({peer_fastest})",
                       med[f"ours {fastest} forward"] / med[f"YOLOv8n {peer_fastest} forward"], "<=", 0.85))
    for int8, fp32 in FP32_OF.items():
        if f"ours {int8} forward" not in med:  # a runtime not installed
            continue
        checks.append((f"{int8} forward / {fp32} forward", med[f"ours {int8} forward"] / med[f"ours {fp32} forward"],
                       "<", 1.0))
        if maps["pytorch"] is not None:
            checks.append((f"{int8} mAP loss vs {fp32}", maps[fp32] - maps[int8], "<=", 0.010))
    if maps["pytorch"] is not None:
        for fmt in [k for k in maps if k != "pytorch" and k not in FP32_OF]:
            checks.append((f"|{fmt} mAP - PyTorch mAP|", abs(maps[fmt] - maps["pytorch"]), "<=", 0.001))
    pre = med["ours pre"]
    checks.append(("PyTorch path: (pre + post) / forward", (pre + med["ours pytorch post"]) / med["ours pytorch forward"],
                   "<=", 0.15))
    checks.append(("ORT path: (pre + post) / forward", (pre + med["ours numpy post"]) / ort_fp32, "<=", 0.15))
    checks += head_checks(t)
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    lines = ["| target | measured | goal | |", "|---|---:|---:|---|"]
    for label, value, op, goal in checks:
        lines.append(f"| {label} | {value:.3f} | {op} {goal} | {'met' if ops[op](value, goal) else 'MISSED'} |")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_formats.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--ckpt", help="trained checkpoint of --config (else random weights, no mAP)")
    parser.add_argument("--input-size", type=int, nargs=2, default=[320, 320], metavar=("W", "H"))
    parser.add_argument("--split", default="test", choices=("val", "test"), help="split scored for mAP")
    parser.add_argument("--calib-split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--calib-images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="add per-op-type profiles of our ORT / OpenVINO models")
    parser.add_argument("--recipes", action="store_true", help="also score and time the candidate INT8 recipes")
    parser.add_argument("--note", default="", help="how the checkpoint was trained, for the docs")
    parser.add_argument("--no-peer", action="store_true", help="skip YOLOv8n")
    parser.add_argument("--override", "-o", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=_REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--readme", default=str(_REPO_ROOT / "README.md"),
                        help="README whose bench_formats table is replaced (--readme '' to leave it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for quiet in ("nanodet_ghost.model.fuse", "nanodet_ghost.evaluation", "nanodet_ghost.export", "nncf"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_formats_") as tmp:
        ours, peers, timings, notes = run(args, Path(tmp))
    load_after = os.getloadavg()
    import onnxruntime
    import openvino

    import ncnn

    header = [
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by "
        "`benchmarks/bench_formats.py` (one run).", "",
        f"- Machine: {cpu_info()}.",
        f"- Input {args.input_size[0]}x{args.input_size[1]}, batch 1, {args.threads} threads in every engine "
        f"(torch.set_num_threads, ORT intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS with the LATENCY hint "
        f"and f32 inference precision, ncnn opt.num_threads); {args.repeats} timed runs per row in "
        f"{args.rounds} alternating blocks after {args.warmup} warm-up runs each.",
        f"- Versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, OpenVINO "
        f"{openvino.__version__.split('-')[0]}, ncnn {ncnn.__version__}, MNN {importlib.metadata.version('MNN')}, "
        f"{notes[0]}.",
        f"- Model: {'`' + Path(args.ckpt).name + '` of `' + args.config.name + '`' if args.ckpt else 'random weights'}"
        f"{' (' + args.note + ')' if args.note else ''}; "
        f"mAP@[.5:.95] on its {args.split} split through `evaluate_checkpoint` (what `tools/test.py` runs), "
        f"at the benchmark's input size. INT8: {notes[1]}, validation preprocessing; ONNX Runtime "
        f"{DEFAULT_RECIPE.describe()}; OpenVINO {DEFAULT_NNCF_RECIPE.describe()}.",
        f"- Load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}.", "",
    ]
    body = header + table(ours, peers, timings, args.split) + ["", "Targets (ratios of medians in this run):", ""]
    body += target_lines(ours, peers, timings) + [""] + METHOD_NOTES + notes[2:]
    from benchmarks.report import write_section

    write_section(SECTION, "\n".join(body), args.out)
    if args.readme:
        write_readme_table(Path(args.readme), readme_table(ours, timings, args))
    print("\n".join(body))
    return 0


README_START, README_END = "<!-- bench_formats:start -->", "<!-- bench_formats:end -->"


def readme_table(ours: List[Row], t: Dict[str, Timing], args: argparse.Namespace) -> List[str]:
    """The short table of the README: format, size, mAP, forward and end-to-end ms."""
    lines = [f"| format | size MB | {args.split} mAP | forward ms | end to end ms |", "|---|---:|---:|---:|---:|"]
    for row in ours:
        size = f"{row['size']:.1f}" if row["size"] is not None else "—"
        map_ = f"{row['map']:.3f}" if row["map"] is not None else "—"
        forward, end_to_end = t[f"ours {row['key']} forward"][0], t[f"ours {row['key']} end to end"][0]
        lines.append(f"| {row['format']} | {size} | {map_} | {forward:.2f} | {end_to_end:.2f} |")
    return lines


def write_readme_table(readme: Path, lines: List[str]) -> None:
    """Replace what stands between the bench_formats markers of the README."""
    from benchmarks.report import replace_between_markers

    if not replace_between_markers(readme, "bench_formats", lines):
        logger.warning("%s has no %s / %s markers: the README table is not updated", readme, README_START, README_END)


if __name__ == "__main__":
    sys.exit(main())
