"""``type: aws``: lifecycle events to an SNS topic (an ``arn:aws:sns:`` topicName) or an SQS
queue (a queue URL or ``arn:aws:sqs:`` ARN), as CloudEvents JSON, through boto3.

boto3 is blocking: calls run in a thread. ``AWS_ENDPOINT_URL`` and the other
``AWS_*`` variables configure it as usual (a moto server in the tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sensors.egress.base import Outgoing
from triggers.cloud_events import CloudEventsConfig
from triggers.errors import ConfigurationError

__all__ = ["SnsSink", "SqsSink", "aws_sink"]

_BATCH = 10  # the most SNS PublishBatch and SQS SendMessageBatch take


def aws_sink(config: CloudEventsConfig) -> SnsSink | SqsSink:
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            "cloud_events type aws needs boto3: pip install 'tripwire[aws]'"
        ) from None
    topic = config.topic
    if topic.startswith("arn:aws:sns:"):
        return SnsSink(boto3.client("sns", region_name=config.aws_region), topic)
    if topic.startswith("arn:aws:sqs:") or topic.startswith("https://"):
        return SqsSink(boto3.client("sqs", region_name=config.aws_region), topic)
    raise ConfigurationError(
        f"cloud_events.eventsPublisher.topicName={topic!r} is neither an SNS topic ARN "
        "(arn:aws:sns:...) nor an SQS queue URL or ARN"
    )


class SnsSink:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client, self._topic = client, topic_arn

    async def send(self, events: Sequence[Outgoing]) -> None:
        for entries in _batches(events, "Message"):
            answer = await asyncio.to_thread(
                self._client.publish_batch, TopicArn=self._topic, PublishBatchRequestEntries=entries
            )
            _check(answer, "SNS", self._topic)

    async def close(self) -> None:
        self._client.close()


class SqsSink:
    def __init__(self, client: Any, queue: str) -> None:
        self._client, self._queue, self._url = client, queue, ""

    async def send(self, events: Sequence[Outgoing]) -> None:
        if not self._url:
            self._url = await asyncio.to_thread(self._queue_url)
        for entries in _batches(events, "MessageBody"):
            answer = await asyncio.to_thread(
                self._client.send_message_batch, QueueUrl=self._url, Entries=entries
            )
            _check(answer, "SQS", self._queue)

    def _queue_url(self) -> str:
        if self._queue.startswith("https://"):
            return self._queue
        name, account = self._queue.split(":")[-1], self._queue.split(":")[-2]
        url: str = self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
            "QueueUrl"
        ]
        return url

    async def close(self) -> None:
        self._client.close()


def _batches(events: Sequence[Outgoing], field: str) -> list[list[dict[str, str]]]:
    """The events as batch entries (``Id`` and the CloudEvents JSON under ``field``)."""
    return [
        [
            {"Id": str(n), field: e.structured.decode()}
            for n, e in enumerate(events[start : start + _BATCH])
        ]
        for start in range(0, len(events), _BATCH)
    ]


def _check(answer: dict[str, Any], service: str, where: str) -> None:
    failed = answer.get("Failed") or []
    if failed:
        first = failed[0]
        raise RuntimeError(
            f"{service} {where} refused {len(failed)} event(s): "
            f"{first.get('Code')}: {first.get('Message')}"
        )
