"""``fm-image inpaint``: reconstruct masked held-out images with the run as a prior (ΠGDM).

The measurement is $y = m \\odot (x + \\sigma_y n)$ for a 0/1 mask $m$ of observed pixels; the
operator $A x = m \\odot x$ goes to fm-core's ``PiGDMGuidedModel``, whose ``sample`` starts at
$x_{t_0} = t_0 y + (1 - t_0)\\tau x_0$ (Pokle et al.) with source temperature $\\tau$. The app
holds the masks, the data and the pictures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fm_core.guidance import PiGDMGuidedModel
from fm_core.solver._registry import get_method
from fm_core.training import atomic_path
from fm_image.config import INPAINT_GUIDANCE_SCALE, INPAINT_START_TIME, INPAINT_TEMPERATURE

__all__ = ["MASKS", "inpaint", "make_masks"]

MASKS = ("left", "right", "top", "bottom", "center", "random50")
#: Defaults chosen by measurement on digits (benchmarks/RESULTS.md, issue 18; 3 x 200 held-out
#: digits per mask, 10 000-step unconditional prior): gamma = 3, temperature 0.3 and Pokle et
#: al.'s start at t0 = 0.2 keep the class for 0.89-0.94 of half-masked digits, observed RMSE
#: 0.029 (the previous gamma = 2, temperature 1 from t0 = 0: 0.73-0.79, RMSE 0.055-0.06, and one
#: run diverged); temperature 0 adds 0.01-0.02 but gives one answer per measurement.
GUIDANCE_SCALE, TEMPERATURE, START_TIME = (
    INPAINT_GUIDANCE_SCALE,
    INPAINT_TEMPERATURE,
    INPAINT_START_TIME,
)


def make_masks(
    name: str, num: int, shape: tuple[int, int, int], generator: torch.Generator
) -> Tensor:
    """Observed-pixel masks ``[num, C, H, W]`` (1 observed, 0 hidden); ``name`` is the HIDDEN part:
    a half (``left``, ``right``, ``top``, ``bottom``), the centred square of about half the area
    (``center``: side ``round(H / sqrt 2)``), or each pixel with probability 1/2 (``random50``,
    drawn per image)."""
    c, h, w = shape
    hidden = torch.zeros(h, w, dtype=torch.bool)
    if name == "left":
        hidden[:, : w // 2] = True
    elif name == "right":
        hidden[:, w // 2 :] = True
    elif name == "top":
        hidden[: h // 2] = True
    elif name == "bottom":
        hidden[h // 2 :] = True
    elif name == "center":
        sh, sw = round(h / math.sqrt(2)), round(w / math.sqrt(2))
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        hidden[y0 : y0 + sh, x0 : x0 + sw] = True
    elif name == "random50":
        hid = torch.rand((num, 1, h, w), generator=generator) < 0.5
        return (~hid).float().expand(num, c, h, w).contiguous()
    else:
        raise ValueError(f"--mask must be one of {', '.join(MASKS)}, got {name!r}")
    return (~hidden).float().expand(num, c, h, w).contiguous()


def inpaint(
    run_dir: str | Path,
    *,
    mask: str,
    num: int,
    out: str | Path,
    noise_std: float = 0.05,
    guidance_scale: float = GUIDANCE_SCALE,
    temperature: float = TEMPERATURE,
    start_time: float = START_TIME,
    nfe: int = 50,
    method: str = "midpoint",
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Mask ``num`` held-out images, reconstruct them, write ``out`` (PNG) and ``out.npz``.

    The PNG holds one triplet per image, five per row: original | masked (hidden pixels grey) |
    reconstruction. The
    ``.npz`` holds ``images`` (uint8 reconstructions ``[N, H, W, C]``, as ``sample`` writes),
    ``labels`` (the originals' classes), ``originals`` and ``masks`` (same layout).

    Returns:
        ``observed_rmse`` (model space, $[-1, 1]$: reconstruction vs measurement on the observed
        pixels, to compare with ``noise_std``), ``hidden_fraction``, ``nfe`` and the paths.
    """
    from fm_image.run import load_run

    out = _check_options(mask, out, noise_std, nfe, temperature, start_time, guidance_scale)
    run = load_run(run_dir, device=device)
    if run.cfg.flow != "continuous":
        raise ValueError(
            f"--run {run_dir} is a {run.cfg.flow} flow; inpaint needs a continuous one"
        )
    g = torch.Generator().manual_seed(seed)
    x1, labels, m, y = _measure(run, mask, num, noise_std, g)
    x, nfe_done = _reconstruct(
        run, m, y, noise_std, guidance_scale, temperature, start_time, nfe, method, g
    )
    observed = m.bool()
    rmse = float((x - y)[observed].pow(2).mean().sqrt()) if observed.any() else 0.0
    npz = _write(run, x, x1, m, labels, out)
    return {
        "png": str(out), "npz": str(npz), "num": num, "mask": mask,
        "hidden_fraction": float(1 - m.mean()), "noise_std": noise_std,
        "guidance_scale": guidance_scale, "temperature": temperature, "start_time": start_time,
        "observed_rmse": rmse, "nfe": nfe_done, "step": run.step,
    }  # fmt: skip


