"""Retention keeps the last K versions and never a blob that a kept version needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chroma_compactor import ops
from chroma_compactor.retention import apply_retention
from support import snapshot_state, vector

if TYPE_CHECKING:
    from chroma_compactor.reader import Reader
    from support import Pipeline


def _commit_versions(pipeline: Pipeline, n: int) -> None:
    compactor = pipeline.compactor("a")
    for i in range(n):
        pipeline.send(ops.upsert("docs", f"id{i}", 1, vector(i)))
        pipeline.drain(compactor)


def test_commits_keep_only_the_last_versions(pipeline: Pipeline, reader: Reader) -> None:
    pipeline.settings = pipeline.settings.model_copy(update={"retain_versions": 2})
    _commit_versions(pipeline, 5)

    assert reader.store.list_versions("docs") == [4, 5]
    assert set(snapshot_state(reader, "docs")) == {f"id{i}" for i in range(5)}


def test_garbage_collection_removes_only_blobs_no_kept_version_names(
    pipeline: Pipeline, reader: Reader
) -> None:
    _commit_versions(pipeline, 4)
    store = reader.store
    all_blobs = {
        k["Key"]
        for k in pipeline.clients.s3.list_objects_v2(Bucket=store.bucket)["Contents"]
        if "/blobs/" in k["Key"]
    }

    result = apply_retention(store, "docs", current_version=4, keep=1, grace_seconds=0)

    left = {
        k["Key"]
        for k in pipeline.clients.s3.list_objects_v2(Bucket=store.bucket)["Contents"]
        if "/blobs/" in k["Key"]
    }
    needed = {store.blob_key("docs", b) for b in store.read_manifest("docs", 4).blob_names()}
    assert result.versions_deleted == 3
    assert left == needed and left < all_blobs
    assert set(snapshot_state(reader, "docs", version=4)) == {f"id{i}" for i in range(4)}


def test_young_blobs_survive_collection(pipeline: Pipeline, reader: Reader) -> None:
    _commit_versions(pipeline, 3)

    result = apply_retention(reader.store, "docs", current_version=3, keep=1)

    assert result.versions_deleted == 2 and result.blobs_deleted == 0
