"""Datasets (COCO, VOC, YOLO, synthetic), the augmentation pipeline and the DataLoader factory.

Submodules are imported explicitly; `transforms` needs only numpy and OpenCV.
"""
