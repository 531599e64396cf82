"""Checks of JSON request fields: each returns the value or raises a `ServingError` naming the field, its
JSON type and what was expected."""

from __future__ import annotations

from typing import Any

from samp_jax.serving.errors import EmptyRequest, InvalidRequest


def object_(body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body is a JSON {kind(body)}; expected an object", field="body")
    return body


def kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def boolean(body: dict, key: str, default: bool | None) -> bool | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{key} is a JSON {kind(value)} ({value!r:.40}); expected true or false", field=key)
    return value


def string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} is a JSON {kind(value)} ({value!r:.40}); expected a string", field=field)
    return value


def strings(value: Any, field: str, limit: int, *, extra: int = 0) -> list[str]:
    """A string or a list of strings; at most `limit` of them (with `extra` inputs the route adds)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} is a JSON {kind(value)}; expected a string or an array of strings", field=field)
    if not value:
        raise EmptyRequest(f"{field} is empty", field=field)
    if len(value) + extra > limit:
        raise InvalidRequest(f"{field} holds {len(value) + extra} inputs, more than max_client_batch_size={limit}",
                             field=field)
    for i, v in enumerate(value):
        if not isinstance(v, str):
            what = "token ids" if isinstance(v, int) else f"a JSON {kind(v)}"
            raise InvalidRequest(f"{field}[{i}] is {what}; expected a string (this server takes text, not ids)",
                                 field=f"{field}[{i}]")
    return value


def model(body: dict) -> str | None:
    value = body.get("model")
    return None if value is None else string(value, "model")


def truncation(body: dict, field_prefix: str = "") -> bool | None:
    """`truncate` (None: the server's default) and the options TEI takes beside it that this server lacks."""
    truncate = boolean(body, "truncate", None)
    direction = body.get("truncation_direction")
    if direction is not None and direction not in ("right", "Right"):
        raise InvalidRequest(f"{field_prefix}truncation_direction={direction!r}: only 'right' is supported",
                             field=f"{field_prefix}truncation_direction")
    if body.get("prompt_name") is not None:
        raise InvalidRequest(f"{field_prefix}prompt_name: prompts are not supported by this server",
                             field=f"{field_prefix}prompt_name")
    return truncate


def no_dimensions(body: dict) -> None:
    if body.get("dimensions") is not None:
        raise InvalidRequest(f"dimensions={body['dimensions']!r}: this server returns the model's full dimension",
                             field="dimensions")
