"""`rag index --ray`: Ray Data embedding on a real local Ray cluster gives the local path's vectors
(cosine >= 0.9999 per row) and search results, through the API and the CLI; a wrong address is
one line.

One local Ray cluster (2 CPUs, 2 one-CPU actors) serves the whole module; starting it and the
actors' model loads are most of the module's ~60-90 s on the project's 2-core machine.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import CountingEncoder, free_port, write_corpus

from rag import cli
from rag.chunk import embedding_units
from rag.config import Settings
from rag.encoders import Encoder
from rag.encoders.batching import cores
from rag.encoders.ray_pool import ray_encoders, ray_session
from rag.evaluate import load_questions
from rag.index import Index, build_index, embedding_units_by_role, load_index
from rag.retrieve import Retriever

ROOT = Path(__file__).resolve().parent.parent
MIN_COSINE = 0.9999
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, float]]:
    """A local Ray cluster started the way `rag index --ray` (no address) starts one."""
    with ray_session(None) as resources:
        yield resources


@pytest.fixture(scope="module")
def local_index(settings: Settings, encoders: dict[str, Encoder], tmp_path_factory: pytest.TempPathFactory) -> Index:
    local = replace(settings, index_dir=tmp_path_factory.mktemp("local-index"))
    build_index(local, encoders, progress=False, full=True)
    return load_index(local)


@pytest.fixture(scope="module")
def ray_built(
    settings: Settings, encoders: dict[str, Encoder], cluster: dict[str, float], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Index, dict[str, CountingEncoder]]:
    """The shipped corpus built through Ray; the local encoders count what they are asked to embed."""
    ray_settings = replace(settings, index_dir=tmp_path_factory.mktemp("ray-index"))
    counted = {role: CountingEncoder(enc) for role, enc in encoders.items()}
    wrapped = ray_encoders(ray_settings, counted, cluster)
    assert {enc.workers for enc in wrapped.values()} == {cores()}  # one one-CPU actor per core
    build_index(ray_settings, wrapped, progress=False, full=True)
    return load_index(ray_settings), counted


def test_ray_vectors_equal_the_local_paths(ray_built: tuple[Index, dict[str, CountingEncoder]], local_index: Index) -> None:
    index, counted = ray_built
    assert all(not enc.texts for enc in counted.values()), "the driver embedded passages itself instead of the actors"
    assert set(index.embeddings) == set(local_index.embeddings) and len(index.embeddings) == 2  # e5 and the second encoder
    for role, local in local_index.embeddings.items():
        got = index.embeddings[role]
        assert got.shape == local.shape and len(got) > 50, role
        cosine = (got * local).sum(1)
        assert cosine.min() >= MIN_COSINE, (role, float(cosine.min()), int(cosine.argmin()))
    # late interaction's token rows come back from the actors too, the same as a local build's
    assert index.late is not None and local_index.late is not None
    assert np.array_equal(index.late[1], local_index.late[1])
    assert np.allclose(index.late[0].astype(np.float32), local_index.late[0].astype(np.float32), atol=2e-3)


def test_ray_build_gives_the_same_search_results(
    settings: Settings, encoders: dict[str, Encoder], ray_built: tuple[Index, dict[str, CountingEncoder]], local_index: Index
) -> None:
    questions = load_questions(ROOT / "tests" / "data" / "questions.jsonl")[::8]  # 28 of 222, both languages
    via_ray, here = Retriever(settings, encoders, ray_built[0]), Retriever(settings, encoders, local_index)
    for q in questions:
        got = [(h.passage.doc_id, h.passage.start) for h in via_ray.search(q.question, 5)]
        want = [(h.passage.doc_id, h.passage.start) for h in here.search(q.question, 5)]
        assert got == want, q.id


def test_cli_builds_through_an_existing_cluster(
    settings: Settings, encoders: dict[str, Encoder], cluster: dict[str, float], tmp_path: Path
) -> None:
    """`rag index --ray ADDRESS` as a user runs it: another process joins the cluster by its address."""
    import ray

    corpus, index_dir = write_corpus(tmp_path / "corpus"), tmp_path / "index"
    address = ray.get_runtime_context().gcs_address
    args = ["index", "--ray", address, "--corpus", str(corpus), "--index", str(index_dir), "--quiet"]
    done = subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded" in done.stdout and "Traceback" not in done.stderr
    index = load_index(replace(settings, corpus_dir=corpus, index_dir=index_dir))
    units = embedding_units_by_role(settings)
    for role, encoder in encoders.items():
        texts = embedding_units(index.passages, units[role])[0]
        cosine = (index.embeddings[role] * encoder.encode_passages(texts)).sum(1)
        assert len(texts) >= len(index.passages) >= 4 and cosine.min() >= MIN_COSINE, role


@pytest.mark.parametrize("address", ["closed", "no-port"])
def test_an_unreachable_address_is_one_line(address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{free_port()}" if address == "closed" else "headnode"
    corpus = write_corpus(tmp_path / "corpus")
    rc = cli.main(["index", "--ray", target, "--corpus", str(corpus), "--index", str(tmp_path / "index"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("rag: error:"), err
    assert target in err and ("ray start --head" in err if address == "closed" else "host:port" in err), err
    assert not (tmp_path / "index").exists() or not any((tmp_path / "index").iterdir())  # nothing built


def test_an_up_to_date_index_starts_no_cluster(
    settings: Settings, encoders: dict[str, Encoder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rag index --ray` with nothing to embed neither starts nor joins Ray (seconds, not a cluster start)."""
    corpus, index_dir = write_corpus(tmp_path / "corpus"), tmp_path / "index"
    build_index(replace(settings, corpus_dir=corpus, index_dir=index_dir), encoders, progress=False)
    capsys.readouterr()
    rc = cli.main(["index", "--ray", "--corpus", str(corpus), "--index", str(index_dir)])
    out = capsys.readouterr()
    assert rc == 0 and "embedded 0 passages" in out.out, out
    assert "Ray" not in out.err, out.err
