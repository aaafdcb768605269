"""Traces, spans, assessments and experiments: the store behind the tracking API.

The write path is the hot path: one ``BEGIN IMMEDIATE`` transaction per call, one
``executemany`` per table, and, when scorers are active, the online evaluations the
trace deserves written in that same transaction (DESIGN.md section 7), so a crash can
lose neither the trace nor its pending scoring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from localscorers import _clock, sampling
from localscorers.exceptions import ConfigurationError, ConflictError, TraceNotFoundError
from localscorers.filters import parser
from localscorers.models import (
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    Experiment,
    Feedback,
    Span,
    Trace,
    TraceData,
    TraceInfo,
    TraceStatus,
)
from localscorers.store import bulk, codec, filter_sql, schema

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, RowMapping

    from localscorers.store.database import Database
    from localscorers.store.registry import ScorerRegistry

__all__ = [
    "ONLINE_SCORING_KEY",
    "TraceRecord",
    "TraceStore",
    "assessment_row",
    "encode_json",
    "in_chunks",
    "insert_encoded",
    "insert_rows",
    "new_id_hex",
    "new_trace_id",
    "plain_base",
    "plain_row",
    "value_forms",
]

_CHUNK = 500  # ids per IN (...) list: SQLite before 3.32 allows 999 parameters


def in_chunks(ids: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    """Split ids for ``IN (...)`` lists that stay within SQLite's parameter limit."""
    return [ids[start : start + size] for start in range(0, len(ids), size)]


# Trace metadata key set to "off" on traces written without online scoring (an import
# with online_scoring=False), so that explain() can say why they were not scored.
ONLINE_SCORING_KEY = "localscorers.online_scoring"


_JSON_COLUMNS = {
    table.name: bulk.json_columns(table)
    for table in (
        schema.traces,
        schema.spans,
        schema.assessments,
        schema.evaluations,
        schema.evaluation_requests,
    )
}


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows with one driver ``executemany``; JSON columns are encoded here.

    Hot paths (trace commits, feedback) use this instead of ``conn.execute(insert, rows)``.
    """
    insert_encoded(conn, table, encode_json(table, rows))


def encode_json(table: sa.Table, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """Return the rows with their JSON columns encoded, ready for :func:`insert_encoded`.

    Callers that hold the write lock while inserting encode first, outside it.
    """
    json_names = _JSON_COLUMNS.get(table.name, frozenset())
    if not json_names or not rows:
        return rows
    return [
        {k: (codec.dumps(v) if k in json_names and v is not None else v) for k, v in row.items()}
        for row in rows
    ]


def insert_encoded(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows already passed through :func:`encode_json`, with one ``executemany``."""
    if rows:
        bulk.compiled_insert(conn, table).executemany(conn, rows)


def new_trace_id() -> str:
    """Return a fresh trace id: ``"tr-"`` followed by 32 hex digits (see ``new_id_hex``)."""
    return f"tr-{new_id_hex()}"


def new_id_hex() -> str:
    """Return 32 hex digits: the time in milliseconds (12), then 80 random bits (20).

    Shaped like MLflow's uuid4 hex, but ordered by time like a UUIDv7: ids that grow
    with time land at the end of the primary-key and trace-id indexes, so a commit
    dirties one leaf page of each instead of a random one. Measured: completing a batch
    of evaluations held the write lock about 30 % less (20k-evaluation queue).
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


@dataclass(frozen=True)
class TraceRecord:
    """A finished trace, normalized, ready to be written."""

    trace_id: str
    experiment_id: str
    status: TraceStatus
    request_time_ms: int
    inputs: Any = None
    outputs: Any = None
    name: str | None = None
    execution_duration_ms: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    spans: Sequence[Span] = ()
    assessments: Sequence[Feedback | Expectation] = ()


def value_forms(value: object) -> tuple[str | None, float | None]:
    """Return the string and numeric forms filters compare an assessment value by."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return ("true" if value else "false"), (1.0 if value else 0.0)
    if isinstance(value, int | float):
        return str(value), float(value)
    if isinstance(value, str):
        return value, None
    return codec.dumps(value), None


