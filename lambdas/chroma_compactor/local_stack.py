"""Local mode: the real handlers against moto's HTTP server, with state kept in a data directory.

moto keeps everything in memory, so a stopping stack saves its tables, bucket and queues under
``<data-dir>/state`` and a starting one loads them back: a stopped local stack can be started
again and finds its snapshots. ``<data-dir>/stack.json`` says where a running stack listens, so
``chroma-compactor local env`` can point other processes at it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chroma_compactor.errors import ConfigurationError
from chroma_compactor.resources import PipelineNames, create_pipeline
from chroma_compactor.settings import QueueType, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from moto.server import ThreadedMotoServer

    from chroma_compactor.wiring import Clients

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
PREFIX = "local"
REGION = "us-east-1"
# moto accepts any credentials; these make it obvious that nothing here is real.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass(frozen=True)
class StackInfo:
    """Where a local stack listens and what it is called; saved as ``stack.json``."""

    data_dir: str
    endpoint: str
    queue_type: str
    queue_url: str
    dlq_url: str
    pid: int

    @property
    def names(self) -> PipelineNames:
        return PipelineNames.for_prefix(PREFIX, QueueType(self.queue_type))

    def settings(self) -> Settings:
        names = self.names
        return Settings(
            source_table_name=names.source_table,
            control_table_name=names.control_table,
            snapshot_bucket=names.bucket,
            compaction_queue_url=self.queue_url,
            queue_type=QueueType(self.queue_type),
            cache_dir=str(Path(self.data_dir) / "cache"),
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this stack as if it were AWS."""
        return {
            **self.settings().to_env(),
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def save(self) -> None:
        path = Path(self.data_dir) / STACK_FILE
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, data_dir: Path) -> StackInfo:
        path = data_dir / STACK_FILE
        try:
            info = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigurationError(
                f"no local stack in {data_dir}: start one with "
                f"`chroma-compactor local up --data-dir {data_dir}`"
            ) from None
        if not _alive(info.pid):
            raise ConfigurationError(
                f"the local stack in {data_dir} is not running (pid {info.pid} is gone); "
                "start it again with `chroma-compactor local up`"
            )
        return info


class LocalStack:
    """A moto server on 127.0.0.1 with the pipeline's resources, loaded from the data dir."""

    def __init__(self, data_dir: Path, port: int, queue_type: QueueType) -> None:
        self.data_dir = data_dir
        self.port = port
        self.queue_type = queue_type
        self._server: ThreadedMotoServer | None = None
        self.info: StackInfo | None = None
        self.restored = 0

    def start(self) -> StackInfo:
        from moto.server import ThreadedMotoServer

        from chroma_compactor.wiring import Clients

        self.data_dir.mkdir(parents=True, exist_ok=True)
        from chroma_compactor import moto_patches

        moto_patches.apply()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update({**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        clients = Clients.create()
        names = PipelineNames.for_prefix(PREFIX, self.queue_type)
        created = create_pipeline(clients, names, self.queue_type)
        self.info = StackInfo(
            data_dir=str(self.data_dir.resolve()),
            endpoint=endpoint,
            queue_type=self.queue_type.value,
            queue_url=created.queue_url,
            dlq_url=created.dlq_url,
            pid=os.getpid(),
        )
        os.environ.update(self.info.environment())
        self.restored = restore_state(clients, self.info, self.data_dir / "state")
        self.info.save()
        return self.info

    def stop(self, save: bool = True) -> None:
        if self.info is not None and save:
            from chroma_compactor.wiring import Clients

            save_state(Clients.create(), self.info, self.data_dir / "state")
        if self._server is not None:
            self._server.stop()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STACK_FILE).unlink()

    @contextlib.contextmanager
    def running(self, save: bool = True) -> Iterator[StackInfo]:
        info = self.start()
        try:
            yield info
        finally:
            self.stop(save=save)


def run_local(data_dir: Path, port: int, queue_type: QueueType, workers: bool) -> int:
    """``chroma-compactor local up``: run until interrupted, then save state and stop."""
    from rich.console import Console

    from chroma_compactor.pollers import Pollers, quiet_lambda_logs

    console = Console()
    stack = LocalStack(data_dir, port, queue_type)
    stop = threading.Event()
    # Both set here rather than left to Python's default: a process started in the background
    # by a non-interactive shell inherits SIGINT *ignored*, and would never see Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with stack.running() as info:
        quiet_lambda_logs(data_dir / "logs")
        console.print(f"[green]local stack up[/] at {info.endpoint} ({queue_type.value} queue)")
        if stack.restored:
            console.print(f"restored {stack.restored} items and objects from {data_dir / 'state'}")
        console.print(
            f'point other shells at it: eval "$(chroma-compactor local env --data-dir {data_dir})"'
        )
        pollers = Pollers(info.settings()) if workers else None
        if pollers:
            pollers.start()
            console.print("workers: stream -> forwarder, queue -> compactor (concurrency 1)")
        else:
            console.print("no workers: run `chroma-compactor forward --once` / `compact --once`")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        console.print("stopping: saving state ...")
        if pollers:
            pollers.stop()
    return 0


# -- state: save and restore ----------------------------------------------------------------------


def save_state(clients: Clients, info: StackInfo, state_dir: Path) -> None:
    """Write tables, queues and the bucket to ``state_dir`` (blobs are written once: immutable)."""
    names = info.names
    state_dir.mkdir(parents=True, exist_ok=True)
    for table, file in (
        (names.source_table, "source.jsonl"),
        (names.control_table, "control.jsonl"),
    ):
        _write_lines(state_dir / file, _scan(clients, table))
    for url, file in ((info.queue_url, "queue.jsonl"), (info.dlq_url, "dlq.jsonl")):
        _write_lines(state_dir / file, _drain_messages(clients, url))
    s3_dir = state_dir / "s3"
    keep: set[Path] = set()
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=names.bucket):
        for obj in page.get("Contents", []):
            path = s3_dir / obj["Key"]
            keep.add(path)
            if path.exists() and path.stat().st_size == obj["Size"] and "/blobs/" in obj["Key"]:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(
                clients.s3.get_object(Bucket=names.bucket, Key=obj["Key"])["Body"].read()
            )
    for path in s3_dir.rglob("*") if s3_dir.exists() else []:
        if path.is_file() and path not in keep:
            path.unlink()


