"""Official split files (UCF101, HMDB51) at ingest: parsing, matching the files found, train/test shards.

Parsing, matching and planning run on empty files (planning never reads them); one small ingest of 6
synthetic videos checks the shards and manifests. About 15 s on a 2-core box.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from avts.schema import TEST, TRAIN, VAL
from pipeline.cli import parse_args
from pipeline.config import IngestConfig
from pipeline.discover import find_files, plan_shards
from pipeline.ingest import IngestError, run_ingest
from pipeline.manifest import SKIPPED
from pipeline.splits import AMBIGUOUS, HMDB51, NOT_LISTED, UCF101, UNUSED, SplitFileError, match_files, read_split_files
from trainer.shardlist import expand_shards

UCF_TRAIN = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 1\r\n"
    "HandstandPushups/v_HandStandPushups_g08_c01.avi 37\r\n"
)
UCF_TEST = "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandstandPushups/v_HandStandPushups_g01_c01.avi\n"
UCF_TREE = [  # as UCF-101.rar unpacks (note the folder's "Handstand" against the lists' "HandStand")
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi",
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
    "HandstandPushups/v_HandstandPushups_g08_c01.avi",
    "HandstandPushups/v_HandstandPushups_g01_c01.mp4",  # re-encoded to another container
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi",  # in neither list
]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def touch_tree(root: Path, relpaths: list[str]) -> list[Path]:
    for relpath in relpaths:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(b"")
    return find_files(root).files


def ucf_lists(folder: Path, number: int = 1) -> list[Path]:
    return [write(folder, f"trainlist0{number}.txt", UCF_TRAIN), write(folder, f"testlist0{number}.txt", UCF_TEST)]


def test_ucf101_lists_match_case_and_extension_insensitively(tmp_path: Path) -> None:
    table = read_split_files(ucf_lists(tmp_path / "lists"))
    assert (table.dataset, table.number) == (UCF101, 1)
    assert table.lookup("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi") == (TRAIN, None)
    assert table.lookup("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi") == (TEST, None)
    assert table.lookup("HandstandPushups/v_HandstandPushups_g08_c01.avi") == (TRAIN, None)
    assert table.lookup("HandstandPushups/v_HandstandPushups_g01_c01.mp4") == (TEST, None)
    assert table.lookup("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi") == (TRAIN, None)  # --src one level up
    assert table.lookup("ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi") == (None, NOT_LISTED)


def test_hmdb51_ids_flat_names_and_names_shared_by_two_classes(tmp_path: Path) -> None:
    lists = tmp_path / "testTrainMulti_7030_splits"
    paths = [
        write(
            lists,
            "brush_hair_test_split2.txt",
            "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n"
            "April_09_brush_hair_u_nm_np1_ba_goo_2.avi 0 \nshared_name_0.avi 1 \n",
        ),
        write(lists, "cartwheel_test_split2.txt", "shared_name_0.avi 2 \n(Cartwheel)_Mr._Bean_0.avi 1 \n"),
    ]
    table = read_split_files(paths)
    assert (table.dataset, table.number) == (HMDB51, 2)
    assert table.lookup("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi") == (TRAIN, None)
    assert table.lookup("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi") == (TEST, None)
    assert table.lookup("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi") == (None, UNUSED)
    assert table.lookup("brush_hair/shared_name_0.avi") == (TRAIN, None)  # the class folder decides
    assert table.lookup("cartwheel/shared_name_0.avi") == (TEST, None)
    assert table.lookup("other/shared_name_0.avi") == (None, AMBIGUOUS)
    assert table.lookup("cartwheel/(Cartwheel)_Mr._Bean_0.avi") == (TRAIN, None)  # dots inside the name are kept


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"trainlist01.txt": UCF_TRAIN, "testlist02.txt": UCF_TEST}, "different splits (1, 2)"),
        ({"trainlist01.txt": UCF_TRAIN, "brush_hair_test_split1.txt": "a.avi 1\n"}, "UCF101 and HMDB51"),
        (
            {"trainlist01.txt": UCF_TRAIN, "testlist01.txt": "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n"},
            "puts 'v_applyeyemakeup_g08_c01' in test but trainlist01.txt:1 puts it in train",
        ),
        (
            {"trainlist01.txt": "ApplyEyeMakeup/x.avi 1\nno_folder.avi 1\n"},
            "trainlist01.txt:2: expected 'Class/video.avi",
        ),
        (
            {"brush_hair_test_split1.txt": "a.avi 1\nb.avi 3\n"},
            "brush_hair_test_split1.txt:2: expected 'video.avi 0|1|2'",
        ),
        ({"classInd.txt": "1 ApplyEyeMakeup\n"}, "is not a split file"),
        ({"testlist01.txt": "\n\n"}, "lists no video"),
    ],
)
def test_unusable_split_files_are_refused_with_the_reason(tmp_path: Path, files: dict[str, str], message: str) -> None:
    paths = [write(tmp_path, name, text) for name, text in files.items()]
    with pytest.raises(SplitFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        read_split_files(paths)


def test_plan_puts_listed_videos_in_train_and_test_shards_and_never_mixes_them(tmp_path: Path) -> None:
    src = tmp_path / "UCF-101"
    files = touch_tree(src, UCF_TREE)
    table = read_split_files(ucf_lists(tmp_path / "lists"))
    jobs = plan_shards(src, files, shard_size=2, val_fraction=0.5, seed=0, splits=table)
    planned = {item.relpath: job for job in jobs for item in job.items}
    assert {job.split for job in jobs} == {TRAIN, TEST}  # no hash-split validation videos with split files
    assert sorted(job.name for job in jobs) == ["0000.tar", "0001.tar", "test-0000.tar"]
    for relpath, job in planned.items():
        assert job.split == table.split_of(relpath)
        assert job.name.startswith("test-") == (job.split == TEST)
    assert "ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi" not in planned
    assert all(item.stats_rank is None for job in jobs if job.split == TEST for item in job.items)  # stats: train only
    report = match_files(src, files, table)
    assert report.counts == {TRAIN: 3, TEST: 2} and report.not_found == 0
    assert [(row.path, row.status, row.reason, row.label) for row in report.skipped] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi", SKIPPED, NOT_LISTED, "ApplyEyeMakeup")
    ]
    # without split files the plan is the hash split, as before
    default = plan_shards(src, files, shard_size=2, val_fraction=0.5, seed=0)
    assert {job.split for job in default} <= {TRAIN, VAL} and len([i for j in default for i in j.items]) == 6


def test_a_wrong_source_folder_matches_nothing_and_says_so(tmp_path: Path) -> None:
    files = touch_tree(tmp_path / "videos", ["a/x.avi", "b/y.avi"])
    with pytest.raises(SplitFileError, match="none of the 2 files"):
        match_files(tmp_path / "videos", files, read_split_files(ucf_lists(tmp_path / "lists")))


def test_split_file_flag_and_resume_settings(tmp_path: Path) -> None:
    lists = ucf_lists(tmp_path / "lists")
    config = parse_args(["--src", str(tmp_path), "--split-file", *map(str, lists)])
    assert config.split_file == tuple(lists)
    assert len(config.content_settings()["split_files"]) == 2  # their content decides the shards
    assert "split_files" not in IngestConfig(src=tmp_path).content_settings()  # earlier runs still resume
    with pytest.raises(SystemExit):
        parse_args(["--src", str(tmp_path), "--split-file", str(tmp_path / "missing.txt")])


def test_folder_shard_lists_keep_train_val_and_test_apart(tmp_path: Path) -> None:
    for name in ("0000.tar", "0001.tar", "val-0000.tar", "test-0000.tar", "test-0001.tar"):
        with tarfile.open(tmp_path / name, "w"):
            pass
    assert [Path(p).name for p in expand_shards(str(tmp_path))] == ["0000.tar", "0001.tar"]
    assert [Path(p).name for p in expand_shards(str(tmp_path), "val")] == ["val-0000.tar"]
    assert [Path(p).name for p in expand_shards(str(tmp_path), "test")] == ["test-0000.tar", "test-0001.tar"]


@pytest.fixture(scope="module")
def labeled_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 synthetic videos of 3 s in class folders class_00, class_01."""
    from pipeline.synth import SynthConfig, generate

    folder = tmp_path_factory.mktemp("labeled")
    generate(SynthConfig(out=folder, videos=6, duration=3.0, size=32, seed=5, workers=2, classes=2))
    return folder


