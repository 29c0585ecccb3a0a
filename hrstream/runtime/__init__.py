"""Threads, bounded queues, batching and the inference engine that pipelines are built from."""

from __future__ import annotations

from hrstream.runtime.batcher import Batcher
from hrstream.runtime.cpu import cpu_flags, cpu_has_native_bf16
from hrstream.runtime.engine import InferenceEngine, InferenceHandle, configure_cpu_threads, usable_cpu_count
from hrstream.runtime.precision import AmpMode, amp_default, resolve_amp, resolve_device
from hrstream.runtime.queues import BoundedQueue, QueueAborted, QueueClosed, QueueStats
from hrstream.runtime.signals import StopOnSignals, Stoppable
from hrstream.runtime.stages import Pipeline, PipelineStats, StageStats

__all__ = [
    "AmpMode",
    "Batcher",
    "BoundedQueue",
    "InferenceEngine",
    "InferenceHandle",
    "Pipeline",
    "PipelineStats",
    "QueueAborted",
    "QueueClosed",
    "QueueStats",
    "StageStats",
    "StopOnSignals",
    "Stoppable",
    "amp_default",
    "configure_cpu_threads",
    "cpu_flags",
    "cpu_has_native_bf16",
    "resolve_amp",
    "resolve_device",
    "usable_cpu_count",
]
