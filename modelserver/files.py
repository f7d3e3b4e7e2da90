"""The file type a served function takes for an uploaded file: its bytes, name and type."""

from dataclasses import dataclass


@dataclass(frozen=True)
class File:
    """One uploaded file: a part of a multipart/form-data form, or a raw request body.

    A parameter `doc: File` takes the form's part named "doc"; `docs: list[File]` every part of
    that name; a function whose only upload is a File also takes the file as the whole body.
    """

    data: bytes
    filename: str  # as the client named it; "" for a raw body
    content_type: str  # as the client declared it; "application/octet-stream" when it did not
