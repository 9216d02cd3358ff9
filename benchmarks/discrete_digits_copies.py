"""Copies and a side-by-side picture of trained ``fm-image --flow discrete`` digits runs (issue 19).

For each run: 100 unguided samples (10 per class, 20 Euler steps, seed 0); the share that equals a
training image exactly, and the median distance of a sample to its nearest training image over
the same for the real held-out digits (a ratio far below 1 means copies). Writes one grid per
run, side by side, to OUT.

    python benchmarks/discrete_digits_copies.py OUT.png "RUN_DIR=title" ["RUN_DIR=title" ...]
"""

from __future__ import annotations

import sys

import torch
from PIL import Image, ImageDraw

from fm_image.data.digits import load_digits_splits
from fm_image.grid import grid_array
from fm_image.run import load_run


def _flat(split) -> torch.Tensor:
    return torch.stack([split[i][0] for i in range(len(split))]).reshape(len(split), -1).double()


def main(out: str, specs: list[str]) -> None:
    splits = load_digits_splits(discrete=True)
    train, held = _flat(splits.train), _flat(splits.heldout)

    def nearest(x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, train).min(1).values

    base = nearest(held).median().item()
    print(f"held-out: median nearest-training distance {base:.2f} levels, "
          f"exact copies {(nearest(held) == 0).float().mean().item():.2f}")  # fmt: skip
    tiles = []
    for spec in specs:
        path, title = spec.split("=", 1)
        run = load_run(path)
        labels = torch.arange(10).repeat_interleave(10)
        images, _ = run.flow.sample(
            run.model, labels, nfe=20, generator=torch.Generator().manual_seed(0)
        )
        levels = torch.round(images.double() * 16 / 255).reshape(len(labels), -1)
        dist = nearest(levels)
        print(f"{title}: nearest-training ratio {dist.median().item() / base:.3f}, "
              f"exact copies {(dist == 0).float().mean().item():.2f}")  # fmt: skip
        grid = grid_array(images, 10, zoom=4)[..., 0]
        tile = Image.new("L", (grid.shape[1], grid.shape[0] + 16), 255)
        tile.paste(Image.fromarray(grid), (0, 16))
        ImageDraw.Draw(tile).text((2, 2), title, fill=0)
        tiles.append(tile)
    picture = Image.new(
        "L", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), tiles[0].height), 255
    )
    x = 0
    for tile in tiles:
        picture.paste(tile, (x, 0))
        x += tile.width + 8
    picture.save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
