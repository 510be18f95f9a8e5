from setuptools import find_packages, setup

setup(
    name="nanodet_ghost",
    version="0.1.0",
    description="NanoDet-style real-time object detector with a GhostNet backbone",
    packages=find_packages(include=["nanodet_ghost", "nanodet_ghost.*"]),
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
    ],
    extras_require={
        "dev": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17"],
        "export": ["onnx>=1.15", "onnxruntime>=1.17"],
        "bench": ["ultralytics>=8.1"],
    },
)
