"""Typed serving errors: each knows the HTTP status and error type it answers with, and the field it names.

The error types are text-embeddings-inference's (`validation`, `tokenizer`, `empty`, `overloaded`,
`unhealthy`, `backend`) plus `timeout` for a request whose deadline passed, so that a TEI client
reads our errors as it reads TEI's. A status tells the client what to do: fix the request (400, 413,
422), slow down (429), go elsewhere or retry later (503), give it more time (504).
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """An error answered to one request (never to its batch-mates).

    Attributes:
      message: what went wrong, naming the value and the limit.
      field: the request field at fault (`inputs[3]`, `model`), where there is one.
      index: the position of the input at fault in the engine request, where there is one (the HTTP
        layer turns it into a field name: `texts[2]`, `inputs.sentences[0]`).
    """

    status = 500
    error_type = "backend"

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index

    def with_field(self, field: str) -> ServingError:
        """A copy naming `field` where the message names its subject (the current field, else `input {index}`)."""
        subject = self.field if self.field is not None else f"input {self.index}"
        message = self.message
        if (self.field is not None or self.index is not None) and message.startswith(subject):
            message = field + message[len(subject):]
        err = type(self).__new__(type(self))  # subclasses take other arguments: copy the attributes instead
        err.__dict__.update(self.__dict__)
        Exception.__init__(err, message)
        err.message, err.field = message, field
        return err

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: `{"error", "error_type"}` as TEI writes it, and `"field"` where one is at fault."""
        body: dict[str, Any] = {"error": self.message, "error_type": self.error_type}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(ServingError):
    """A field of the wrong type, a value out of range, too many inputs, a route the model cannot answer."""

    status = 422
    error_type = "validation"


class MalformedRequest(ServingError):
    """A body that is not JSON (or not UTF-8)."""

    status = 400
    error_type = "validation"


class EmptyRequest(ServingError):
    """No inputs."""

    status = 400
    error_type = "empty"


class PayloadTooLarge(ServingError):
    """A body over the payload limit, refused by its Content-Length or while it streams in."""

    status = 413
    error_type = "validation"


class InputTooLong(InvalidRequest):
    """An input longer than the token limit, with truncation off."""

    def __init__(self, index: int, length: int, limit: int, *, how: str = "truncation=True"):
        self.length, self.limit = length, limit
        super().__init__(f"input {index} is {length} tokens long, more than max_input_length={limit}; "
                         f"shorten it or ask for truncation ({how})", index=index)


class TokenizationFailed(ServingError):
    """Text the tokenizer cannot take (not valid Unicode: a lone surrogate, say)."""

    status = 422
    error_type = "tokenizer"


class Overloaded(ServingError):
    """The engine holds its maximum of concurrent requests: retry later, at once refused."""

    status = 429
    error_type = "overloaded"


class ShuttingDown(ServingError):
    """The server is draining: it answers the requests it holds and takes no new ones."""

    status = 503
    error_type = "unhealthy"


class DeadlineExceeded(ServingError):
    """The request's deadline passed before it ran (it was dropped unrun) or before its results were ready."""

    status = 504
    error_type = "timeout"


class BackendFailure(ServingError):
    """The model failed on a batch (compilation, device); the process goes on serving."""

    status = 500
    error_type = "backend"
