from setuptools import find_packages, setup

setup(
    name="nanodet_ghost",
    version="0.1.0",
    description="NanoDet-style real-time object detector with a GhostNet backbone",
    packages=find_packages(include=["nanodet_ghost", "nanodet_ghost.*"]),
    package_data={"nanodet_ghost": ["configs/*.yml"]},  # the shipped configs, by name: `nanodet-ghost train NAME`
    entry_points={"console_scripts": ["nanodet-ghost = nanodet_ghost.commands:main"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "pytorch-lightning>=2.1",
        "pycocotools>=2.0.7",
        "opencv-python>=4.8",
        "omegaconf>=2.3",
        "numpy>=1.24",
        "tensorboard>=2.14",
        "matplotlib>=3.6",  # figures of nanodet_ghost.analysis (Agg, object API)
        "tqdm>=4.60",  # progress bars of `nanodet-ghost predict`
        "safetensors>=0.4",  # pickle-free weights: pretrained GhostNet, detector exports
    ],
    extras_require={
        # CI runs the parity tests of every deployment format, so dev pulls every runtime.
        "dev": ["pytest>=7", "psutil>=5.9", "onnx>=1.15", "onnxruntime>=1.17", "openvino>=2024.0", "nncf>=2.10",
                "ncnn>=1.0.20240410", "pnnx>=20240410", "MNN>=3.0", "faster-coco-eval>=1.8"],
        "fast-eval": ["faster-coco-eval>=1.8"],  # evaluation.backend: faster_coco_eval
        "onnxruntime": ["onnxruntime>=1.17"],  # run .onnx exports
        "openvino": ["openvino>=2024.0"],  # run OpenVINO IRs (.xml)
        "ncnn": ["ncnn>=1.0.20240410"],  # run ncnn models (.param)
        "mnn": ["MNN>=3.0"],  # run MNN models (.mnn)
        # tools/export.py for every format: ONNX (+ ORT INT8), OpenVINO (+ NNCF INT8), ncnn (pnnx), MNN
        "export": ["onnx>=1.15", "onnxruntime>=1.17", "openvino>=2024.0", "nncf>=2.10", "ncnn>=1.0.20240410",
                   "pnnx>=20240410", "MNN>=3.0"],
        "bench": ["ultralytics>=8.1", "psutil>=5.9", "onnxslim>=0.1"],  # bench_scale.py, bench_onnxslim.py
    },
)
