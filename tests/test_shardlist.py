"""Shard specifications: brace and angle ranges, folders, list files, URLs; and a pipe: URL really streams."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from trainer.shardlist import default_val_spec, expand_shards


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Three train and two val shards, each with one tiny sample."""
    for name in ("0000.tar", "0001.tar", "0002.tar", "val-0000.tar", "val-0001.tar"):
        with tarfile.open(tmp_path / name, "w") as tar:
            member = tmp_path / f"{name}.txt"
            member.write_text(name)
            tar.add(member, arcname=f"{name.split('.')[0]}.txt")
    return tmp_path


def test_brace_and_angle_ranges_expand_to_existing_shards(folder: Path) -> None:
    expected = [str(folder / f"{i:04d}.tar") for i in range(3)]
    assert expand_shards(f"{folder}/{{0000..0002}}.tar") == expected
    assert expand_shards(f"{folder}/<0000..0002>.tar") == expected
    assert expand_shards(f"{folder}/{{0000..0001}}.tar,{folder}/0002.tar") == expected


def test_a_folder_gives_train_or_val_shards(folder: Path) -> None:
    assert [Path(p).name for p in expand_shards(str(folder))] == ["0000.tar", "0001.tar", "0002.tar"]
    assert [Path(p).name for p in expand_shards(str(folder), "val")] == ["val-0000.tar", "val-0001.tar"]
    assert default_val_spec(expand_shards(str(folder))) == str(folder)


def test_a_list_file_is_read_line_by_line(folder: Path) -> None:
    listing = folder / "train.txt"
    listing.write_text(f"# my shards\n{folder}/0002.tar\n\n{folder}/0000.tar\n")
    assert expand_shards(str(listing)) == [f"{folder}/0002.tar", f"{folder}/0000.tar"]


def test_a_list_file_is_checked_like_the_shards_it_names(folder: Path) -> None:
    """A list naming a missing shard trained on the rest (a webdataset warning the only sign), a CSV given by
    mistake was read as shard paths and the run hung, and a video given as --shards crashed reading it as text."""
    listing = folder / "train.txt"
    listing.write_text(f"{folder}/0000.tar\n{folder}/0009.tar\n")
    with pytest.raises(FileNotFoundError, match=r"1 shard\(s\) of .*0009.tar' do not exist"):
        expand_shards(str(listing))
    table = folder / "labels.csv"
    table.write_text("filename,fold,target\n1-100038-A-14.wav,1,14\n")
    with pytest.raises(FileNotFoundError, match=r"labels.csv, line 1: 'filename,fold,target' names no shard"):
        expand_shards(str(table))
    video = folder / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42\xff\xfe")
    with pytest.raises(FileNotFoundError, match=r"neither a \.tar shard nor a text file listing shards"):
        expand_shards(str(video))


def test_missing_shards_are_an_error_not_an_empty_run(folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match="do not exist"):
        expand_shards(f"{folder}/{{0000..0009}}.tar")
    with pytest.raises(FileNotFoundError):
        expand_shards(str(folder / "empty_dir_that_is_missing"))


def test_urls_pass_through_and_pipe_urls_stream(folder: Path) -> None:
    urls = expand_shards(f"pipe:cat {folder}/{{0000..0002}}.tar")
    assert urls == [f"pipe:cat {folder}/{i:04d}.tar" for i in range(3)]
    assert expand_shards("https://example.org/avts/{00..01}.tar") == [
        "https://example.org/avts/00.tar",
        "https://example.org/avts/01.tar",
    ]
    texts = [sample["txt"].decode() for sample in wds.WebDataset(urls, shardshuffle=False)]
    assert texts == ["0000.tar", "0001.tar", "0002.tar"]
