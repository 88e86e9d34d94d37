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

``tests/integration/test_moto_patches.py`` shows the unpatched cost and that the patched
attributes and visibility rules answer as before.
"""

from __future__ import annotations

import json
import time
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

    queue_cls: Any = models.Queue
    cheap = [a for a in queue_cls.BASE_ATTRIBUTES if a not in _COUNTS]

    def attributes_without_counts(self: Any) -> dict[str, Any]:
        # moto's Queue.attributes, less the three counts (it is read from many threads at
        # once, so this builds its own list rather than swapping the class's).
        result: dict[str, Any] = {a: getattr(self, camelcase_to_underscores(a)) for a in cheap}
        if self.fifo_queue:
            for a in self.FIFO_ATTRIBUTES:
                result[a] = getattr(self, camelcase_to_underscores(a))
        if self.kms_master_key_id:
            for a in self.KMS_ATTRIBUTES:
                result[a] = getattr(self, camelcase_to_underscores(a))
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

    original_receive = backend_cls.receive_message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        for message in [m for m in queue.pending_messages if m.visible]:
            queue.pending_messages.discard(message)
        return original_receive(self, queue_name, *args, **kwargs)

    backend_cls.receive_message = receive_message
    _applied = True


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