def restore_state(clients: Clients, info: StackInfo, state_dir: Path) -> int:
    """Load what ``save_state`` wrote; returns how many items, messages and objects came back."""
    if not state_dir.exists():
        return 0
    from chroma_compactor.stream_checkpoint import StreamCursor

    names = info.names
    count = 0
    for table, file in (
        (names.source_table, "source.jsonl"),
        (names.control_table, "control.jsonl"),
    ):
        items = [_decode_item(json.loads(line)) for line in _read_lines(state_dir / file)]
        if table == names.control_table:
            # The stream is new: old shard checkpoints mean nothing to it.
            items = [i for i in items if not i["pk"]["S"].startswith("stream#")]
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            clients.dynamodb.batch_write_item(RequestItems={table: batch})  # type: ignore[dict-item]
        count += len(items)
    # The restored items were already forwarded before the stop; do not forward them twice.
    StreamCursor(clients, info.settings()).skip_to_end()
    for url, file in ((info.queue_url, "queue.jsonl"), (info.dlq_url, "dlq.jsonl")):
        for line in _read_lines(state_dir / file):
            message = json.loads(line)
            kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": message["body"]}
            if url.endswith(".fifo"):
                kwargs["MessageGroupId"] = message.get("group") or "restored"
                kwargs["MessageDeduplicationId"] = message["id"]
            clients.sqs.send_message(**kwargs)
            count += 1
    s3_dir = state_dir / "s3"
    for path in s3_dir.rglob("*") if s3_dir.exists() else []:
        if path.is_file():
            key = path.relative_to(s3_dir).as_posix()
            clients.s3.put_object(Bucket=names.bucket, Key=key, Body=path.read_bytes())
            count += 1
    return count


def _scan(clients: Clients, table: str) -> Iterator[dict[str, Any]]:
    for page in clients.dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page.get("Items", []):
            yield _encode_item(item)


def _drain_messages(clients: Clients, url: str) -> Iterator[dict[str, Any]]:
    """Every message of a queue, received once (the server is about to go away with them)."""
    while True:
        got = clients.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageSystemAttributeNames=["MessageGroupId"],
        ).get("Messages", [])
        if not got:
            return
        for m in got:
            yield {
                "id": m["MessageId"],
                "body": m["Body"],
                "group": m.get("Attributes", {}).get("MessageGroupId"),
            }


def _encode_item(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__b64__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_item(v) for v in value]
    return value


def _decode_item(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode_item(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_item(v) for v in value]
    return value


def _write_lines(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def _read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
