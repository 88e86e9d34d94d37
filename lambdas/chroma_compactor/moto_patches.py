"""Make moto 5.2.5's SQS fast enough to stand in for SQS with thousands of messages in flight.

Local mode only (the Lambdas never import this). moto recomputes a queue's three
``ApproximateNumberOf*`` counts, each a scan of every message with two datetime conversions per
message, whenever *any* queue attribute is read, and it reads one for every message sent
(``ContentBasedDeduplication``) and every message received (``MessageRetentionPeriod``). Sending
and then receiving 3,000 messages took over five minutes here. The patches keep behaviour and
change cost only:

* ``Queue.attributes`` leaves the three counts out; ``get_queue_attributes`` adds them back
  when asked, counted in one pass;
* the SQS module's clock reads ``time.time()`` instead of building datetimes.

One patch fixes behaviour: after a FIFO group's visibility timeout expires, moto 5.2.5 hands
back only the group's *last* in-flight message (it frees the group only when it reaches that
message, skipping the earlier ones), so a killed compactor's batch would come back out of order
and piecemeal. ``receive_message`` now first frees every message whose timeout has expired, as
SQS does, so the whole group is redelivered in order.

Receives and deletes scale with the queue's depth too, which caps a benchmark of thousands of
messages at moto's speed, not the compactor's: ``Queue.messages`` calls two clock-reading
properties per message on every receive, and every deleted receipt handle costs two scans of the
queue (and a rebuild of its list, unlocked, so concurrent deletes can undo each other). The
patches find visible messages with one clock reading per scan, draw a receipt handle's letters in
one call rather than one call per letter, and find deleted messages through
an index of receipt handles, removing a whole batch in one locked rebuild.

``tests/integration/test_moto_patches.py`` shows the unpatched cost and that the patched
attributes, visibility rules and delete answers are as before.
"""

from __future__ import annotations

import contextlib
import json
import random
import string
import threading
import time
import weakref
from typing import Any

_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)
_applied = False


def apply() -> None:
    """Idempotent: patch moto's SQS models in this process."""
    global _applied  # noqa: PLW0603 - a process-wide, once-only switch
    if _applied:
        return
    from moto.core import utils
    from moto.core.utils import camelcase_to_underscores
    from moto.sqs import models as sqs_models

    models: Any = sqs_models

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000 if dt is None else utils.unix_time_millis(dt)

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    _patch_attributes(models, camelcase_to_underscores)
    _patch_receive(models)
    _patch_delete(models)
    _applied = True


_SQS_CALLS = (
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)
_serialized = False


