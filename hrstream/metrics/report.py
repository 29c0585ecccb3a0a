"""A plain-text table of :func:`hrstream.metrics.evaluate_dir` / :func:`evaluate_tracks` results."""

from __future__ import annotations

from typing import Any

__all__ = ["format_report"]

# (header, path into a result dict, format)
_COLUMNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("frames", ("frames",), "{:d}"),
    ("MOTA", ("mot", "mota"), "{:.3f}"),
    ("IDF1", ("mot", "idf1"), "{:.3f}"),
    ("IDsw", ("mot", "id_switches"), "{:d}"),
    ("prec", ("mot", "precision"), "{:.3f}"),
    ("rec", ("mot", "recall"), "{:.3f}"),
    ("FP", ("mot", "false_positives"), "{:d}"),
    ("miss", ("mot", "misses"), "{:d}"),
    ("PCK.05", ("pck", "visible", "0.05"), "{:.3f}"),
    ("PCK.1", ("pck", "visible", "0.1"), "{:.3f}"),
    ("PCK.1in", ("pck", "in_frame", "0.1"), "{:.3f}"),
    ("mPCK.1", ("pck_matched", "visible", "0.1"), "{:.3f}"),
    ("err_raw", ("keypoint_error_px", "raw"), "{:.2f}"),
    ("err_sm", ("keypoint_error_px", "smoothed"), "{:.2f}"),
    ("acc_raw", ("jitter", "raw"), "{:.2f}"),
    ("acc_sm", ("jitter", "smoothed"), "{:.2f}"),
    ("acc_gt", ("jitter", "truth"), "{:.2f}"),
    ("jit_red", ("jitter", "reduction"), "{:+.1%}"),
)


def _get(res: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(res, dict) or key not in res:
            return None
        res = res[key]
    return res


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else float(value))
    except (TypeError, ValueError):
        return str(value)


def format_report(results: dict[str, Any]) -> str:
    """One row per clip plus ``OVERALL`` (for an :func:`evaluate_dir` result) or one row (a single clip).

    Columns: MOT figures, PCK over all true people at visibility 2 (``PCK.05``, ``PCK.1``) and in frame
    (``PCK.1in``), PCK over matched people (``mPCK.1``), mean keypoint error raw/smoothed (px), RMS
    keypoint acceleration raw/smoothed/truth (px/frame^2) and the jitter reduction ``1 - smoothed/raw``.
    """
    if "clips" in results:
        rows = [(name, res) for name, res in results["clips"].items()]
        rows.append(("OVERALL", results["overall"]))
        use = results.get("use")
    else:
        rows = [("clip", results)]
        use = results.get("use")
    header = ["clip", *(c[0] for c in _COLUMNS)]
    table = [header] + [
        [name, *(_cell(_get(res, path), fmt) for _, path, fmt in _COLUMNS)] for name, res in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"PCK scored on the {use} keypoints; PCK threshold alpha * max(w, h) of the true box.")
    if results.get("missing"):
        lines.append(f"no predictions for: {', '.join(results['missing'])}")
    return "\n".join(lines)
