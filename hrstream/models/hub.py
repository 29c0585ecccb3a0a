"""The local cache of published weights: where files live, download, verify, add by hand.

Layout: ``cache_dir()/weights/<file name of the URL>`` where ``cache_dir()`` is ``$HRSTREAM_HOME``, else
``$XDG_CACHE_HOME/hrstream``, else ``~/.cache/hrstream``. A file only ever appears under its final name
after its sha256 was checked: downloads and copies go to a temporary file in the same folder, are hashed
while written, fsynced, then ``os.replace``-d into place; every failure (network error, bad hash, Ctrl-C)
removes the temporary file.

Environment:

* ``HRSTREAM_WEIGHTS_MIRROR=http://host[:port][/prefix]`` replaces the scheme and host of every weights
  URL (the path is kept), e.g. for an internal mirror or a test server.
* ``HRSTREAM_OFFLINE=1`` never touches the network; a missing file raises at once.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from hrstream.errors import ConfigError, WeightsError, WeightsUnavailableError
from hrstream.io.records import new_temp_file
from hrstream.io.urls import redact_url
from hrstream.models.registry import WeightsEntry, default_weights, get_weights, list_weights

__all__ = [
    "add_local",
    "cache_dir",
    "cached_path",
    "download_url",
    "fetch",
    "is_cached",
    "models_table",
    "resolve_weights",
    "sha256_file",
    "verify_cached",
    "weights_dir",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "hrstream/0.1 (+weights download)"
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def cache_dir() -> Path:
    """hrstream's cache root: ``$HRSTREAM_HOME``, else ``$XDG_CACHE_HOME/hrstream``, else ``~/.cache/hrstream``."""
    home = os.environ.get("HRSTREAM_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hrstream"


def weights_dir() -> Path:
    """Folder holding downloaded checkpoints (``cache_dir()/weights``)."""
    return cache_dir() / "weights"


PACKAGE_SCHEME = "package"


def shipped_weights_dir() -> Path:
    """Folder of the checkpoints that ship inside the package (``hrstream/weights``)."""
    return Path(__file__).resolve().parents[1] / "weights"


def is_shipped(entry: WeightsEntry) -> bool:
    """True for entries whose file ships with hrstream (URL ``package:weights/NAME``): never downloaded."""
    return urlsplit(entry.url).scheme == PACKAGE_SCHEME


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry``'s file is (or would be): the URL's file name under :func:`weights_dir`, or for a shipped
    entry under :func:`shipped_weights_dir`."""
    if is_shipped(entry):
        return shipped_weights_dir() / entry.filename
    return weights_dir() / entry.filename


def is_cached(entry: WeightsEntry) -> bool:
    """True when the file exists in the cache (its hash was checked when it was put there; see
    :func:`verify_cached` for a full re-check)."""
    return cached_path(entry).is_file()


def download_url(entry: WeightsEntry) -> str:
    """``entry.url`` with scheme and host replaced by ``$HRSTREAM_WEIGHTS_MIRROR`` when that is set."""
    mirror = os.environ.get("HRSTREAM_WEIGHTS_MIRROR", "").strip()
    if not mirror:
        return entry.url
    parts = urlsplit(entry.url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def sha256_file(path: Path) -> str:
    """Full sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unavailable(entry: WeightsEntry, url: str, reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"weights '{entry.name}' are not cached and cannot be downloaded from {redact_url(url)} ({reason}). "
        f"Download the file yourself and place it at {cached_path(entry)} "
        f"(or run `hrstream weights add PATH --name {entry.name}`), or pass a local file with --weights PATH."
    )


def _check_hash(entry: WeightsEntry, hexdigest: str, what: str) -> None:
    if entry.hash_kind == "none":
        logger.warning(
            "weights '%s' have no published hash; accepted %s with sha256 %s", entry.name, what, hexdigest
        )
        return
    if not entry.matches(hexdigest):
        kind = "prefix " if entry.hash_kind == "sha256_prefix" else ""
        raise WeightsError(
            f"{what} has sha256 {hexdigest}, but weights '{entry.name}' expect sha256 {kind}{entry.sha256}: "
            f"the file is corrupt or a different checkpoint; nothing was stored. "
            f"Retry, or check the file against {entry.url}."
        )


def _atomic_write(entry: WeightsEntry, write: Any, what: str) -> Path:
    """Run ``write(f, digest)`` into a temporary file next to the final path, check the hash, move it into
    place. The temporary file is removed on every failure path (KeyboardInterrupt included)."""
    final = cached_path(entry)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp_file(final.parent, final.name, ".part")  # the umask's mode, as every output
    except OSError as exc:
        raise WeightsError(
            f"cannot write to the weights cache {final.parent} ({exc}); set HRSTREAM_HOME to a writable folder"
        ) from exc
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            write(f, digest)
            f.flush()
            os.fsync(f.fileno())
        _check_hash(entry, digest.hexdigest(), what)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _verified[_key(final)] = digest.hexdigest()
    return final


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def fetch(entry: WeightsEntry, *, progress: bool = True, timeout_s: float = 30, force: bool = False) -> Path:
    """Return the cached file of ``entry``, downloading it first when it is missing (or ``force``).

    ``timeout_s`` bounds the connection and each read. Raises :class:`WeightsUnavailableError` when offline,
    unreachable, refused, timed out, cut off or answered with an HTTP error; :class:`WeightsError` when the
    downloaded bytes do not match the registry hash. Nothing but a verified file is ever left in the cache.
    """
    final = cached_path(entry)
    if is_shipped(entry):
        if not final.is_file():
            raise WeightsError(
                f"weights '{entry.name}' ship with hrstream but {final} is missing; reinstall hrstream "
                f"(pip install --force-reinstall hrstream) or pass --weights PATH"
            )
        return final
    if final.is_file() and not force:
        return final
    url = download_url(entry)
    if os.environ.get("HRSTREAM_OFFLINE", "").strip() not in ("", "0"):
        raise _unavailable(entry, url, "HRSTREAM_OFFLINE is set")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _unavailable(entry, url, f"scheme '{scheme}' is not http or https")

    def write(f: IO[bytes], digest: Any) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            got = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.filename,
                disable=not progress,
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            if total is not None and got != total:
                raise http.client.IncompleteRead(b"", total - got)

    logger.info("downloading weights '%s' from %s to %s", entry.name, redact_url(url), final)
    try:
        path = _atomic_write(entry, write, f"the download from {redact_url(url)}")
    except urllib.error.HTTPError as exc:
        raise _unavailable(entry, url, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _unavailable(entry, url, f"{type(exc.reason).__name__}: {exc.reason}") from exc
    except http.client.IncompleteRead as exc:
        raise _unavailable(entry, url, f"connection closed early, {exc.expected} bytes missing") from exc
    except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise _unavailable(entry, url, f"{type(exc).__name__}: {exc}") from exc
    logger.info("weights '%s' stored at %s", entry.name, path)
    return path


def verify_cached(entry: WeightsEntry) -> bool:
    """Re-hash the cached file of ``entry`` (once per process per file version); False if missing or wrong."""
    path = cached_path(entry)
    if not path.is_file():
        return False
    key = _key(path)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return entry.hash_kind == "none" or entry.matches(_verified[key])


def add_local(path: str | os.PathLike[str], name: str | WeightsEntry) -> Path:
    """Copy a checkpoint you downloaded yourself into the cache as registry entry ``name`` (or an entry).

    The file's sha256 must match the entry; the copy is atomic. Returns the cached path.
    """
    entry = name if isinstance(name, WeightsEntry) else get_weights(name)
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"cannot add weights '{entry.name}': {src} is not a file")

    def write(f: IO[bytes], digest: Any) -> None:
        with open(src, "rb") as fin:
            while chunk := fin.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)

    dest = _atomic_write(entry, write, f"file {src}")
    logger.info("added %s to the cache as weights '%s' (%s)", src, entry.name, dest)
    return dest


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt"))


