"""Video input and output: sources (files, folders, URLs, cameras, images), video writer, records."""

from __future__ import annotations

from hrstream.io.inputs import (
    IMAGE_EXTENSIONS,
    SOURCE_OPTIONS,
    VIDEO_EXTENSIONS,
    InputSpec,
    SourceLine,
    expand_inputs,
    parse_source_line,
    read_sources_file,
)
from hrstream.io.probe import DEFAULT_MAX_PIXELS
from hrstream.io.records import (
    JsonlWriter,
    NumpyJSONEncoder,
    output_path,
    safe_name,
    to_jsonable,
    write_json_atomic,
    write_text_atomic,
)
from hrstream.io.sources import ImageSource, Source, SourceInfo, VideoSource, open_source
from hrstream.io.urls import ALLOWED_SCHEMES, RedactingFilter, install_redaction, redact_text, redact_url
from hrstream.io.video_writer import VideoWriter

__all__ = [
    "ALLOWED_SCHEMES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ImageSource",
    "InputSpec",
    "JsonlWriter",
    "NumpyJSONEncoder",
    "RedactingFilter",
    "Source",
    "SourceInfo",
    "VideoSource",
    "VideoWriter",
    "expand_inputs",
    "SOURCE_OPTIONS",
    "SourceLine",
    "parse_source_line",
    "read_sources_file",
    "install_redaction",
    "open_source",
    "output_path",
    "redact_text",
    "redact_url",
    "safe_name",
    "to_jsonable",
    "write_json_atomic",
    "write_text_atomic",
]