def assessment_row(
    assessment: Feedback | Expectation,
    *,
    trace_id: str,
    origin: str,
    now_ms: int,
    evaluation_id: int | None = None,
    scorer_name: str | None = None,
    scorer_version: int | None = None,
) -> dict[str, Any]:
    """Return the ``assessments`` row for a feedback or expectation."""
    value_str, value_num = value_forms(assessment.value)
    source = assessment.source or AssessmentSource()
    error = assessment.error if isinstance(assessment, Feedback) else None
    created = assessment.create_time
    return {
        "assessment_id": assessment.assessment_id or f"a-{new_id_hex()}",
        "trace_id": trace_id,
        "evaluation_id": evaluation_id,
        "kind": "FEEDBACK" if isinstance(assessment, Feedback) else "EXPECTATION",
        "name": assessment.name,
        "value": assessment.value,
        "value_str": value_str,
        "value_num": value_num,
        "rationale": assessment.rationale,
        "error": error.model_dump() if error is not None else None,
        "meta": assessment.metadata,
        "source_type": source.source_type.value,
        "source_id": source.source_id,
        "scorer_name": scorer_name if scorer_name is not None else assessment.scorer_name,
        "scorer_version": scorer_version
        if scorer_version is not None
        else assessment.scorer_version,
        "origin": origin,
        "created_ms": _clock.ms_from_datetime(created) if created is not None else now_ms,
        "valid": assessment.valid,
        "overrides": assessment.overrides,
    }


_JSON_CONSTANTS = {True: "true", False: "false"}


def plain_base(name: str, version: int, *, origin: str, now: int) -> dict[str, Any]:
    """The fields that every plain-value feedback row of one scorer version shares."""
    return {
        "kind": "FEEDBACK",
        "name": name,
        "rationale": None,
        "error": None,
        "meta": None,
        "source_type": "CODE",
        "source_id": name,
        "scorer_name": name,
        "scorer_version": version,
        "origin": origin,
        "created_ms": now,
        "valid": True,
        "overrides": None,
    }


def plain_row(
    value: object, base: dict[str, Any], *, trace_id: str, evaluation_id: int
) -> dict[str, Any]:
    """The row ``assessment_row`` gives the Feedback ``to_feedback`` makes of a plain value.

    Built directly and JSON-encoded already (ready for ``insert_encoded``): a pydantic
    Feedback per evaluation was a fifth of a trivial backfill's time.
    ``tests/test_backfill.py`` checks the two stay identical.
    """
    row = base.copy()
    row["assessment_id"] = f"a-{new_id_hex()}"
    row["trace_id"] = trace_id
    row["evaluation_id"] = evaluation_id
    if isinstance(value, bool):
        row["value"] = _JSON_CONSTANTS[value]
    else:
        row["value"] = str(value) if type(value) is int else codec.dumps(value)
    row["value_str"], row["value_num"] = value_forms(value)
    return row