def resolve_weights(
    spec: str | os.PathLike[str], *, progress: bool = True, timeout_s: float = 30
) -> tuple[Path, WeightsEntry | None]:
    """Turn ``--weights``/``--model`` input into a local file.

    * an existing file: itself, with the registry entry whose file name it carries (else ``None``);
    * a registry name (or a config name, meaning its default weights): the cached file, downloaded first
      when missing; a cached file whose hash no longer matches raises :class:`WeightsError`.
    """
    text = os.fspath(spec)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        by_file = next((e for e in list_weights() if e.filename == candidate.name), None)
        return candidate, by_file
    if _looks_like_path(text):
        raise WeightsError(
            f"weights file {candidate} does not exist; pass an existing file or a registry name"
        )
    entry = get_weights(text)
    if is_cached(entry):
        if not verify_cached(entry):
            raise WeightsError(
                f"cached weights {cached_path(entry)} do not match the sha256 of '{entry.name}'; delete the file "
                f"to download it again"
            )
        return cached_path(entry), entry
    return fetch(entry, progress=progress, timeout_s=timeout_s), entry


def models_table() -> list[dict[str, Any]]:
    """One row per registered checkpoint for ``hrstream models``: name, task, config, layout, cached,
    default (is it its config's default), metric (e.g. ``"AP 0.746"``, ``"mIoU 80.7%"``), path."""
    rows = []
    defaults: dict[str, str | None] = {}
    for e in list_weights():
        if e.config not in defaults:
            try:
                d = default_weights(e.config)
            except ConfigError:  # a config file missing from configs/ must not break the listing
                d = None
            defaults[e.config] = d.name if d else None
        metrics = e.meta.get("metrics", {})
        if "AP" in metrics:
            metric = f"AP {metrics['AP']:.3f}"
        elif "mIoU" in metrics:
            metric = f"mIoU {100 * metrics['mIoU']:.1f}%"
        else:
            metric = ""
        rows.append(
            {
                "name": e.name,
                "task": e.task,
                "config": e.config,
                "layout": e.layout,
                "cached": is_cached(e),
                "default": defaults[e.config] == e.name,
                "metric": metric,
                "path": str(cached_path(e)),
            }
        )
    return rows
