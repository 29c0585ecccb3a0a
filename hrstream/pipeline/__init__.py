"""A run's pipeline: the recipe (typed sections), the networks with their estimators, and the stages built from
them (detect, batch, infer, track, draw)."""

from __future__ import annotations

from hrstream.pipeline.builder import LoadedNetwork, Networks, load_networks
from hrstream.pipeline.estimators import Chunk, Estimator, InferStage
from hrstream.pipeline.recipe import FLAG_FIELDS, Recipe, flag_overrides
from hrstream.pipeline.recipe_load import PIPELINES_DIR, load_recipe

__all__ = [
    "FLAG_FIELDS",
    "PIPELINES_DIR",
    "Chunk",
    "Estimator",
    "InferStage",
    "LoadedNetwork",
    "Networks",
    "Recipe",
    "flag_overrides",
    "load_networks",
    "load_recipe",
]
