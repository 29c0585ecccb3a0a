"""URL handling for network sources: the scheme allow-list, credential redaction, FFmpeg safety options.

Every message and log line that can contain a URL goes through :func:`redact_text` first, so a password in
``rtsp://user:pass@host/...`` never reaches a log, an exception or an output file. FFmpeg's own error text
(PyAV exceptions carry the URL they failed on) is redacted the same way.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from hrstream.errors import InputError

__all__ = [
    "ALLOWED_SCHEMES",
    "RedactingFilter",
    "ffmpeg_options_for_url",
    "install_redaction",
    "is_url",
    "redact_text",
    "redact_url",
    "validate_url",
]

#: Network schemes a source may use. Anything else (``file:``, ``ftp:``, ``concat:``, ``data:`` ...) is refused.
ALLOWED_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "http", "https")

# FFmpeg protocols each scheme may use internally (protocol_whitelist): nothing else can be opened, so a
# remote playlist or stream cannot make FFmpeg read local files or other protocols.
_PROTOCOLS: dict[str, str] = {
    "rtsp": "rtsp,rtp,udp,tcp",
    "rtsps": "rtsps,rtsp,rtp,udp,tcp,tls",
    "rtmp": "rtmp,tcp",
    "http": "http,tcp",
    "https": "https,http,tcp,tls",
}

# Demuxers allowed for remote input (format_whitelist). HLS and DASH are deliberately absent: their
# playlists name further URLs (the FFmpeg HLS local-file-read CVEs).
_REMOTE_FORMATS = ",".join(
    [
        "rtsp",
        "sdp",
        "rtp",
        "flv",
        "live_flv",
        "mpegts",
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "h264",
        "hevc",
        "mjpeg",
        "mpjpeg",
        "avi",
    ]
)

# scheme://userinfo@ where userinfo runs to the last '@' of the authority (a password may hold a raw '@').
_CRED_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]*)@")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(spec: str) -> bool:
    """True when ``spec`` looks like ``scheme://...`` (any scheme; see :func:`validate_url`)."""
    return bool(_SCHEME_RE.match(spec))


def redact_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` replaced by ``***@`` (the host and path stay readable)."""
    return _CRED_RE.sub(lambda m: m.group("scheme") + "***@", url)


def redact_text(text: str) -> str:
    """Redact every URL credential found anywhere in ``text`` (error messages, FFmpeg log lines)."""
    return _CRED_RE.sub(lambda m: m.group("scheme") + "***@", text)


def validate_url(url: str) -> str:
    """Check the scheme against :data:`ALLOWED_SCHEMES` and return the lower-case scheme.

    Raises:
        InputError: unsupported scheme or no host, with the URL redacted.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InputError(
            f"{redact_url(url)}: unsupported URL scheme '{scheme}'; use one of {', '.join(ALLOWED_SCHEMES)}"
        )
    if not parts.hostname:
        raise InputError(f"{redact_url(url)}: the URL has no host; write it as {scheme}://HOST[:PORT]/PATH")
    return scheme


def ffmpeg_options_for_url(url: str, *, rtsp_transport: str = "tcp") -> dict[str, str]:
    """FFmpeg/PyAV container options for a network source: protocol and format allow-lists, transport."""
    scheme = validate_url(url)
    opts = {"protocol_whitelist": _PROTOCOLS[scheme], "format_whitelist": _REMOTE_FORMATS}
    if scheme in ("rtsp", "rtsps"):
        if rtsp_transport not in ("tcp", "udp", "udp_multicast", "http", "https"):
            raise InputError(
                f"{redact_url(url)}: rtsp_transport '{rtsp_transport}' is not one of tcp, udp, udp_multicast, "
                "http, https"
            )
        opts["rtsp_transport"] = rtsp_transport
    if scheme in ("http", "https"):
        opts["reconnect"] = "0"
    return opts


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL credentials in a record's formatted message.

    Add it to handlers (``install_redaction``) so that every line they write, including FFmpeg's own
    messages that PyAV forwards to the ``libav.*`` loggers, is redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record as it is
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to ``logger`` (default: root) and each of its handlers.

    Call it after logging is configured (the CLI does). Returns the filter; idempotent per handler.
    """
    logger = logger or logging.getLogger()
    flt = RedactingFilter()
    for target in [logger, *logger.handlers, logging.getLogger("libav")]:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(flt)
    return flt