@dataclass
class _TraceRows:
    """The rows of some traces, JSON-encoded, ready to insert but for their timestamps."""

    traces: Sequence[dict[str, Any]]
    tags: list[dict[str, Any]]
    metadata: list[dict[str, Any]]
    spans: Sequence[dict[str, Any]]

    @classmethod
    def of(cls, records: Sequence[TraceRecord]) -> _TraceRows:
        traces: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        metadata: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        for r in records:
            traces.append(
                {
                    "trace_id": r.trace_id,
                    "experiment_id": r.experiment_id,
                    "name": r.name,
                    "status": r.status.value,
                    "request_time_ms": r.request_time_ms,
                    "execution_duration_ms": r.execution_duration_ms,
                    "inputs": r.inputs,
                    "outputs": r.outputs,
                    "ingested_ms": None,
                }
            )
            tags.extend({"trace_id": r.trace_id, "key": k, "value": v} for k, v in r.tags.items())
            metadata.extend(
                {"trace_id": r.trace_id, "key": k, "value": v} for k, v in r.metadata.items()
            )
            spans.extend(_span_row(r.trace_id, s) for s in r.spans)
        return cls(
            encode_json(schema.traces, traces),
            tags,
            metadata,
            encode_json(schema.spans, spans),
        )

    def insert(self, conn: Connection, records: Sequence[TraceRecord], now: int) -> None:
        """Insert the rows, stamped ``now``, with the records' assessments (if any)."""
        for row in self.traces:
            row["ingested_ms"] = now
        assessments = [
            assessment_row(a, trace_id=r.trace_id, origin=a.origin or "import", now_ms=now)
            for r in records
            for a in r.assessments
        ]
        insert_encoded(conn, schema.traces, self.traces)
        insert_encoded(conn, schema.trace_tags, self.tags)
        insert_encoded(conn, schema.trace_metadata, self.metadata)
        insert_encoded(conn, schema.spans, self.spans)
        insert_rows(conn, schema.assessments, assessments)