def test_ingest_with_split_files_writes_train_and_test_shards(labeled_videos: Path, tmp_path: Path) -> None:
    files = [path.relative_to(labeled_videos).as_posix() for path in find_files(labeled_videos).files]
    assert len(files) == 6 and {f.split("/")[0] for f in files} == {"class_00", "class_01"}
    train, test = files[:3], files[3:5]  # files[5] is in no list
    lists = [
        write(tmp_path / "lists", "trainlist01.txt", "".join(f"{f} 1\n" for f in train)),
        write(tmp_path / "lists", "testlist01.txt", "".join(f"{f}\n" for f in test)),
    ]
    root = tmp_path / "data"
    config = IngestConfig(
        src=labeled_videos,
        out=root / "shards",
        shard_size=2,
        short_side=32,
        workers=2,
        engine="processes",
        split_file=tuple(lists),
        plain=True,
    )
    summary = run_ingest(config)
    assert summary.ok == 5 and summary.failed == 0
    assert sorted(p.name for p in (root / "shards").glob("*.tar")) == ["0000.tar", "0001.tar", "test-0000.tar"]
    videos = pd.read_parquet(root / "manifests" / "videos.parquet").set_index("path")
    assert sorted(videos.index[videos.split == TRAIN]) == sorted(train)
    assert sorted(videos.index[videos.split == TEST]) == sorted(test)
    assert all(videos.loc[test, "shard"] == "test-0000.tar")
    assert not videos.loc[test, "in_stats_subset"].any()  # normalization comes from training videos only
    skipped = videos.loc[files[5]]
    assert (skipped.status, skipped.reason) == (SKIPPED, NOT_LISTED) and pd.isna(skipped.shard)
    with tarfile.open(root / "shards" / "test-0000.tar") as tar:
        metas = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]  # type: ignore[arg-type]
    assert sorted(meta["source"] for meta in metas) == sorted(test)
    assert {meta["label"] for meta in metas} == {f.split("/")[0] for f in test}
    # another split file's content is another data set: refused rather than mixed with these shards
    lists[1].write_text(f"{train[0]}\n")
    lists[0].write_text("".join(f"{f} 1\n" for f in train[1:]))
    with pytest.raises(IngestError, match="split_files"):
        run_ingest(config)
