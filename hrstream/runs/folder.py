"""The output folder of a run, made ready before anything is loaded or written.

:func:`prepare_output_folder` creates ``--out`` when it does not exist, checks that a file can be created there
(a read-only folder, a full disk, a file where the folder should be end the run at once with one line naming
the folder and the cause, before any model is loaded), refuses a symbolic link in place of ``manifest.json``,
and deletes the temporary files a killed run left there (``.NAME.XXXXXXXX.tmp``: an atomic write or a video's
final remux cut short), unless another run is writing into the folder now.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hrstream.errors import OutputError
from hrstream.io.records import check_writable, remove_temp_files
from hrstream.runs.manifest import MANIFEST_NAME, Manifest

__all__ = ["prepare_output_folder"]

log = logging.getLogger(__name__)


def _cause(e: OSError) -> str:
    return e.strerror or str(e)


def prepare_output_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Make ``out_dir`` ready for a run (see the module's docstring) and return it.

    Raises:
        OutputError: the folder cannot be created or written, or ``manifest.json`` is a symbolic link.
        ConfigError: ``manifest.json`` is not a manifest (:meth:`Manifest.load`).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{out}: not a folder; give --out a folder") from None
    except OSError as e:
        raise OutputError(
            f"{out}: cannot create the output folder ({_cause(e)}); choose another --out"
        ) from None
    manifest = out / MANIFEST_NAME
    if manifest.is_symlink():
        raise OutputError(
            f"{manifest} is a symbolic link (to {os.readlink(manifest)}); hrstream does not write through links "
            "in an output folder: remove it"
        )
    try:
        check_writable(out)
    except OSError as e:
        raise OutputError(
            f"{out}: cannot write into the output folder ({_cause(e)}); make it writable, free space or choose "
            "another --out"
        ) from None
    if Manifest.load(out).run_in_progress() is None:  # no other run writes here now: its files are leftovers
        removed = remove_temp_files(out)
        if removed:
            log.info("%s: removed %d temporary file(s) a stopped run left", out, len(removed))
    return out