class TraceStore:
    """Read and write traces, their spans and assessments, and experiments.

    Args:
        db: the database.
        registry: where the enqueue path finds the active scorers.
        on_enqueued: called (outside the transaction) with the number of online
            evaluations a commit enqueued, so the monitor can wake up.
    """

    def __init__(
        self,
        db: Database,
        registry: ScorerRegistry,
        *,
        on_enqueued: Callable[[int], None] | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self.on_enqueued = on_enqueued

    # -- experiments ---------------------------------------------------------------

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        """Return the experiment with that id, or None."""
        e = schema.experiments
        with self._db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.experiment_id == experiment_id)).first()
        return None if row is None else _experiment(row._mapping)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """Return the experiment with that name, or None."""
        e = schema.experiments
        with self._db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.name == name)).first()
        return None if row is None else _experiment(row._mapping)

    def create_experiment(self, name: str) -> Experiment:
        """Return the experiment named ``name``, creating it when missing.

        Raises:
            ConfigurationError: the name is blank.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(
                f"An experiment name must be a non-blank string, got {name!r}."
            )
        e = schema.experiments
        with self._db.write() as conn:
            row = conn.execute(sa.select(e).where(e.c.name == name)).first()
            if row is not None:
                return _experiment(row._mapping)
            ids = conn.execute(sa.select(e.c.experiment_id)).scalars().all()
            next_id = max((int(i) for i in ids if i.isdigit()), default=0) + 1
            now = _clock.now_ms()
            conn.execute(sa.insert(e).values(experiment_id=str(next_id), name=name, created_ms=now))
            return Experiment(
                experiment_id=str(next_id), name=name, creation_time=_clock.datetime_from_ms(now)
            )

    def list_experiments(self) -> list[Experiment]:
        """Return every experiment, by id."""
        e = schema.experiments
        with self._db.read() as conn:
            rows = conn.execute(sa.select(e).order_by(e.c.created_ms, e.c.experiment_id)).all()
        return [_experiment(row._mapping) for row in rows]

    # -- writing traces ------------------------------------------------------------

    def write_traces(
        self, records: Sequence[TraceRecord], *, skip_existing: bool = False, enqueue: bool = True
    ) -> int:
        """Write finished traces in one transaction with their online evaluations.

        With ``enqueue=False`` no online evaluation is written (the caller marks the
        traces with ``ONLINE_SCORING_KEY`` so that explain() can say so).

        Returns:
            The number of online evaluations enqueued.

        Raises:
            ConflictError: a trace id already exists (and ``skip_existing`` is false).
        """
        if not records:
            return 0
        # Rows are built and JSON-encoded before the write lock: every other writer (a
        # worker writing feedback, other processes logging) waits while we hold it.
        rows = None if skip_existing else _TraceRows.of(records)
        with self._db.write() as conn:
            # Taken under the write lock, so commit order and ingested_ms agree with the
            # lifecycle history explain() replays (a trace that waited for the lock must
            # not look older than a start() that committed before it).
            now = _clock.now_ms()
            if rows is None:
                records = self._without_existing(conn, records)
                rows = _TraceRows.of(records)
            try:
                rows.insert(conn, records, now)
            except sa.exc.IntegrityError as exc:
                raise ConflictError(
                    f"Cannot write traces {', '.join(r.trace_id for r in records[:5])}: "
                    f"{exc.orig}. If a trace with that id already exists, omit trace_id "
                    "to get a fresh one."
                ) from exc
            enqueued = self._enqueue(conn, records, now) if enqueue else 0
        if enqueued and self.on_enqueued is not None:
            self.on_enqueued(enqueued)
        return enqueued

    def _without_existing(
        self, conn: Connection, records: Sequence[TraceRecord]
    ) -> list[TraceRecord]:
        t = schema.traces
        ids = [r.trace_id for r in records]
        existing: set[str] = set()
        for chunk in in_chunks(ids):
            existing.update(
                conn.execute(sa.select(t.c.trace_id).where(t.c.trace_id.in_(chunk))).scalars()
            )
        return [r for r in records if r.trace_id not in existing]

    def _enqueue(self, conn: Connection, records: Sequence[TraceRecord], now: int) -> int:
        # One evaluation_requests row per trace: cheap enough for the hot path. A claim
        # turns it into one evaluations row per scorer (see evaluations.py).
        requests: list[dict[str, Any]] = []
        by_experiment: dict[str, list[TraceRecord]] = {}
        for r in records:
            if r.status is not TraceStatus.IN_PROGRESS:
                by_experiment.setdefault(r.experiment_id, []).append(r)
        for experiment_id, group in by_experiment.items():
            active = self._registry.active_for(conn, experiment_id)
            if not active:
                continue
            filtered = [a for a in active if a.filter_expr is not None]
            for r in group:
                # One SELECT evaluates every active filter against the just-written trace.
                matched = (
                    filter_sql.matches_for_trace(
                        conn, r.trace_id, [a.filter_expr for a in filtered if a.filter_expr]
                    )
                    if filtered
                    else []
                )
                passes = dict(zip((a.name for a in filtered), matched, strict=True))
                chosen = [
                    [a.name, a.version]
                    for a in active
                    if passes.get(a.name, True)
                    and sampling.is_sampled(r.trace_id, a.name, a.sample_rate)
                ]
                if chosen:
                    requests.append(
                        {
                            "id": None,
                            "trace_id": r.trace_id,
                            "experiment_id": experiment_id,
                            "scorers": chosen,
                            "count": len(chosen),
                            "enqueued_ms": now,
                        }
                    )
        insert_rows(conn, schema.evaluation_requests, requests)
        return sum(request["count"] for request in requests)

    # -- feedback ------------------------------------------------------------------

    def log_assessment(
        self, trace_id: str, assessment: Feedback | Expectation
    ) -> Feedback | Expectation:
        """Attach a manual feedback or expectation to a trace and return it as stored.

        Raises:
            TraceNotFoundError: no trace has that id.
        """
        now = _clock.now_ms()
        row = assessment_row(
            assessment, trace_id=trace_id, origin=assessment.origin or "manual", now_ms=now
        )
        with self._db.write() as conn:
            self._require_trace(conn, trace_id)
            conn.execute(sa.insert(schema.assessments).values(**row))
            stored = conn.execute(
                sa.select(schema.assessments).where(
                    schema.assessments.c.assessment_id == row["assessment_id"]
                )
            ).one()
        return _assessment(stored._mapping)

    @staticmethod
    def _require_trace(conn: Connection, trace_id: str) -> None:
        t = schema.traces
        if conn.execute(sa.select(t.c.trace_id).where(t.c.trace_id == trace_id)).first() is None:
            raise TraceNotFoundError(
                f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
                "(get_tracking_uri()) if the trace was logged to another database."
            )

    # -- reading -------------------------------------------------------------------

    def get_trace(self, trace_id: str) -> Trace:
        """Return one trace with its spans and assessments.

        Raises:
            TraceNotFoundError: no trace has that id.
        """
        with self._db.read() as conn:
            found = self.load_traces(conn, [trace_id])
        if not found:
            raise TraceNotFoundError(
                f"No trace has id {trace_id!r}. Check the id, or the tracking URI "
                "(get_tracking_uri()) if the trace was logged to another database."
            )
        return found[0]

    def search_traces(
        self,
        *,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
    ) -> list[Trace]:
        """Return the traces of the experiments that match the filter, in order.

        Raises:
            FilterSyntaxError: the filter does not parse.
            ConfigurationError: ``order_by`` does not parse, or ``max_results`` is not a
                positive integer.
        """
        if max_results is not None and (
            isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1
        ):
            raise ConfigurationError(
                f"max_results must be a positive integer or None (all), got {max_results!r}."
            )
        t = schema.traces
        expr = parser.parse(filter_string) if filter_string and filter_string.strip() else None
        order = filter_sql.compile_order_by(order_by)
        with self._db.read() as conn:
            plan = None if expr is None else filter_sql.plan_search(conn, expr, experiment_ids)
            experiment: sa.ColumnElement[Any] = t.c.experiment_id
            if plan is not None and plan.candidates is not None:
                # An expression is not indexed: SQLite then starts from the candidates'
                # primary keys (0.2 ms for 100) instead of walking the experiment's
                # time index for matches (15-25 ms over 100k traces).
                experiment = sa.cast(t.c.experiment_id, sa.String)
            query = sa.select(t.c.trace_id).where(experiment.in_(list(experiment_ids)))
            if plan is not None:
                query = query.where(plan.condition)
                if plan.candidates is not None:
                    query = query.where(t.c.trace_id.in_(plan.candidates))
            query = query.order_by(*order)
            if max_results is not None:
                query = query.limit(max_results)
            ids = list(conn.execute(query).scalars())
            return self.load_traces(conn, ids)

    def load_traces(self, conn: Connection, trace_ids: Sequence[str]) -> list[Trace]:
        """Load whole traces by id, in the given order, a few queries per chunk of ids."""
        result: list[Trace] = []
        for chunk in in_chunks(trace_ids):
            result.extend(self._load_chunk(conn, chunk))
        return result

    @staticmethod
    def load_payloads(conn: Connection, trace_ids: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        """Return (inputs, outputs) by trace id: all a light evaluation reads of the row."""
        t = schema.traces
        found: dict[str, tuple[Any, Any]] = {}
        for chunk in in_chunks(trace_ids):
            query = sa.select(t.c.trace_id, t.c.inputs, t.c.outputs).where(t.c.trace_id.in_(chunk))
            found.update((row[0], (row[1], row[2])) for row in conn.execute(query))
        return found

    @staticmethod
    def load_expectations(conn: Connection, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return what ``Trace.expectations`` would, by trace id: valid expectations by name."""
        a = schema.assessments
        grouped: dict[str, dict[str, Any]] = {}
        for chunk in in_chunks(trace_ids):
            query = (
                sa.select(a.c.trace_id, a.c.name, a.c.value)
                .where(
                    a.c.trace_id.in_(chunk),
                    a.c.kind == "EXPECTATION",
                    a.c.valid.is_(True),
                )
                .order_by(a.c.created_ms, a.c.assessment_id)
            )
            for trace_id, name, value in conn.execute(query):
                grouped.setdefault(trace_id, {})[name] = value
        return grouped

    @staticmethod
    def _load_chunk(conn: Connection, ids: Sequence[str]) -> list[Trace]:
        t, a = schema.traces, schema.assessments
        rows = {
            r.trace_id: r._mapping for r in conn.execute(sa.select(t).where(t.c.trace_id.in_(ids)))
        }
        tags = _grouped(conn, schema.trace_tags, ids)
        metadata = _grouped(conn, schema.trace_metadata, ids)
        spans: dict[str, list[Span]] = {}
        s = schema.spans
        for row in conn.execute(
            sa.select(s).where(s.c.trace_id.in_(ids)).order_by(s.c.start_time_ns, s.c.span_id)
        ):
            spans.setdefault(row.trace_id, []).append(_span(row._mapping))
        assessments: dict[str, list[Feedback | Expectation]] = {}
        for row in conn.execute(
            sa.select(a).where(a.c.trace_id.in_(ids)).order_by(a.c.created_ms, a.c.assessment_id)
        ):
            assessments.setdefault(row.trace_id, []).append(_assessment(row._mapping))
        traces = []
        for trace_id in ids:
            found = rows.get(trace_id)
            if found is None:
                continue
            info = TraceInfo(
                trace_id=trace_id,
                experiment_id=found["experiment_id"],
                request_time=_clock.datetime_from_ms(found["request_time_ms"]),
                execution_duration_ms=found["execution_duration_ms"],
                status=TraceStatus(found["status"]),
                name=found["name"],
                tags=dict(tags.get(trace_id, ())),
                metadata=dict(metadata.get(trace_id, ())),
                assessments=assessments.get(trace_id, []),
            )
            data = TraceData(
                spans=spans.get(trace_id, []), request=found["inputs"], response=found["outputs"]
            )
            traces.append(Trace(info=info, data=data))
        return traces


