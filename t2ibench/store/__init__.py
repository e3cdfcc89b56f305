"""The run store (``run.sqlite``) and its readers: the one thing every layer above reads or writes."""

from t2ibench.store.records import call_records, cell_records, current_suite, scope
from t2ibench.store.runstore import (ERROR_KINDS, SCHEMA_VERSION, CallRow, CellRow, LevelRow, RequestRow, RunStore, encode_png, file_sha256,
                                     image_relpath, profile_relpath, write_atomic,
                                     write_png_atomic)

__all__ = [
    "RunStore", "CellRow", "CallRow", "SCHEMA_VERSION", "image_relpath", "encode_png", "write_png_atomic",
    "cell_records", "call_records", "current_suite", "scope", "file_sha256", "profile_relpath",
    "write_atomic", "LevelRow", "RequestRow", "ERROR_KINDS",
]
