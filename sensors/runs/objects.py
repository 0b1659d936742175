"""Run inputs in an object store: a local folder by default, any fsspec URL otherwise.

Each run's inputs (parameters and triggering events) are written once, as JSON, to
``<root>/<project>/<domain>/<run name>/inputs-<nonce>.json``; the run keeps the URI.
The nonce means two workers racing to create one run never overwrite each other's
file: the run that wins points at its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import fsspec

from triggers.error_text import exception_text
from triggers.errors import ConfigurationError, StoreError

__all__ = ["ObjectStore"]

_EXTRAS = {"s3": "aws", "s3a": "aws"}


class ObjectStore:
    """Reads and writes JSON documents under one root URL (``file://...``, ``s3://...``)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        protocol = self.root.split("://", 1)[0] if "://" in self.root else "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            extra = _EXTRAS.get(protocol)
            hint = f"pip install 'tripwire[{extra}]'" if extra else "use file:// or s3://"
            raise ConfigurationError(
                f"the object store {self.root!r} needs support for {protocol}:// ({exc}); {hint}"
            ) from None

    def inputs_key(self, project: str, domain: str, name: str) -> str:
        return f"{project}/{domain}/{name}/inputs-{uuid.uuid4().hex[:12]}.json"

    async def put_many(self, documents: list[tuple[str, Any]]) -> list[str]:
        """Write each ``(key, data)``, in one hop to a thread; return their URIs."""
        written = [
            (f"{self.root}/{key}", json.dumps(data, sort_keys=True, default=str).encode())
            for key, data in documents
        ]
        if written:
            await asyncio.to_thread(self._write_all, written)
        return [uri for uri, _ in written]

    def _write_all(self, written: list[tuple[str, bytes]]) -> None:
        for uri, body in written:
            self._write(uri, body)

    async def get_json(self, uri: str) -> Any:
        """Read the JSON document at ``uri``."""
        return json.loads(await asyncio.to_thread(self._read, uri))

    def _write(self, uri: str, body: bytes) -> None:
        try:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "wb") as out:
                out.write(body)
        except Exception as exc:
            raise StoreError(
                f"cannot write run inputs to {uri}: {exception_text(exc)}. Check "
                "TRIPWIRE_OBJECTS_URL and the credentials for it."
            ) from exc

    def _read(self, uri: str) -> bytes:
        try:
            fs, path = fsspec.core.url_to_fs(uri)
            with fs.open(path, "rb") as source:
                data: bytes = source.read()
                return data
        except Exception as exc:
            raise StoreError(f"cannot read run inputs from {uri}: {exception_text(exc)}") from exc
