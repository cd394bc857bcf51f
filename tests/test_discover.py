"""Unit tests of the reader stage (`pipeline.discover`): keys, labels, splits, the stats subset, the shard plan."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from avts.schema import TRAIN, VAL
from pipeline.discover import find_files, label_of, plan_shards, split_of, stats_order, stats_subset_size, video_key

SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
AWKWARD = [
    "clip.mp4",
    "clip.avi",
    "clip",
    "a b.mp4",
    "a_b.mp4",
    "a-b.mp4",
    "a.b.mp4",
    "a.b.c.mp4",
    "a/b.mp4",
    "a_b/c.mp4",
    "a/b_c.mp4",
    "dogs/puppies/x.mp4",
    "dogs.v2/x.mp4",
    "vidéo ñ.mp4",
    "video n.mp4",
    "视频.mp4",
    "视频 clip.mp4",
    "видео.mkv",
    "🎬.mp4",
    "  spaced  .mp4",
    "__.mp4",
    "...mp4",
    "x" * 300 + ".mp4",
    "deep/" * 20 + "leaf.mp4",
    "UPPER.MP4",
    "upper.mp4",
    "tab\there.mp4",
    "quote'\"s.mp4",
]


def touch_tree(root: Path, relpaths: list[str]) -> list[Path]:
    paths = []
    for relpath in relpaths:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # planning never reads the files
        paths.append(path)
    return paths


def test_keys_are_stable_across_versions() -> None:
    # resuming depends on the same file getting the same key in every run and every release
    assert video_key("dogs/clip 01.mp4") == "dogs_clip_01-18edf1f03a"
    assert video_key("vidéo ñ.mp4") == "vid_o-0c100d6187"
    assert video_key("视频.mp4") == "video-ff83e0725d"
    assert video_key("a.b.c.mp4") == "a_b_c-fc5d7b60e4"
    assert [video_key(p) for p in AWKWARD] == [video_key(p) for p in AWKWARD]


def test_keys_are_unique_and_webdataset_safe() -> None:
    keys = [video_key(p) for p in AWKWARD]
    assert len(set(keys)) == len(AWKWARD)  # also where the readable stems collide (a b, a_b, a.b, a/b ...)
    for relpath, key in zip(AWKWARD, keys, strict=True):
        assert SAFE_KEY.match(key), (relpath, key)  # no dots (extension separator), no slashes, ASCII only
        assert len(key) <= 80 + 11, (relpath, len(key))


def test_key_keeps_a_readable_stem() -> None:
    assert video_key("dogs/puppies/x.mp4").startswith("dogs_puppies_x-")
    assert video_key("clip.mp4").startswith("clip-") and video_key("clip.avi").startswith("clip-")
    assert video_key("clip.mp4") != video_key("clip.avi")
    assert video_key("dogs.v2/x").startswith("dogs_v2_x-")  # a dot in a folder is not an extension
    assert video_key("视频.mp4").startswith("video-")  # nothing readable left: a placeholder, never empty


def test_label_is_the_first_folder_level() -> None:
    assert label_of("dogs/x.mp4") == "dogs"
    assert label_of("dogs/puppies/x.mp4") == "dogs"
    assert label_of("chiens été/x.mp4") == "chiens été"
    assert label_of("x.mp4") is None


def test_split_is_deterministic_and_close_to_the_fraction() -> None:
    keys = [video_key(f"class{i % 7}/video_{i}.mp4") for i in range(20_000)]
    for fraction in (0.05, 0.2):
        splits = [split_of(key, fraction) for key in keys]
        assert splits == [split_of(key, fraction) for key in keys]
        assert set(splits) == {TRAIN, VAL}
        assert splits.count(VAL) / len(keys) == pytest.approx(fraction, abs=0.01)
    assert {split_of(key, 0.0) for key in keys} == {TRAIN}
    # a larger fraction only moves videos into val, never out of it
    assert all(split_of(key, 0.2) == VAL for key in keys if split_of(key, 0.05) == VAL)


def test_stats_order_is_a_seeded_permutation_and_subset_sizes_round() -> None:
    keys = [f"video_{i:03d}-abc" for i in range(200)]
    order = stats_order(keys, seed=0)
    assert sorted(order.values()) == list(range(200))
    assert stats_order(list(reversed(keys)), seed=0) == order  # listing order does not matter
    assert stats_order(keys, seed=1) != order
    first = sorted(keys, key=order.get)[:40]
    assert first != sorted(keys)[:40]  # shuffled, not alphabetical
    assert stats_subset_size(7, 0.2) == 1  # round(1.4)
    assert stats_subset_size(2, 0.1) == 1  # at least one
    assert stats_subset_size(5, 1.0) == 5
    assert stats_subset_size(0, 0.2) == 0


def test_find_files_is_sorted_recursive_and_lists_what_it_passes_over(tmp_path: Path) -> None:
    touch_tree(
        tmp_path,
        [
            "b.mp4",
            "a/z.mp4",
            "a/b/c.mp4",
            ".hidden.mp4",
            ".cache/x.mp4",
            "a/.tmp/y.mp4",
            "a/.part.mp4",
            "视频.mp4",
            "out/0000.tar",
        ],
    )
    found = find_files(tmp_path, exclude=(tmp_path / "out",))
    relpaths = [p.relative_to(tmp_path).as_posix() for p in found.files]
    assert relpaths == sorted(relpaths)
    assert set(relpaths) == {"b.mp4", "a/z.mp4", "a/b/c.mp4", "视频.mp4"}
    assert [(s.relpath, s.reason) for s in found.skipped] == [
        (".cache", "hidden folder"),
        (".hidden.mp4", "hidden file"),
        ("a/.part.mp4", "hidden file"),
        ("a/.tmp", "hidden folder"),
        ("out", "the output folder"),
    ]
    with pytest.raises(FileNotFoundError):
        find_files(tmp_path / "missing")


def test_symlinked_folders_are_followed_once_and_loops_reported(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch_tree(outside, ["x.mp4"])
    src = tmp_path / "src"
    touch_tree(src, ["a/y.mp4"])
    (src / "linked").symlink_to(outside, target_is_directory=True)
    (src / "a" / "back").symlink_to(src / "a", target_is_directory=True)
    found = find_files(src)
    assert [p.relative_to(src).as_posix() for p in found.files] == ["a/y.mp4", "linked/x.mp4"]
    assert [(s.relpath, s.reason) for s in found.skipped] == [("a/back", "symlink loop: folder already visited")]


def test_an_unreadable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch_tree(tmp_path, ["ok.mp4", "locked/x.mp4"])
    real_scandir = os.scandir

    def scandir(path):  # what a folder without read permission gives (root could read it anyway)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = find_files(tmp_path)
    assert [p.name for p in found.files] == ["ok.mp4"]
    assert [(s.relpath, s.reason) for s in found.skipped] == [("locked", "unreadable folder: Permission denied")]


def test_a_name_that_is_not_utf8_gets_a_key_and_a_readable_path(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.mp4")  # Latin-1 bytes: not valid UTF-8
    (tmp_path / name).write_bytes(b"")
    found = find_files(tmp_path)
    (job,) = plan_shards(tmp_path, found.files, shard_size=4, val_fraction=0.0, seed=0)
    (item,) = job.items
    assert item.relpath == "caf\\xe9.mp4" and item.relpath.encode("utf-8")
    assert re.fullmatch(r"caf_xe9-[0-9a-f]{10}", item.key)
    assert item.path == (tmp_path / name).resolve()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[Path]]:
    relpaths = [f"{label}/clip {i}.mp4" for label in ("cats", "dogs", "birds") for i in range(40)]
    relpaths += ["loose.mp4", "vidéo ñ.mp4", "a.b.c.mp4"]
    return tmp_path, touch_tree(tmp_path, relpaths)


def test_plan_shards_covers_every_file_once(tree: tuple[Path, list[Path]]) -> None:
    src, files = tree
    jobs = plan_shards(src, sorted(files), shard_size=16, val_fraction=0.1, seed=0)
    items = [item for job in jobs for item in job.items]
    assert sorted(item.path for item in items) == sorted(p.resolve() for p in files)
    assert len({item.key for item in items}) == len(files)
    for item in items:
        assert item.relpath == item.path.relative_to(src.resolve()).as_posix()
        assert item.key == video_key(item.relpath)
        assert item.label == label_of(item.relpath)
        assert item.split == split_of(item.key, 0.1)
    train = [item for item in items if item.split == TRAIN]
    assert sorted(item.stats_rank for item in train) == list(range(len(train)))
    assert all(item.stats_rank is None for item in items if item.split == VAL)


def test_plan_shards_names_and_fills_shards_per_split(tree: tuple[Path, list[Path]]) -> None:
    src, files = tree
    jobs = plan_shards(src, files, shard_size=16, val_fraction=0.1, seed=0)
    for split, name in ((TRAIN, "{:04d}.tar"), (VAL, "val-{:04d}.tar")):
        mine = [job for job in jobs if job.split == split]
        assert mine, split
        assert [job.name for job in mine] == [name.format(i) for i in range(len(mine))]
        assert all(item.split == split for job in mine for item in job.items)
        sizes = [len(job.items) for job in mine]
        assert all(size == 16 for size in sizes[:-1]) and 1 <= sizes[-1] <= 16
        keys = [item.key for job in mine for item in job.items]
        assert keys == sorted(keys)  # filled in key order


def test_plan_shards_is_deterministic_and_ignores_listing_order(tree: tuple[Path, list[Path]]) -> None:
    src, files = tree
    settings = dict(shard_size=7, val_fraction=0.2, seed=5)
    reference = plan_shards(src, sorted(files), **settings)
    assert plan_shards(src, sorted(files), **settings) == reference
    for seed in range(3):
        shuffled = files[:]
        random.Random(seed).shuffle(shuffled)
        assert plan_shards(src, shuffled, **settings) == reference
    assert plan_shards(src, find_files(src).files, **settings) == reference


def test_plan_shards_stats_subset_follows_the_seed(tree: tuple[Path, list[Path]]) -> None:
    src, files = tree

    def chosen(seed: int) -> set[str]:
        jobs = plan_shards(src, files, shard_size=16, val_fraction=0.1, seed=seed)
        ranked = sorted((item.stats_rank, item.key) for job in jobs for item in job.items if item.split == TRAIN)
        return {key for _, key in ranked[:10]}

    assert chosen(0) == chosen(0)
    assert chosen(0) != chosen(1)


def test_plan_shards_refuses_duplicate_keys(tree: tuple[Path, list[Path]]) -> None:
    src, files = tree
    with pytest.raises(ValueError, match="map to the same sample key"):
        plan_shards(src, files + files[:1], shard_size=16, val_fraction=0.1, seed=0)
