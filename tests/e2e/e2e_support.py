"""Local stacks in subprocesses, and writing and reading the source table from a test process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable


def put_records(ddb: Any, table: str, collection: str, numbers: Iterable[int]) -> None:
    for i in numbers:
        ddb.put_item(
            TableName=table,
            Item={
                "collection": {"S": collection},
                "id": {"S": f"n-{i}"},
                "rev": {"N": "1"},
                "embedding": {"B": np.random.default_rng(i).random(8, dtype=np.float32).tobytes()},
                "document": {"S": f"note {i}"},
            },
        )


def table_ids(ddb: Any, table: str, collection: str) -> list[str]:
    items = ddb.query(
        TableName=table,
        KeyConditionExpression="#c = :c",
        ExpressionAttributeNames={"#c": "collection"},
        ExpressionAttributeValues={":c": {"S": collection}},
    )["Items"]
    return [item["id"]["S"] for item in items]


if TYPE_CHECKING:
    from pathlib import Path

STARTUP_S = 60


@dataclass
class LocalProcess:
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "chroma_compactor", *args],
            check=False,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def client(self, service: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    @property
    def log(self) -> Path:
        """What `local up` printed (stdout and stderr)."""
        return _log_of(self.data_dir)

    def stop(self, timeout: float = 120) -> None:
        """Ctrl-C: local mode saves its state, then exits."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"local up did not stop within {timeout}s; it printed:\n{self.log.read_text()}"
            ) from None


def _log_of(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}-local-up.log"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_local(
    data_dir: Path, queue_type: str = "standard", sigint_ignored: bool = False
) -> LocalProcess:
    """``local up --no-workers``; ``sigint_ignored`` starts it as a shell's background job is."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # A file, not a pipe: nobody reads a pipe while the stack runs, and a full one (64 KiB of
    # output) would block the stack on its next print, such as "stopping: saving state".
    log = _log_of(data_dir)
    with log.open("a") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chroma_compactor",
                "local",
                "up",
                "--no-workers",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                "--queue-type",
                queue_type,
            ],
            env=base,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint if sigint_ignored else None,  # noqa: PLW1509 - no threads use it
        )
    deadline = time.monotonic() + STARTUP_S
    while not (data_dir / "stack.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"local up did not start:\n{log.read_text()}")
        time.sleep(0.2)
    env_lines = subprocess.run(
        [sys.executable, "-m", "chroma_compactor", "local", "env", "--data-dir", str(data_dir)],
        env=base,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(base)
    for line in env_lines.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return LocalProcess(data_dir, process, env)
