"""Judge fm-image finetune / inpaint on digits with classifiers the app never used.

Judges (scikit-learn, RBF SVC on raw pixels in [0, 1]):
- fine-tuning: an SVC fitted on the HELD-OUT split (a different architecture and different data
  from the app's CNN, whose log-probability was the reward, so the reward cannot be gamed against
  it); its accuracy on the training split is printed;
- inpainting: an SVC fitted on the TRAINING split (the reconstructions are of held-out images, so
  a judge fitted on them would have seen the originals); its accuracy on the held-out split is
  printed.

    python benchmarks/adaptation_digits.py finetune --run RUN2 --class K [--num 500]
    python benchmarks/adaptation_digits.py inpaint --npz FILE.npz
    python benchmarks/adaptation_digits.py inpaint-masks --run RUN --out-dir DIR [--num 200]
        [--seeds 0 1 2] [--guidance-scale G --temperature T --start-time T0]

``finetune`` samples RUN2 (ODE, midpoint, 20 NFE, as ``fm-image sample``) and prints a JSON line:
``judge_class_fraction``, ``spread_ratio`` (mean distance to the class centroid, samples / real
class-K digits of the training split), ``nn_ratio`` (median distance of a sample to its nearest
training image / the same for real held-out class-K digits: about 1 for novel digits, 0 for
copies), ``nn_min``. ``inpaint`` prints ``judge_accuracy`` of the reconstructions against their
true labels, the judge's accuracy on the unmasked originals, and ``nn_on_visible_accuracy`` (the
label of the training image nearest on the visible pixels). ``inpaint-masks`` runs ``fm-image
inpaint`` (its Python entry, the app's defaults unless given) for every mask and seed, judges each
``.npz`` and prints one JSON line per run, then one per mask with the mean over the seeds (each
seed draws other held-out digits, masks and noise) and the CPU seconds of the reconstructions.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(images.shape[0], -1).astype(np.float64) / 255.0


def _splits():
    from fm_image.data import load_splits

    s = load_splits("digits", None)
    return (_flat(s.train.uint8().numpy()), s.train.labels.numpy(),
            _flat(s.heldout.uint8().numpy()), s.heldout.labels.numpy())  # fmt: skip


def _nn(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a), torch.from_numpy(ref)).min(1).values.numpy()


def judge_finetune(run: str, k: int, num: int, seed: int) -> dict:
    from sklearn.svm import SVC

    from fm_image.run import load_run

    xtr, ytr, xhe, yhe = _splits()
    judge = SVC().fit(xhe, yhe)
    loaded = load_run(run)
    labels = torch.full((num,), -1, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    images, _ = loaded.flow.sample(loaded.model, labels, nfe=20, method="midpoint", generator=g)
    x = _flat(images.permute(0, 2, 3, 1).numpy())
    pred = judge.predict(x)
    real = xtr[ytr == k]
    spread = np.linalg.norm(x[pred == k] - x[pred == k].mean(0), axis=1).mean()
    spread_real = np.linalg.norm(real - real.mean(0), axis=1).mean()
    nn = _nn(x, xtr)
    nn_real = _nn(xhe[yhe == k], xtr)
    return {
        "run": run, "class": k, "num": num,
        "judge": "SVC(rbf) fitted on the held-out split",
        "judge_accuracy_on_train_split": float(judge.score(xtr, ytr)),
        "judge_class_fraction": float((pred == k).mean()),
        "class_histogram": np.bincount(pred, minlength=10).tolist(),
        "spread": float(spread), "spread_real": float(spread_real),
        "spread_ratio": float(spread / spread_real),
        "nn_median": float(np.median(nn)), "nn_real_median": float(np.median(nn_real)),
        "nn_ratio": float(np.median(nn) / np.median(nn_real)), "nn_min": float(nn.min()),
    }  # fmt: skip


def judge_inpaint(npz: str) -> dict:
    from sklearn.svm import SVC

    xtr, ytr, xhe, yhe = _splits()
    judge = SVC().fit(xtr, ytr)
    data = np.load(npz)
    labels = data["labels"]
    return {
        "npz": npz, "num": int(labels.size),
        "judge": "SVC(rbf) fitted on the training split",
        "judge_accuracy_on_heldout_split": float(judge.score(xhe, yhe)),
        "judge_accuracy": float((judge.predict(_flat(data["images"])) == labels).mean()),
        "judge_accuracy_originals": float(
            (judge.predict(_flat(data["originals"])) == labels).mean()
        ),
        "nn_on_visible_accuracy": _nn_visible(data, xtr, ytr),
    }  # fmt: skip


def _nn_visible(data, xtr: np.ndarray, ytr: np.ndarray) -> float:
    """Accuracy of the label of the training image nearest on the VISIBLE pixels: how much the
    observed part tells (a reference for the reconstructions' accuracy)."""
    orig = _flat(data["originals"])
    vis = data["masks"].reshape(orig.shape[0], -1).astype(np.float64)
    d = ((orig[:, None, :] - xtr[None]) ** 2 * vis[:, None, :]).sum(-1)
    return float((ytr[d.argmin(1)] == data["labels"]).mean())


def inpaint_masks(run: str, out_dir: str, num: int, seeds: list[int], options: dict) -> None:
    import time
    from pathlib import Path

    from fm_image.inpaint import MASKS, inpaint

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for mask in MASKS:
        rows = []
        for seed in seeds:
            c0 = time.process_time()
            info = inpaint(run, mask=mask, num=num, out=f"{out_dir}/{mask}-s{seed}.png",
                           seed=seed, device="cpu", **options)  # fmt: skip
            cpu = time.process_time() - c0
            judged = judge_inpaint(info["npz"])
            row = {**info, **judged, "cpu_s": round(cpu, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in
                ("judge_accuracy", "observed_rmse", "nn_on_visible_accuracy", "cpu_s")}  # fmt: skip
        print(json.dumps({"summary": mask, "seeds": seeds, "num": num, **options,
                          "per_seed": [r["judge_accuracy"] for r in rows],
                          "max_observed_rmse": max(r["observed_rmse"] for r in rows),
                          **{f"mean_{k}": v for k, v in mean.items()}}), flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("finetune")
    f.add_argument("--run", required=True)
    f.add_argument("--class", dest="k", type=int, required=True)
    f.add_argument("--num", type=int, default=500)
    f.add_argument("--seed", type=int, default=123)
    i = sub.add_parser("inpaint")
    i.add_argument("--npz", required=True)
    m = sub.add_parser("inpaint-masks")
    m.add_argument("--run", required=True)
    m.add_argument("--out-dir", required=True)
    m.add_argument("--num", type=int, default=200)
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for name in ("--guidance-scale", "--temperature", "--start-time"):
        m.add_argument(name, type=float, default=None)
    a = p.parse_args()
    if a.cmd == "inpaint-masks":
        given = {k: getattr(a, k) for k in ("guidance_scale", "temperature", "start_time")}
        options = {k: v for k, v in given.items() if v is not None}
        inpaint_masks(a.run, a.out_dir, a.num, a.seeds, options)
        return
    out = judge_finetune(a.run, a.k, a.num, a.seed) if a.cmd == "finetune" else judge_inpaint(a.npz)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