def _grouped(
    conn: Connection, table: sa.Table, ids: Iterable[str]
) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    query = sa.select(table.c.trace_id, table.c.key, table.c.value).where(
        table.c.trace_id.in_(list(ids))
    )
    for trace_id, key, value in conn.execute(query.order_by(table.c.key)):
        grouped.setdefault(trace_id, []).append((key, value))
    return grouped


def _span_row(trace_id: str, span: Span) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "span_type": span.span_type,
        "status": span.status.value,
        "status_message": span.status_message,
        "start_time_ns": span.start_time_ns,
        "end_time_ns": span.end_time_ns,
        "inputs": span.inputs,
        "outputs": span.outputs,
        "attributes": span.attributes,
        "events": span.events,
    }


def _span(row: RowMapping) -> Span:
    return Span(
        span_id=row["span_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        span_type=row["span_type"],
        status=TraceStatus(row["status"]),
        status_message=row["status_message"],
        start_time_ns=row["start_time_ns"],
        end_time_ns=row["end_time_ns"],
        inputs=row["inputs"],
        outputs=row["outputs"],
        attributes=row["attributes"] or {},
        events=row["events"] or [],
    )


def _assessment(row: RowMapping) -> Feedback | Expectation:
    common: dict[str, Any] = {
        "name": row["name"],
        "value": row["value"],
        "rationale": row["rationale"],
        "metadata": row["meta"],
        "source": AssessmentSource(
            source_type=AssessmentSourceType(row["source_type"]), source_id=row["source_id"]
        ),
        "assessment_id": row["assessment_id"],
        "trace_id": row["trace_id"],
        "create_time": _clock.datetime_from_ms(row["created_ms"]),
        "scorer_name": row["scorer_name"],
        "scorer_version": row["scorer_version"],
        "origin": row["origin"],
        "valid": bool(row["valid"]),
        "overrides": row["overrides"],
    }
    if row["kind"] == "EXPECTATION":
        return Expectation(**common)
    error = row["error"]
    return Feedback(**common, error=AssessmentError(**error) if error else None)


def _experiment(row: RowMapping) -> Experiment:
    return Experiment(
        experiment_id=row["experiment_id"],
        name=row["name"],
        creation_time=_clock.datetime_from_ms(row["created_ms"]),
    )
