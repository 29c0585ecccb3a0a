"""The shipped demo configuration on the REPORT set of synthetic clips: one table of PCK@0.1, IDF1, switches and
jitter cut per clip and as means over the clips (docs/accuracy.md, "Report set").

The report set is never used to choose anything: parameters are chosen on the tuning clips (seeds 6000-6044)
and the report set is run once per candidate that is considered final. One command makes the clips (if the
folder lacks them), runs ``pipelines/synthetic.yaml`` on each (the recipe ``hrstream demo`` runs, on the CPU, in fp32 unless ``--amp``)
and prints the table with the command, the machine and the date:

    python benchmarks/accuracy_report.py                      # 15 clips, seeds 8000-8014, into runs/accuracy_report
    python benchmarks/accuracy_report.py --truth DIR          # the clips of DIR (NAME.mp4 + NAME.tracks.json)

The clips are those of ``hrstream synth REPORT --clips 15 --seed 8000 --seconds 8 --people 2-5 --width 640
--height 360`` (25 fps; the options of the evaluation clips). Each clip runs in its own pipeline with one torch
thread; ``--jobs 2`` runs two clips at a time (two processes). Figures (``hrstream.metrics.evaluate_tracks``
on the tracks document, keypoints of the online smoother): PCK@0.1 over the visible keypoints of every true
person (missed people count as wrong); IDF1 and ID switches of the tracks document (identities repaired
offline) and IDF1 of the IDs reported online (JSONL, video); jitter cut ``1 - smoothed / raw`` of the RMS second
difference of the keypoints. The "mean" row averages the per-clip figures (switches: the sum); "pooled" scores
every frame of every clip at once (``hrstream eval tracks``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # bench_fixtures, and this checkout's hrstream

REPORT_SEED = 8000
REPORT_CLIPS = 15
CLIP_OPTIONS = {"seconds": 8.0, "people": "2-5", "width": 640, "height": 360, "fps": 25.0}

_NETWORKS: Any = None  # per worker process: the loaded networks of the recipe


def make_clips(truth: Path, clips: int, seed: int) -> list[Path]:
    """``truth/synth_0000.mp4`` ... as ``hrstream synth TRUTH --clips N --seed S`` with :data:`CLIP_OPTIONS`
    writes them (clips already there are kept); returns the truth documents."""
    from hrstream.synth import SynthConfig
    from hrstream.synth.command import parse_people
    from hrstream.synth.writers import write_clip

    base = SynthConfig(
        width=CLIP_OPTIONS["width"],
        height=CLIP_OPTIONS["height"],
        fps=CLIP_OPTIONS["fps"],
        duration_s=CLIP_OPTIONS["seconds"],
        num_people=parse_people(CLIP_OPTIONS["people"]),
        seed=seed,
    )
    out = []
    for i in range(clips):
        name = f"synth_{i:04d}"
        doc = truth / f"{name}.tracks.json"
        if not (doc.is_file() and (truth / f"{name}.mp4").is_file()):
            write_clip(dataclasses.replace(base, seed=seed + i), truth, name, masks=False)
            print(f"made {truth / name}.mp4 (seed {seed + i})", file=sys.stderr, flush=True)
        out.append(doc)
    return out


def _recipe(pipeline: str | None, overrides: dict[str, Any]) -> Any:
    from hrstream.demo import synthetic_recipe
    from hrstream.pipeline.recipe_load import load_recipe

    if pipeline is None:
        return synthetic_recipe(overrides)
    return load_recipe(None, pipeline, overrides)


def run_clip(video: str, out: str, pipeline: str | None, overrides: dict[str, Any], threads: int) -> float:
    """Run the recipe on one clip into ``out``; returns the wall time in seconds."""
    global _NETWORKS
    import torch

    from hrstream.pipeline.builder import load_networks
    from hrstream.runs.lifecycle import run_inputs
    from hrstream.runs.local import LocalExecutor

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if _NETWORKS is None:
        _NETWORKS = load_networks(_recipe(pipeline, overrides), progress=False)
    recipe = _NETWORKS.recipe
    executor = LocalExecutor(_NETWORKS, out_dir=out, cpu_threads=threads, grace_s=None)
    outcome = run_inputs(
        [video], executor, out_dir=out, recipe_digest=recipe.digest(), force=True, status_s=None
    )
    job = outcome.results[0]
    if job.status != "ok":
        raise RuntimeError(f"{video}: the pipeline did not finish ({job.status}: {job.error})")
    return time.perf_counter() - t0


def score(pred: Path, truth: Path) -> dict[str, Any]:
    """The figures of one clip (see the module docstring)."""
    from hrstream.metrics import evaluate_tracks

    m = evaluate_tracks(pred, truth, use="smoothed")
    online = evaluate_tracks(pred, truth, use="smoothed", identities="online")["mot"]
    return {
        "pck01": m["pck"]["visible"]["0.1"],
        "pck01_matched": m["pck_matched"]["visible"]["0.1"],
        "idf1": m["mot"]["idf1"],
        "idf1_online": online["idf1"],
        "switches": m["mot"]["id_switches"],
        "switches_online": online["id_switches"],
        "mota": m["mot"]["mota"],
        "precision": m["mot"]["precision"],
        "recall": m["mot"]["recall"],
        "jitter_raw": m["jitter"]["raw"],
        "jitter_smoothed": m["jitter"]["smoothed"],
        "jitter_cut": m["jitter"]["reduction"],
        "error_raw": m["keypoint_error_px"]["raw"],
        "error_smoothed": m["keypoint_error_px"]["smoothed"],
    }


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE (a dotted recipe key, a YAML value)")
        import yaml

        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--truth", type=Path, default=None, help="clips to score (default: OUT/REPORT, made if missing)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/accuracy_report"), help="where everything goes")
    ap.add_argument("--clips", type=int, default=REPORT_CLIPS, help="clips of the report set to make")
    ap.add_argument("--seed", type=int, default=REPORT_SEED, help="seed of the first clip")
    ap.add_argument(
        "--pipeline", default=None, help="a recipe YAML instead of the demo's pipelines/synthetic.yaml"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (repeatable)"
    )
    ap.add_argument("--jobs", type=int, default=1, help="clips run at a time (processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    ap.add_argument(
        "--amp",
        default="off",
        choices=["off", "auto", "bf16", "fp16"],
        help="precision (default off: fp32, as every figure of docs/accuracy.md; auto: as hrstream demo picks)",
    )
    ap.add_argument("--video", action="store_true", help="also write the annotated videos (as hrstream demo)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    from bench_fixtures import cpu_description

    started = datetime.datetime.now().astimezone()
    overrides: dict[str, Any] = {"runtime.device": "cpu", "runtime.amp": args.amp}
    if not args.video:
        overrides["sinks.video"] = False
    overrides.update(_parse_set(args.set))
    truth_dir = args.truth or args.out / "REPORT"
    if args.truth is None:
        truths = make_clips(truth_dir, args.clips, args.seed)
    else:
        truths = sorted(truth_dir.glob("*.tracks.json"))
        if not truths:
            raise SystemExit(f"{truth_dir}: no NAME.tracks.json (make clips with hrstream synth)")
    names = [p.name[: -len(".tracks.json")] for p in truths]
    pred_root = args.out / "pred"
    t0 = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = {
            n: pool.submit(
                run_clip,
                str(truth_dir / f"{n}.mp4"),
                str(pred_root / n),
                args.pipeline,
                overrides,
                args.threads,
            )
            for n in names
        }
        walls = {}
        for n, fut in futures.items():
            walls[n] = fut.result()
            print(f"{n}: {walls[n]:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    rows = {n: score(pred_root / n / f"{n}.tracks.json", t) for n, t in zip(names, truths, strict=True)}
    people = {n: len(json.loads(t.read_text())["tracks"]) for n, t in zip(names, truths, strict=True)}
    seeds = {
        n: json.loads(t.read_text()).get("synth", {}).get("seed") for n, t in zip(names, truths, strict=True)
    }

    from hrstream.metrics import evaluate_dir

    flat = pred_root / "_all"
    flat.mkdir(parents=True, exist_ok=True)
    for n in names:  # evaluate_dir wants PRED/NAME.tracks.json next to each other
        link = flat / f"{n}.tracks.json"
        link.unlink(missing_ok=True)
        link.symlink_to(Path("..") / n / f"{n}.tracks.json")
    pooled = evaluate_dir(flat, truth_dir)["overall"]
    pooled_online = evaluate_dir(flat, truth_dir, identities="online")["overall"]["mot"]

    cpu = cpu_description()
    command = "python " + " ".join(
        shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"command: {command}")
    print(f"recipe: {args.pipeline or 'pipelines/synthetic.yaml'} (hrstream demo's), overrides {overrides}")
    print(
        f"machine: {cpu['model_name']}, {cpu['usable_cores']} usable cores, torch {cpu['torch_cpu_capability']}, "
        f"load {cpu['load_avg_1m']:.1f}; {args.jobs} process(es) x {args.threads} torch thread(s), "
        f"amp {args.amp}" + (f" ({cpu['amp_auto'] or 'fp32'} on this CPU)" if args.amp == "auto" else "")
    )
    print(f"date: {started:%Y-%m-%d %H:%M %Z}; wall {wall / 60:.1f} min for {len(names)} clips")
    print(f"truth: {truth_dir}")
    print()
    print(
        "| clip | seed | identities | PCK@0.1 | PCK@0.1 matched | IDF1 | IDF1 online | switches | MOTA | recall | jitter raw -> smoothed | jitter cut |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for n in names:
        r = rows[n]
        print(
            f"| {n} | {seeds[n]} | {people[n]} | {r['pck01']:.3f} | {r['pck01_matched']:.3f} | {r['idf1']:.3f} "
            f"| {r['idf1_online']:.3f} | {r['switches']} / {r['switches_online']} | {r['mota']:.3f} "
            f"| {r['recall']:.3f} | {r['jitter_raw']:.2f} -> {r['jitter_smoothed']:.2f} | {r['jitter_cut']:.1%} |"
        )

    def mean(key: str) -> float:
        return sum(rows[n][key] for n in names) / len(names)

    print(
        f"| **mean of {len(names)}** | | {sum(people.values())} | **{mean('pck01'):.3f}** | {mean('pck01_matched'):.3f} "
        f"| **{mean('idf1'):.3f}** | {mean('idf1_online'):.3f} "
        f"| **{sum(rows[n]['switches'] for n in names)} / {sum(rows[n]['switches_online'] for n in names)}** "
        f"| {mean('mota'):.3f} | {mean('recall'):.3f} | {mean('jitter_raw'):.2f} -> {mean('jitter_smoothed'):.2f} "
        f"| **{mean('jitter_cut'):.1%}** |"
    )
    pj = pooled["jitter"]
    print(
        f"| pooled | | | {pooled['pck']['visible']['0.1']:.3f} | {pooled['pck_matched']['visible']['0.1']:.3f} "
        f"| {pooled['mot']['idf1']:.3f} | {pooled_online['idf1']:.3f} "
        f"| {pooled['mot']['id_switches']} / {pooled_online['id_switches']} | {pooled['mot']['mota']:.3f} "
        f"| {pooled['mot']['recall']:.3f} | {pj['raw']:.2f} -> {pj['smoothed']:.2f} | {pj['reduction']:.1%} |"
    )
    targets = {"pck01": 0.95, "idf1": 0.90, "jitter_cut": 0.40}
    met = ", ".join(f"{k} {mean(k):.3f} {'>=' if mean(k) >= v else '<'} {v}" for k, v in targets.items())
    print(f"\ntargets (means over the clips): {met}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "date": started.isoformat(),
                    "machine": cpu,
                    "overrides": overrides,
                    "clips": rows,
                    "seeds": seeds,
                    "wall_s": wall,
                    "means": {k: mean(k) for k in rows[names[0]]},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