def _check_options(
    mask: str, out, noise_std: float, nfe: int, temperature: float, start_time: float,
    guidance_scale: float,
) -> Path:  # fmt: skip
    """Every option checked before any work, named as on the command line."""
    if mask not in MASKS:
        raise ValueError(f"--mask must be one of {', '.join(MASKS)}, got {mask!r}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    if not out.parent.is_dir():
        raise ValueError(f"--out folder {out.parent} does not exist")
    if not noise_std > 0:
        raise ValueError(f"--noise-std must be > 0, got {noise_std!r}")
    if nfe < 2:
        raise ValueError(f"--nfe must be >= 2, got {nfe}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0, got {temperature!r}")
    if not 0 <= start_time < 1:
        raise ValueError(f"--start-time must lie in [0, 1), got {start_time!r}")
    if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
        raise ValueError(f"--guidance-scale must be a finite number >= 0, got {guidance_scale!r}")
    return out


def _measure(run, mask: str, num: int, noise_std: float, g: torch.Generator):
    """``num`` held-out images, their labels, masks and noisy masked measurements (on device)."""
    from fm_image.data import load_splits

    splits = load_splits(run.cfg.data, run.cfg.data_dir, image_size=run.cfg.image_size)
    held = splits.heldout
    if not 1 <= num <= len(held):
        raise ValueError(f"--num must lie in [1, {len(held)}] (the held-out images), got {num}")
    idx = torch.randperm(len(held), generator=g)[:num]
    x1, labels = held.__getitems__(idx.tolist())
    m = make_masks(mask, num, run.flow.shape, g)
    y = m * (x1 + noise_std * torch.randn(x1.shape, generator=g))
    dev = run.device
    return x1.to(dev), labels, m.to(dev), y.to(dev)


def _reconstruct(run, m, y, noise_std, guidance_scale, temperature, start_time, nfe, method, g):
    """PiGDM-guided sampling of the run's unconditional prior; the images and the NFE used."""
    dev, num = run.device, y.shape[0]
    extras = {}
    if run.flow.num_classes:  # the null label: an unconditional prior
        extras["label"] = torch.full((num,), run.flow.num_classes, device=dev)
    guided = PiGDMGuidedModel(
        run.model, run.flow.path.scheduler, lambda x: x * m, y, noise_std,
        guidance_scale=guidance_scale, cg_iters=1,
    )  # fmt: skip
    x0 = torch.randn(y.shape, generator=g).to(dev)
    steps = max(1, nfe // (get_method(method).stages or 1))
    x = guided.sample(
        x0, steps=steps, method=method, start_time=start_time, temperature=temperature, **extras
    )
    return x, guided.last_nfe


def _write(run, x, x1, m, labels, out: Path) -> Path:
    """The PNG (original | masked | reconstruction triplets) and the ``.npz``; its path."""
    from fm_image.grid import save_grid

    num = x.shape[0]
    recon, orig = run.flow.to_uint8(x).cpu(), run.flow.to_uint8(x1).cpu()
    masked = torch.where(m.cpu().bool(), orig, torch.full_like(orig, 128))
    rows = torch.stack([orig, masked, recon], dim=1).flatten(0, 1)
    save_grid(rows, out, nrow=3 * min(5, num))  # five triplets per row
    npz = out.with_suffix(".npz")

    def hwc(t: Tensor) -> np.ndarray:
        return t.permute(0, 2, 3, 1).cpu().numpy()

    with atomic_path(npz) as tmp:
        np.savez(
            tmp, images=hwc(recon).astype(np.uint8), labels=labels.numpy().astype(np.int64),
            originals=hwc(orig).astype(np.uint8), masks=hwc(m.cpu()).astype(np.uint8),
        )  # fmt: skip
    return npz
