"""What a run writes: sinks (one class per file kind, registered in one place), segments, routing by source.

Importing this package registers the built-in sinks (:mod:`hrstream.outputs.files`). Add a kind of output with
:func:`register_sink`: a factory that gets a :class:`SegmentContext` per segment of each source and returns a
:class:`Sink` (``write(result)``, ``close()``), or ``None`` when it has nothing to write there.
"""

from __future__ import annotations

from hrstream.outputs import files as _files  # noqa: F401  (registers the built-in sinks)
from hrstream.outputs.files import frame_record, seg_record, source_metadata
from hrstream.outputs.router import SinkRouter
from hrstream.outputs.segments import SourceOutputs, open_source_outputs, segment_label
from hrstream.outputs.sinks import (
    OutputsSpec,
    SegmentContext,
    Sink,
    SinkFactory,
    outputs_spec,
    register_sink,
    sink_factories,
    unregister_sink,
)

__all__ = [
    "OutputsSpec",
    "SegmentContext",
    "Sink",
    "SinkFactory",
    "SinkRouter",
    "SourceOutputs",
    "frame_record",
    "open_source_outputs",
    "outputs_spec",
    "register_sink",
    "seg_record",
    "segment_label",
    "sink_factories",
    "source_metadata",
    "unregister_sink",
]
