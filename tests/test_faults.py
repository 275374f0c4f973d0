"""Faults: builds killed with SIGKILL, two builds at once, damaged files, an empty corpus.

Builds are real `python -m rag.cli index` processes; RAG_TEST_PAUSE_AT makes one stop at a named
point (see rag/index.py) so the kill lands exactly there. Their corpus change is a deletion and a
rename, which need no new vectors, so these processes never load the model and start in a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support import free_port, rag_process, wait_for_text, write_corpus

from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import CorpusError, IndexBusyError, IndexInvalidError
from rag.index import FORMAT_VERSION, PAUSE_POINTS, BuildReport, build_index, current_version, load_index, writer_lock
from rag.retrieve import Retriever

pytestmark = pytest.mark.slow


def _change_without_new_text(corpus: Path) -> None:
    (corpus / "pharmacy.txt").unlink()
    (corpus / "guide.txt").rename(corpus / "handbook.txt")


@pytest.fixture
def small(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")


def _versions(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.is_dir())


def _index_args(s: Settings, *extra: str) -> list[str]:
    return ["index", "--corpus", str(s.corpus_dir), "--index", str(s.index_dir), "--quiet", *extra]


def test_sigkill_at_any_point_of_a_build_leaves_the_last_good_index(small: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    good = build_index(small, encoders, progress=False)
    _change_without_new_text(small.corpus_dir)
    # one killed build per pause point, all started at once, each on its own copy of the index
    runs = {}
    for point in PAUSE_POINTS:
        s = replace(small, index_dir=tmp_path / f"index-{point}")
        shutil.copytree(small.index_dir, s.index_dir)
        log = tmp_path / f"{point}.log"
        runs[point] = (s, log, rag_process(*_index_args(s), env={"RAG_TEST_PAUSE_AT": point}, log=log))
    try:
        for point, (s, log, proc) in runs.items():
            wait_for_text(log, f"paused at {point}", proc)
            proc.kill()
            assert proc.wait(timeout=30) == -9
            index = load_index(s)  # loadable whatever the point
            live = {p.doc_id for p in index.passages}
            if point == "switched":  # killed after the switch: the new version is complete and live
                assert live == {"handbook.txt", "travel.md", "family/kids.txt"} and index.path.name != good.path.name
            else:
                assert index.path.name == good.path.name and "pharmacy.txt" in live, point
            assert Retriever(s, encoders, index).search("医保电子凭证", 1)
            with writer_lock(s.index_dir, wait=False):  # the dead builder does not hold the lock
                pass
            report = build_index(s, encoders, progress=False)  # the next build works and sweeps the leftovers
            assert report.embedded == 0 and "pharmacy.txt" not in {p.doc_id for p in load_index(s).passages}
            assert _versions(s.index_dir) == sorted({index.path.name, report.path.name}), point
            assert not list(s.index_dir.glob(".*tmp*")), point
    finally:
        for _, _, proc in runs.values():
            proc.kill()
            proc.wait()


def test_a_second_build_waits_for_the_first_or_exits_with_a_clear_message(
    small: Settings, encoders: dict[str, Encoder], tmp_path: Path
) -> None:
    build_index(small, encoders, progress=False)
    _change_without_new_text(small.corpus_dir)
    log = tmp_path / "first.log"
    first = rag_process(*_index_args(small), env={"RAG_TEST_PAUSE_AT": "embedded"}, log=log)
    try:
        wait_for_text(log, "paused at embedded", first)
        started = time.monotonic()
        refused = subprocess.run([sys.executable, "-m", "rag.cli", *_index_args(small, "--no-wait")], capture_output=True, text=True)
        assert refused.returncode == 2 and time.monotonic() - started < 30
        assert refused.stderr.strip() == (
            f"rag: error: another build (pid {first.pid}) is writing {small.index_dir}; "
            "run again when it finishes, or without --no-wait to wait for it"
        )
        with pytest.raises(IndexBusyError, match=f"pid {first.pid}"):
            build_index(small, encoders, progress=False, wait=False)

        heard: list[str] = []
        reports: list[BuildReport] = []
        waiting = threading.Thread(target=lambda: reports.append(build_index(small, encoders, progress=False, stage=heard.append)))
        waiting.start()
        time.sleep(1.5)
        assert waiting.is_alive() and heard == [f"waiting for another build (pid {first.pid}) to finish writing {small.index_dir} ..."]
        first.kill()  # the holder dies: the OS releases its lock and the waiting build goes on
        waiting.join(timeout=120)
        assert not waiting.is_alive() and reports
        assert reports[0].changes.removed == ["guide.txt", "pharmacy.txt"] and reports[0].changes.added == ["handbook.txt"]
        assert "pharmacy.txt" not in {p.doc_id for p in load_index(small).passages}
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize(
    "victim, damage",
    [
        ("dense-primary.faiss", "truncate"),
        ("keyword/params.index.json", "truncate"),
        ("embeddings-second.npy", "flip"),
        ("passages.jsonl", "flip"),
        ("keys-primary.npy", "delete"),
    ],
)
def test_truncated_altered_or_missing_files_are_named_with_the_fix(
    small: Settings, encoders: dict[str, Encoder], victim: str, damage: str
) -> None:
    report = build_index(small, encoders, progress=False)
    path = report.path / victim
    assert path.exists(), sorted(p.name for p in report.path.rglob("*"))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    else:
        path.unlink()
    with pytest.raises(IndexInvalidError, match=rf"{victim}.*rag index --index"):
        load_index(small)


def test_index_of_an_older_format_is_refused_with_the_fix(small: Settings, encoders: dict[str, Encoder]) -> None:
    report = build_index(small, encoders, progress=False)
    manifest = json.loads((report.path / "manifest.json").read_text())
    (report.path / "manifest.json").write_text(json.dumps(manifest | {"format_version": 1}))
    with pytest.raises(IndexInvalidError, match=rf"format 1 is not the supported {FORMAT_VERSION}; run `rag index"):
        load_index(small)
    assert build_index(small, encoders, progress=False).embedded == report.passages  # nothing reused from an old format
    load_index(small)


def test_rag_serve_refuses_to_start_on_a_broken_index(small: Settings, encoders: dict[str, Encoder]) -> None:
    report = build_index(small, encoders, progress=False)
    (report.path / "dense-primary.faiss").write_bytes(b"garbage")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag.cli",
            "serve",
            "--port",
            str(free_port()),
            "--corpus",
            str(small.corpus_dir),
            "--index",
            str(small.index_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"rag: error: index at {report.path} is damaged: dense-primary.faiss")
    assert "run `rag index" in result.stderr


def test_an_empty_corpus_is_refused_and_the_last_index_stays(small: Settings, encoders: dict[str, Encoder]) -> None:
    good = build_index(small, encoders, progress=False)
    for path in small.corpus_dir.rglob("*.*"):
        path.unlink()
    with pytest.raises(CorpusError, match=r"no readable documents \(\.txt, \.md"):
        build_index(small, encoders, progress=False)
    assert current_version(small.index_dir) == good.path and len(load_index(small).passages) == good.passages
