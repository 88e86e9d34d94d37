"""Versions, rollback and gc: going back in time and keeping storage bounded."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from chroma_compactor import ops
from chroma_compactor.cli import main
from chroma_compactor.errors import ConfigurationError, LeaseBusy, SnapshotCorrupt
from chroma_compactor.history import partition_for, rollback
from chroma_compactor.retention import BLOB_GRACE_SECONDS
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from chroma_compactor.snapshot_store import SnapshotStore
    from support import Pipeline


def _three_versions(pipeline: Pipeline) -> None:
    """docs v1 = {a, b}; v2 = a rewritten; v3 = b deleted, c added."""
    c = pipeline.compactor("a")
    pipeline.send(ops.upsert("docs", "a", 1, vector(1)), ops.upsert("docs", "b", 1, vector(2)))
    pipeline.drain(c)
    pipeline.send(ops.upsert("docs", "a", 2, vector(3), document="second"))
    pipeline.drain(c)
    pipeline.send(ops.delete("docs", "b", 2), ops.upsert("docs", "c", 1, vector(4)))
    pipeline.drain(c)


def _put_orphan(store: SnapshotStore, data: bytes) -> str:
    name = hashlib.sha256(data).hexdigest()
    store.put_blob("docs", name, data)
    return name


def test_versions_lists_each_retained_version_and_marks_the_current_one(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_versions(cli_env)

    assert main(["versions", "docs", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["record_count"], v["current"]) for v in listed] == [
        (1, 2, False),
        (2, 2, False),
        (3, 2, True),
    ]
    assert all(v["bytes"] > 0 and v["fencing_token"] > 0 and v["created_at"] for v in listed)


def test_rollback_publishes_the_old_content_as_the_next_version(
    cli_env: Pipeline, reader: Reader, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_versions(cli_env)
    then = snapshot_state(reader, "docs", 1)

    assert main(["rollback", "docs", "--to", "1"]) == 0

    assert "version 4" in capsys.readouterr().out
    assert cli_env.compactor("b").pointers.read("docs").version == 4
    assert snapshot_state(reader, "docs") == then
    assert reader.store.read_manifest("docs", 4).rolled_back_from == 1


def test_after_a_rollback_a_message_newer_than_the_version_applies_again(
    pipeline: Pipeline, reader: Reader
) -> None:
    """The ledger is version 1's again, so version 2's write is no longer stale."""
    _three_versions(pipeline)
    rollback(pipeline.compactor("b"), "docs", 1)

    pipeline.send(ops.upsert("docs", "a", 2, vector(3), document="second"))
    pipeline.drain(pipeline.compactor("a"))

    assert snapshot_state(reader, "docs")["a"][1] == "second"
    assert pipeline.compactor("b").pointers.read("docs").version == 5


def test_rollback_refuses_a_version_that_is_not_retained_and_lists_those_that_are(
    pipeline: Pipeline,
) -> None:
    _three_versions(pipeline)

    with pytest.raises(ConfigurationError, match="no retained version 9; retained: 1, 2, 3"):
        rollback(pipeline.compactor("b"), "docs", 9)


def test_rollback_refuses_while_a_compactor_holds_the_lease(pipeline: Pipeline) -> None:
    _three_versions(pipeline)
    c = pipeline.compactor("b")
    c.leases.acquire("docs", "lambda-busy", 30)

    with pytest.raises(LeaseBusy, match="try again when it is done"):
        rollback(c, "docs", 1)

    assert c.pointers.read("docs").version == 3


def test_a_sharded_collection_names_the_shard_whose_versions_are_meant(
    pipeline: Pipeline,
) -> None:
    c = pipeline.compactor("b")
    c.layouts.ensure("big", 2)

    with pytest.raises(ConfigurationError, match=r"big\.s0-of-2, big\.s1-of-2"):
        partition_for(c.layouts, "big")
    assert partition_for(c.layouts, "big.s1-of-2") == "big.s1-of-2"


def test_gc_dry_run_lists_what_would_go_and_deletes_nothing(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_versions(cli_env)
    store = cli_env.compactor("b").store
    orphan = _put_orphan(store, b"an orphan")

    assert main(["gc", "docs", "--dry-run", "--grace-seconds", "0"]) == 0

    assert f"  blob {orphan}" in capsys.readouterr().out
    assert store.get_blob("docs", orphan) == b"an orphan"


def test_gc_keeps_an_unnamed_blob_within_its_grace_and_deletes_it_after(
    cli_env: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """An in-flight cycle uploads blobs before its manifest names them."""
    _three_versions(cli_env)
    store = cli_env.compactor("b").store
    orphan = _put_orphan(store, b"uploaded by a cycle still running")

    assert main(["gc", "docs"]) == 0  # grace: BLOB_GRACE_SECONDS
    assert BLOB_GRACE_SECONDS >= 900  # longer than any cycle can run
    store.get_blob("docs", orphan)

    assert main(["gc", "docs", "--grace-seconds", "0"]) == 0
    assert "deleted 0 versions and 1 blobs" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(SnapshotCorrupt, match="missing"):
        store.get_blob("docs", orphan)


def test_gc_keeps_the_last_versions_and_an_abandoned_cycles_version_above_the_pointer(
    cli_env: Pipeline, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    _three_versions(cli_env)
    store = cli_env.compactor("b").store
    current = store.read_manifest("docs", 3)
    store.put_manifest(current.model_copy(update={"version": 4}))  # uploaded, never committed
    monkeypatch.setenv("RETAIN_VERSIONS", "1")

    assert main(["gc", "--grace-seconds", "0"]) == 0

    assert store.list_versions("docs") == [3, 4]
    assert len(snapshot_state(reader, "docs")) == 2  # every blob of version 3 is still there
