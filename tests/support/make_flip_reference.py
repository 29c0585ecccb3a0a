"""Make ``tests/data/hrnet_reference/official_flip_test_256x192.npz``: the official HRNet test path with the flip
test, run on the official crops of ``official_crops_256x192.npz`` with the tiny official network of
``official_pose_hrnet_w4_tiny.pt``.

Needs a checkout of the official code, HRNet/deep-high-resolution-net.pytorch @ ba50a82 (MIT); nothing of it
is copied into this repository. Its ``lib/models/pose_hrnet.py`` (the network), ``lib/utils/transforms.py``
(``flip_back``) and ``lib/core/inference.py`` (``get_final_preds``) run unchanged; the flip-test lines of
``lib/core/function.py`` ``validate()`` are repeated below without their ``.cuda()`` calls (CPU), and the
input is ``ToTensor`` + ``Normalize`` of ImageNet as in ``tools/test.py``::

    .venv/bin/python tests/support/make_flip_reference.py /path/to/deep-high-resolution-net.pytorch

The file holds ``center``, ``scale`` (copied from the crops fixture), ``preds`` ``(3, 17, 2)`` image pixels
and ``maxvals`` ``(3, 17, 1)`` of ``get_final_preds`` with ``TEST.FLIP_TEST`` and ``TEST.SHIFT_HEATMAP`` (the
published configs), and ``preds_no_shift`` / ``maxvals_no_shift`` with ``SHIFT_HEATMAP: false``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torchvision import transforms

REF = Path(__file__).resolve().parents[1] / "data" / "hrnet_reference"
#: lib/dataset/coco.py
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]  # fmt: skip


def main(official: Path) -> None:
    sys.path.insert(0, str(official / "lib"))
    from core.inference import get_final_preds
    from models.pose_hrnet import get_pose_net
    from utils.transforms import flip_back

    tiny = torch.load(REF / "official_pose_hrnet_w4_tiny.pt", weights_only=True)
    crops = np.load(REF / "official_crops_256x192.npz")
    cfg = {"MODEL": {**tiny["config"]["MODEL"], "INIT_WEIGHTS": False}}
    model = get_pose_net(cfg, is_train=False)
    model.load_state_dict(tiny["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        err = (model(tiny["input"]) - tiny["output"]).norm() / tiny["output"].norm()
    assert err < 1e-5, f"the official network does not reproduce the fixture ({err})"

    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    to_input = transforms.Compose([transforms.ToTensor(), normalize])
    x = torch.stack([to_input(c) for c in crops["crops"]])  # RGB crops, as the dataset gives them
    out: dict[str, np.ndarray] = {"center": crops["center"], "scale": crops["scale"]}
    for shift, suffix in ((True, ""), (False, "_no_shift")):
        with torch.no_grad():
            # lib/core/function.py validate(), TEST.FLIP_TEST
            output = model(x)
            input_flipped = x.flip(3)
            outputs_flipped = model(input_flipped)
            output_flipped = flip_back(outputs_flipped.cpu().numpy(), COCO_FLIP_PAIRS)
            output_flipped = torch.from_numpy(output_flipped.copy())
            if shift:  # TEST.SHIFT_HEATMAP
                output_flipped[:, :, :, 1:] = output_flipped.clone()[:, :, :, 0:-1]
            output = (output + output_flipped) * 0.5
        config = SimpleNamespace(TEST=SimpleNamespace(POST_PROCESS=True))
        preds, maxvals = get_final_preds(
            config, output.clone().cpu().numpy(), crops["center"], crops["scale"]
        )
        out[f"preds{suffix}"] = preds.astype(np.float32)
        out[f"maxvals{suffix}"] = maxvals.astype(np.float32)
    np.savez_compressed(REF / "official_flip_test_256x192.npz", **out)
    moved = np.abs(out["preds"] - out["preds_no_shift"]).max(-1)
    print(
        f"wrote {REF / 'official_flip_test_256x192.npz'}; the shift moves {int((moved > 0).sum())} of 51 joints"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
