"""Reading traces written by other tools: MLflow trace JSON, and OpenTelemetry spans (OTLP).

The names are loaded on first use (PEP 562): OTLP decoding needs the ``server`` or
``otel`` extra, MLflow JSON import does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from localscorers.store import exports_on_first_use

if TYPE_CHECKING:
    from localscorers.ingest.otlp import Assembler as Assembler
    from localscorers.ingest.otlp import Decoded as Decoded
    from localscorers.ingest.otlp import decode_json as decode_json
    from localscorers.ingest.otlp import decode_protobuf as decode_protobuf
    from localscorers.ingest.unwritten import UNWRITTEN_FILE as UNWRITTEN_FILE
    from localscorers.ingest.unwritten import save_unwritten as save_unwritten


if not TYPE_CHECKING:
    # Type checkers skip this: they go by the ``X as X`` imports above.
    __all__, __getattr__ = exports_on_first_use(
        __name__,
        {
            "otlp": ("Assembler", "Decoded", "decode_json", "decode_protobuf"),
            "unwritten": ("UNWRITTEN_FILE", "save_unwritten"),
        },
    )
