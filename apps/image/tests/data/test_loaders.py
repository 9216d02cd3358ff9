"""Each loader on small files the test writes, and the errors of missing or corrupt data."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fm_image.data import DataError, StepBatchSampler, load_splits, make_loader, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx(folder, rng, *, gz: bool, n_train=12, n_test=6, size=5):
    names = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 3,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 3,
    }
    for name, arr in names.items():
        raw = _idx_bytes(np.asarray(arr))
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return names


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_reads_raw_and_gzip(tmp_path, gz):
    written = _write_idx(tmp_path, np.random.default_rng(0), gz=gz)
    splits = load_splits("mnist", tmp_path)
    assert splits.shape == (1, 5, 5) and splits.levels == 256 and splits.num_classes == 3
    np.testing.assert_array_equal(
        splits.train.pixels[:, 0].numpy(), written["train-images-idx3-ubyte"]
    )
    np.testing.assert_array_equal(splits.heldout.labels.numpy(), written["t10k-labels-idx1-ubyte"])
    x, y = splits.train.__getitems__([0, 3])
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    expected = torch.tensor(written["train-images-idx3-ubyte"][0], dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(x[0, 0], expected)
    assert y.tolist() == [0, 0]


def test_idx_errors_name_the_file(tmp_path):
    _write_idx(tmp_path, np.random.default_rng(0), gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_splits("mnist", tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x01" * 7)
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad, 3)
    bad.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        read_idx(bad, 3)
    with pytest.raises(DataError, match="does not exist"):
        load_splits("fashion-mnist", tmp_path / "nowhere")


def _write_cifar(folder, rng, n=4):
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, n))
        with (folder / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        batches[name] = (data, labels)
    return batches


def test_cifar_loader_reads_python_batches(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(1))
    splits = load_splits("cifar10", tmp_path)  # the parent folder works too
    assert splits.shape == (3, 32, 32) and len(splits.train) == 20 and len(splits.heldout) == 4
    data, labels = batches["data_batch_2"]
    np.testing.assert_array_equal(splits.train.pixels[4].numpy(), data[0].reshape(3, 32, 32))
    assert splits.train.labels[4].item() == labels[0]


def test_cifar_loader_refuses_code_and_garbage(tmp_path):
    _write_cifar(tmp_path / "c", np.random.default_rng(1))
    with (tmp_path / "c" / "test_batch").open("wb") as f:
        pickle.dump({b"data": print}, f)  # a pickle that names a callable
    with pytest.raises(DataError, match=r"test_batch.*not a CIFAR-10 python batch"):
        load_splits("cifar10", tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_splits("cifar10", tmp_path / "c")


def _write_folder(root, rng, per_class=5, size=6):
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_image_folder_loader_with_workers(tmp_path):
    _write_folder(tmp_path / "tree", np.random.default_rng(2))
    splits = load_splits("folder", tmp_path / "tree")
    assert splits.class_names == ["cat", "dog"] and splits.shape == (3, 6, 6)
    assert len(splits.train) + len(splits.heldout) == 10 and len(splits.heldout) == 2
    first = splits.train.files[0]
    x, _ = splits.train[0]
    expected = torch.from_numpy(np.array(Image.open(first))).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(x, expected)
    sampler = StepBatchSampler(len(splits.train), 4, seed=0, start_step=0, total_steps=3)
    batches = list(make_loader(splits.train, sampler, num_workers=2))
    assert len(batches) == 3 and batches[0][0].shape == (4, 3, 6, 6)
    assert splits.heldout.uint8().dtype == torch.uint8


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        (tmp_path / "empty").mkdir()
        load_splits("folder", tmp_path / "empty")
    _write_folder(tmp_path / "tree", np.random.default_rng(2))
    (tmp_path / "tree" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"corrupt image .*broken\.png"):
        load_splits("folder", tmp_path / "tree")
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_splits("folder")


def test_digits_split_is_deterministic_and_disjoint():
    a, b = load_splits("digits"), load_splits("digits")
    assert len(a.train) == 1347 and len(a.heldout) == 450
    assert torch.equal(a.train.pixels, b.train.pixels)
    assert a.levels == 17 and int(a.train.pixels.max()) == 16
    x, _ = a.train.__getitems__(list(range(len(a.train))))
    assert x.min() == -1 and x.max() == 1
    train = {bytes(p) for p in a.train.pixels.numpy()}
    # Digits holds a few exact duplicates; the split itself is disjoint by index, and nearly so by image.
    overlap = sum(bytes(p) in train for p in a.heldout.pixels.numpy())
    assert overlap < 5
    from sklearn.datasets import load_digits

    from fm_image.data.dataset import stratified_split
    from fm_image.data.digits import HELDOUT_FRACTION, SPLIT_SEED

    labels = load_digits().target
    tr, held = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)  # the split digits uses
    assert not set(tr) & set(held) and len(tr) + len(held) == len(labels)
    assert (len(tr), len(held)) == (len(a.train), len(a.heldout))
    tokens, _ = load_splits("digits", discrete=True).train.__getitems__([0])
    assert tokens.dtype == torch.long and int(tokens.max()) <= 16
