"""OpenAI embeddings: ``POST /v1/embeddings``.

Each input gets a unit-length vector derived from its text (the same text always gets the same
vector), ``dimensions`` long (default 1536, 3072 for ``text-embedding-3-large``), as JSON floats or
base64 little-endian float32 per ``encoding_format``. ``usage.prompt_tokens`` = the words of all
inputs (integers in token arrays count one each), at least 1.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from llmtap.testing.mock_errors import openai_error
from llmtap.testing.mock_http import Reply, encode
from llmtap.testing.mock_openai import missing
from llmtap.testing.mock_plan import words_of


def embedding_inputs(given: Any) -> list[Any] | None:
    """The separate inputs of ``input``, or None when it is not a valid shape."""
    if isinstance(given, str):
        return [given]
    if isinstance(given, list) and given:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in given):
            return [given]
        if all(isinstance(x, str | list) for x in given):
            return list(given)
    return None


def vector(value: Any, dimensions: int) -> list[float]:
    digest = hashlib.shake_128(encode(value)).digest(dimensions * 2)
    raw = struct.unpack(f"<{dimensions}h", digest)
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embeddings(body: dict[str, Any]) -> Reply:
    model = body.get("model")
    if not isinstance(model, str):
        return missing("model")
    if "input" not in body:
        return missing("input")
    inputs = embedding_inputs(body["input"])
    if inputs is None:
        return openai_error(400, "'input' : input must be a string or an array", param="input")
    dimensions = body.get("dimensions")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        dimensions = 3072 if model == "text-embedding-3-large" else 1536
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, value in enumerate(inputs):
        floats = vector(value, dimensions)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *floats)).decode()
            if as_base64
            else floats
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = max(1, len(words_of(inputs)))
    result = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Reply(status=200, body=encode(result))
