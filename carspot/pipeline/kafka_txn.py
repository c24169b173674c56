"""Bounded waits for kafka-python's transactional producer, and a way to drop a producer that is stuck.

kafka-python 3.0.12 bounds ``init_transactions`` by ``max_block_ms`` but waits for ``send_offsets_to_transaction``,
``commit_transaction`` and ``abort_transaction`` without a timeout (the Java client was fixed in KAFKA-7763). A
broker restarted during a transaction can leave its state machine waiting for a request it dropped (a partition
"pending" in the transaction that is never added), so those calls never return. Here each one is the library's
own two steps (enqueue the request on the transaction manager, wake the sender) followed by a *timed* wait on its
result; a timeout raises :class:`KafkaTimeoutError` and the caller discards the producer (:func:`close_now`) and
starts a new one with the same transactional id, which fences the stuck one and ends its transaction.

The private attributes used (``_transaction_manager``, ``_sender``) are checked once per producer
(:func:`check_supported`), so an upgrade that renames them fails at start-up, not during an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger("carspot.pipeline.kafka")


def check_supported(producer: KafkaProducer) -> None:
    """Raise at once if this kafka-python lacks what the bounded calls below use."""
    manager = getattr(producer, "_transaction_manager", None)
    sender = getattr(producer, "_sender", None)
    needed = ("send_offsets_to_transaction", "begin_commit", "begin_abort")
    if manager is None or sender is None or not all(hasattr(manager, name) for name in needed):
        raise RuntimeError("this kafka-python has no bounded transactional calls: pin kafka-python==3.0.12")


def _wait(producer: KafkaProducer, result: object, *, what: str, timeout_s: float) -> None:
    producer._sender.wakeup()
    if not result.wait(timeout_ms=int(timeout_s * 1000)):  # type: ignore[attr-defined]  # raises its error if failed
        raise KafkaTimeoutError(f"{what} not done within {timeout_s:.0f} s")


def send_offsets(
    producer: KafkaProducer,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    group_metadata: object,
    *,
    timeout_s: float,
) -> None:
    """``send_offsets_to_transaction``, waiting at most ``timeout_s``."""
    result = producer._transaction_manager.send_offsets_to_transaction(dict(offsets), group_metadata)
    _wait(producer, result, what="adding the offsets to the transaction", timeout_s=timeout_s)


def commit(producer: KafkaProducer, *, timeout_s: float) -> None:
    """``commit_transaction`` (flushes the transaction's records first), waiting at most ``timeout_s``.

    On a timeout the outcome is unknown: the transaction may still commit (see ``KafkaBatchOutcome``)."""
    _wait(
        producer, producer._transaction_manager.begin_commit(), what="committing the transaction", timeout_s=timeout_s
    )


def abort(producer: KafkaProducer, *, timeout_s: float) -> None:
    """``abort_transaction``, waiting at most ``timeout_s``."""
    result = producer._transaction_manager.begin_abort()
    _wait(producer, result, what="aborting the transaction", timeout_s=timeout_s)


class ClosingProducer(KafkaProducer):
    """A ``KafkaProducer`` whose ``close(timeout)`` returns within about ``timeout`` even when records are stuck
    (the library's raises from its flush and leaves its I/O thread running): see :func:`close_now`."""

    def close(self, timeout: float | None = None, null_logger: bool = False) -> None:
        if timeout is None or null_logger:
            super().close(timeout=timeout, null_logger=null_logger)
        else:
            close_now(self, timeout_s=timeout)


def close_now(producer: KafkaProducer, *, timeout_s: float) -> None:
    """Close within about ``timeout_s`` whatever state the producer is in.

    ``KafkaProducer.close(timeout)`` first flushes and raises when that times out, before it ever stops its I/O
    thread: a stuck producer would keep its thread and sockets for good. This stops the thread in that case."""
    try:
        KafkaProducer.close(producer, timeout=timeout_s)
        return
    except KafkaError as exc:
        log.info("the producer did not flush within %.0f s (%r): closing it without waiting", timeout_s, exc)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()  # fails what is still pending, then ends the thread
        sender.join(timeout_s)
    try:
        KafkaProducer.close(producer, timeout=0)
    except KafkaError as exc:  # nothing left to wait for; the thread is gone or going
        log.debug("closing the producer: %r", exc)


__all__ = ["ClosingProducer", "abort", "check_supported", "close_now", "commit", "send_offsets"]
