"""Tasks: pose and segmentation pipelines assembled from models, pose/seg, track, io and runtime."""
