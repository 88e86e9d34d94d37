"""query(): nearest neighbours in the current snapshot, always by vector, never by text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.errors import CompactorError
from chroma_compactor.query import Hit, query
from support import vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


@pytest.fixture
def docs(pipeline: Pipeline) -> Pipeline:
    """Twenty records in "docs", compacted: id<i> has vector(i), document d<i>, parity metadata."""
    pipeline.send(
        *(
            ops.upsert(
                "docs",
                f"id{i}",
                1,
                vector(i),
                document=f"d{i}",
                metadata={"even": i % 2 == 0, "i": i},
            )
            for i in range(20)
        )
    )
    pipeline.drain(pipeline.compactor("a"))
    return pipeline


def test_query_by_vector_returns_the_exact_record_first_at_distance_zero(
    docs: Pipeline, reader: Reader
) -> None:
    hits = query(reader, "docs", vector=vector(7).tolist(), k=3)

    assert [h.id for h in hits][:1] == ["id7"]
    assert hits[0].distance == pytest.approx(0, abs=1e-5)
    assert len(hits) == 3


def test_hits_are_ordered_by_distance(docs: Pipeline, reader: Reader) -> None:
    hits = query(reader, "docs", vector=vector(3).tolist(), k=10)

    distances = [h.distance for h in hits]
    assert distances == sorted(distances)


def test_a_hit_carries_its_document_and_metadata(docs: Pipeline, reader: Reader) -> None:
    (hit,) = query(reader, "docs", vector=vector(12).tolist(), k=1)

    assert hit == Hit(
        id="id12", distance=hit.distance, document="d12", metadata={"even": True, "i": 12}
    )


def test_query_by_id_uses_that_records_embedding(docs: Pipeline, reader: Reader) -> None:
    by_id = query(reader, "docs", id="id5", k=5)
    by_vector = query(reader, "docs", vector=vector(5).tolist(), k=5)

    assert by_id[0].id == "id5" and by_id[0].distance == pytest.approx(0, abs=1e-5)
    assert [h.id for h in by_id] == [h.id for h in by_vector]


def test_query_by_an_unknown_id_names_it(docs: Pipeline, reader: Reader) -> None:
    with pytest.raises(CompactorError, match="'nope'"):
        query(reader, "docs", id="nope")


def test_a_where_filter_returns_only_matching_records(docs: Pipeline, reader: Reader) -> None:
    hits = query(reader, "docs", vector=vector(3).tolist(), k=20, where={"even": True})

    assert sorted(h.id for h in hits) == sorted(f"id{i}" for i in range(0, 20, 2))


def test_k_larger_than_the_collection_returns_every_record(docs: Pipeline, reader: Reader) -> None:
    hits = query(reader, "docs", vector=vector(0).tolist(), k=500)

    assert len(hits) == 20


def test_query_reads_the_latest_version(docs: Pipeline, reader: Reader) -> None:
    query(reader, "docs", id="id1", k=1)  # the reader's cache now holds version 1
    docs.send(ops.upsert("docs", "id1", 2, vector(1), document="rewritten"))
    docs.drain(docs.compactor("a"))

    (hit,) = query(reader, "docs", id="id1", k=1)

    assert hit.document == "rewritten"


def test_both_a_vector_and_an_id_is_an_error(docs: Pipeline, reader: Reader) -> None:
    with pytest.raises(CompactorError, match="exactly one"):
        query(reader, "docs", vector=vector(1).tolist(), id="id1")


def test_neither_a_vector_nor_an_id_is_an_error(docs: Pipeline, reader: Reader) -> None:
    with pytest.raises(CompactorError, match="exactly one"):
        query(reader, "docs")


def test_k_below_one_is_an_error(docs: Pipeline, reader: Reader) -> None:
    with pytest.raises(CompactorError, match="k must be at least 1"):
        query(reader, "docs", id="id1", k=0)


def test_a_collection_without_a_snapshot_is_a_clear_error(
    pipeline: Pipeline, reader: Reader
) -> None:
    with pytest.raises(CompactorError, match="'ghost' has no committed snapshot"):
        query(reader, "ghost", vector=vector(1).tolist())


# -- the CLI ---------------------------------------------------------------------------------------


def test_query_command_by_id_prints_json_hits(
    docs: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["query", "docs", "--id", "id4", "--k", "3", "--where", '{"even": true}', "--json"])

    hits = json.loads(capsys.readouterr().out)
    assert code == 0
    assert hits[0]["id"] == "id4" and hits[0]["document"] == "d4"
    assert len(hits) == 3 and all(h["metadata"]["even"] for h in hits)


def test_query_command_prints_a_table(
    docs: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "docs", "--id", "id9", "--k", "2"]) == 0

    out = capsys.readouterr().out
    assert "id9" in out and "d9" in out and "0.0000" in out


def test_query_command_for_an_unknown_id_is_one_line_and_exit_2(
    docs: Pipeline, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "docs", "--id", "missing"]) == 2

    err = capsys.readouterr().err
    assert "'missing'" in err and "Traceback" not in err