def serialize_sqs() -> None:
    """Idempotent: one SQS call at a time in this process (in-process moto, for tests).

    moto's SQS models are not thread-safe, and the compactor receives and deletes from several
    threads: a receive iterating a queue's pending set while another call changes it raises
    "Set changed size during iteration". Behaviour is otherwise moto's own, unlike ``apply``.
    """
    global _serialized  # noqa: PLW0603 - a process-wide, once-only switch
    if _serialized:
        return
    from moto.sqs import models

    backend_cls: Any = models.SQSBackend
    lock = threading.RLock()

    def serialized(call: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return call(self, *args, **kwargs)

        return wrapper

    for name in _SQS_CALLS:
        setattr(backend_cls, name, serialized(getattr(backend_cls, name)))
    _serialized = True


def _patch_attributes(models: Any, camelcase_to_underscores: Any) -> None:
    queue_cls: Any = models.Queue
    cheap = [a for a in queue_cls.BASE_ATTRIBUTES if a not in _COUNTS]

    fields = {
        a: camelcase_to_underscores(a)
        for a in [*cheap, *queue_cls.FIFO_ATTRIBUTES, *queue_cls.KMS_ATTRIBUTES]
    }  # converted once: moto converts every name on every read, a third of a receive's time

    def attributes_without_counts(self: Any) -> dict[str, Any]:
        # moto's Queue.attributes, less the three counts (it is read from many threads at
        # once, so this builds its own list rather than swapping the class's).
        result: dict[str, Any] = {a: getattr(self, fields[a]) for a in cheap}
        if self.fifo_queue:
            for a in self.FIFO_ATTRIBUTES:
                result[a] = getattr(self, fields[a])
        if self.kms_master_key_id:
            for a in self.KMS_ATTRIBUTES:
                result[a] = getattr(self, fields[a])
        if self.policy:
            result["Policy"] = self.policy
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy)
        return {k: str(v).lower() if isinstance(v, bool) else v for k, v in result.items()}

    queue_cls.attributes = property(attributes_without_counts)

    backend_cls: Any = models.SQSBackend
    original_get = backend_cls.get_queue_attributes

    def get_queue_attributes(
        self: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        attributes = dict(original_get(self, queue_name, attribute_names))
        wanted = [n for n in _COUNTS if "All" in attribute_names or n in attribute_names]
        if wanted:
            attributes.update(
                {k: v for k, v in _counts(self.get_queue(queue_name)).items() if k in wanted}
            )
        return attributes

    backend_cls.get_queue_attributes = get_queue_attributes


def _patch_receive(models: Any) -> None:
    backend_cls: Any = models.SQSBackend
    queue_cls: Any = models.Queue

    def generate_receipt_handle() -> str:
        # moto's: the same 185 random lowercase letters, drawn in one call, not 185.
        return "".join(random.choices(string.ascii_lowercase, k=185))

    models.generate_receipt_handle = generate_receipt_handle
    original_receive = backend_cls.receive_message

    receive_lock = threading.Lock()

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # moto's receive is not thread-safe: concurrent receivers (the compactor runs several)
        # could take the same message twice or trip over a set changing size. Short polls are
        # serialised; a long poll keeps moto's own loop so it does not hold others up.
        wait = kwargs.get("wait_seconds_timeout", args[1] if len(args) > 1 else 0)
        with receive_lock if not wait else contextlib.nullcontext():
            queue = self.get_queue(queue_name)
            now = time.time() * 1000
            for message in [m for m in queue.pending_messages if now > m.visible_at]:
                queue.pending_messages.discard(message)
            return original_receive(self, queue_name, *args, **kwargs)

    backend_cls.receive_message = receive_message

    def visible_messages(self: Any) -> list[Any]:
        # moto's Queue.messages (visible and not delayed), reading the clock once.
        now = time.time() * 1000
        return [m for m in self._messages if now > m.visible_at and now >= m.delayed_until]

    queue_cls.messages = property(visible_messages)


def _patch_delete(models: Any) -> None:
    backend_cls: Any = models.SQSBackend
    queue_cls: Any = models.Queue
    message_cls: Any = models.Message
    original_mark_received = message_cls.mark_received
    by_handle: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def mark_received(self: Any, *args: Any, **kwargs: Any) -> None:
        original_mark_received(self, *args, **kwargs)
        by_handle[self.receipt_handle] = self

    message_cls.mark_received = mark_received

    def delete_handles(queue: Any, handles: list[str]) -> set[str]:
        """Delete the messages these handles name; return the handles that were valid."""
        with queue._messages_lock:
            present = {id(m) for m in queue._messages}
            valid: set[str] = set()
            doomed: dict[int, Any] = {}
            for handle in handles:
                message = by_handle.get(handle)
                if handle in queue.deleted_messages:
                    valid.add(handle)
                elif message is not None and id(message) in present:
                    valid.add(handle)
                    doomed[id(message)] = message
            for message in doomed.values():
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
            if doomed:
                queue._messages = [m for m in queue._messages if id(m) not in doomed]
        return valid

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle not in delete_handles(self, [receipt_handle]):
            raise models.ReceiptHandleIsInvalid()

    queue_cls.delete_message = delete_message

    def delete_message_batch(
        self: Any, queue_name: str, receipts: list[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        valid = delete_handles(self.get_queue(queue_name), [r["ReceiptHandle"] for r in receipts])
        success = [r["Id"] for r in receipts if r["ReceiptHandle"] in valid]
        errors = [
            {
                "Id": r["Id"],
                "SenderFault": True,
                "Code": "ReceiptHandleIsInvalid",
                "Message": f'The input receipt handle "{r["ReceiptHandle"]}" is not a valid '
                "receipt handle.",
            }
            for r in receipts
            if r["ReceiptHandle"] not in valid
        ]
        return success, errors

    backend_cls.delete_message_batch = delete_message_batch


def _counts(queue: Any) -> dict[str, int]:
    """The three counts as moto defines them (see Message.visible/delayed), in one pass."""
    now = time.time() * 1000
    visible = delayed = not_visible = 0
    for m in queue._messages:
        is_delayed = now < m.delayed_until
        is_visible = now > m.visible_at
        delayed += is_delayed
        not_visible += not is_visible
        visible += is_visible and not is_delayed
    return {
        "ApproximateNumberOfMessages": visible,
        "ApproximateNumberOfMessagesDelayed": delayed,
        "ApproximateNumberOfMessagesNotVisible": not_visible,
    }
