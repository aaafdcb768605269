"""Reading a judge model's answer, and the JSON schema the answer is asked to follow.

Every judge asks for one JSON object, ``{"rationale": ..., "result": ...}``, and sends
its schema (:func:`answer_schema`) as structured output where the server supports it.
Answers are still parsed leniently, because servers without structured output (and
small models) wrap JSON in code fences, add a sentence before or after it, use
Python-style single quotes, think aloud in ``<think>`` blocks first, or stop mid-object
at the token cap. As a last resort a verdict written in prose is accepted: a lone
"Yes." or "FAIL", a leading "No, ...", "Verdict: pass", "the answer is yes", or prose
whose verdict words all agree; anything ambiguous stays unparseable.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localscorers.exceptions import UnparseableAnswerError

__all__ = [
    "VALUE_TYPES",
    "YES_NO_SCHEMA",
    "YES_NO_VERDICTS",
    "ParsedAnswer",
    "UnparseableAnswerError",
    "answer_schema",
    "parse_answer",
    "result_schema",
    "result_spec",
    "to_value",
    "to_yes_no",
    "verdict_words",
]

_YES = frozenset({"yes", "y", "true", "pass", "passed", "1"})
_NO = frozenset({"no", "n", "false", "fail", "failed", "0"})
_RESULT_KEYS = ("result", "value", "score", "verdict", "answer", "rating")
_RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "justification")
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
# A JSON object cut off by the token cap may still hold its verdict.
_CUT_RESULT = re.compile(r'["\']result["\']\s*:\s*("(?:[^"\\]|\\.)*"|[-\w.]+)', re.IGNORECASE)
_PROSE_LIMIT = 2000

# Words that carry a yes/no verdict in prose, and the verdict they carry.
YES_NO_VERDICTS: Mapping[str, str] = {
    "yes": "yes",
    "pass": "yes",
    "passed": "yes",
    "true": "yes",
    "no": "no",
    "fail": "no",
    "failed": "no",
    "false": "no",
}
YES_NO_SCHEMA: dict[str, Any] = {"type": "string", "enum": ["yes", "no"]}


def answer_schema(result: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema of a judge's answer: a rationale first, then the result."""
    return {
        "type": "object",
        "properties": {"rationale": {"type": "string"}, "result": dict(result)},
        "required": ["rationale", "result"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class ParsedAnswer:
    """The verdict and reasoning read from a judge model's answer."""

    result: Any
    rationale: str | None


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Return every decodable JSON (or Python-literal) object embedded in text, in order."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = text.find("{")
    while index != -1:
        obj: object = None
        end = index + 1
        try:
            obj, end = decoder.raw_decode(text, index)
        except ValueError:
            obj, end = _literal_object(text, index)
        if isinstance(obj, dict):
            found.append(obj)
            index = text.find("{", end)
        else:
            index = text.find("{", index + 1)
    return found


def _literal_object(text: str, start: int) -> tuple[object, int]:
    # Python-style dicts ({'result': 'yes'}): try each closing brace as the end.
    end = text.find("}", start)
    while end != -1:
        try:
            return ast.literal_eval(text[start : end + 1]), end + 1
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            end = text.find("}", end + 1)
    return None, start + 1


def _pick(obj: dict[str, Any], keys: Sequence[str]) -> tuple[bool, Any]:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return True, lowered[key]
    return False, None


def parse_answer(text: str, *, verdicts: Mapping[str, Any] | None = None) -> ParsedAnswer:
    """Read ``{"result": ..., "rationale": ...}`` from a judge model's answer.

    Accepts code fences, text before or after the object, ``<think>`` blocks and
    Python-style single quotes. When several objects hold a result the last one wins:
    models that restate the format usually give their verdict last. An object cut off
    by the token cap gives its result if it got that far.

    Args:
        text: the model's answer.
        verdicts: prose words that carry a verdict, mapped to the result they mean
            (e.g. ``YES_NO_VERDICTS``). With them, an answer with no JSON at all may be
            read as prose (see the module docstring); without, it is unparseable.

    Raises:
        UnparseableAnswerError: no result was found.
    """
    cleaned = _THINK.sub("", text).strip()
    candidates = [cleaned, *(m.group(1) for m in _FENCE.finditer(cleaned))]
    objects: list[dict[str, Any]] = []
    for candidate in candidates:
        objects.extend(_json_objects(candidate))
    for obj in reversed(objects):
        has_result, result = _pick(obj, _RESULT_KEYS)
        if has_result:
            _, rationale = _pick(obj, _RATIONALE_KEYS)
            return ParsedAnswer(
                result=result, rationale=None if rationale is None else str(rationale)
            )
    if objects:
        raise UnparseableAnswerError("the JSON object in the answer has no 'result' key")
    if "{" in cleaned:
        return _cut_off(cleaned)
    if verdicts:
        found = _prose_verdict(cleaned, verdicts)
        if found is not None:
            return ParsedAnswer(result=found, rationale=cleaned[:_PROSE_LIMIT] or None)
        raise UnparseableAnswerError(
            "the answer contains no JSON object and no clear verdict in prose"
        )
    raise UnparseableAnswerError("the answer contains no JSON object")


def _cut_off(text: str) -> ParsedAnswer:
    match = _CUT_RESULT.search(text)
    if match is None:
        raise UnparseableAnswerError(
            "the answer holds no complete JSON object (was it cut off by the token cap? "
            "raise LOCALSCORERS_JUDGE_MAX_TOKENS)"
        )
    raw = match.group(1)
    try:
        result: Any = json.loads(raw)
    except ValueError:
        result = raw
    return ParsedAnswer(result=result, rationale=None)


def _prose_verdict(text: str, verdicts: Mapping[str, Any]) -> Any:  # noqa: ANN401
    """The verdict of a prose answer, or None when there is none or it is ambiguous."""
    words = "|".join(re.escape(w) for w in sorted(verdicts, key=len, reverse=True))
    plain = re.sub(r"[*_`#>\"']", "", text).strip()
    patterns = (
        # "Verdict: pass", "Result = no", "Answer - yes"
        rf"\b(?:result|verdict|answer|rating|decision|judgement|judgment)\s*[:=\-]\s*({words})\b",
        # "The answer is yes."
        rf"\b(?:result|verdict|answer)\s+is\s+({words})\b",
        # "Yes." / "No" / "FAIL" alone
        rf"^({words})[\s.!]*$",
        # "No, the response ..." / "Yes. It ..."
        rf"^({words})\s*[.,!:;\-]",
    )
    for pattern in patterns:
        match = re.search(pattern, plain, re.IGNORECASE)
        if match is not None:
            return verdicts[match.group(1).lower()]
    meanings = {
        json.dumps(verdicts[m.group(1).lower()], default=str): verdicts[m.group(1).lower()]
        for m in re.finditer(rf"\b({words})\b", plain, re.IGNORECASE)
    }
    return next(iter(meanings.values())) if len(meanings) == 1 else None


def to_yes_no(result: object) -> str:
    """Normalize a verdict to ``"yes"`` or ``"no"``, as MLflow's built-in judges report.

    Raises:
        UnparseableAnswerError: the verdict is neither a yes nor a no.
    """
    if isinstance(result, bool):
        return "yes" if result else "no"
    word = str(result).strip().strip(".!").lower()
    if word in _YES:
        return "yes"
    if word in _NO:
        return "no"
    raise UnparseableAnswerError(f'the result {result!r} is neither "yes" nor "no"')


# -- make_judge value types --------------------------------------------------------------------

VALUE_TYPES = ("str", "bool", "int", "float")
_RESULT_SPECS = {
    "str": '"<your answer, as a string>"',
    "bool": "true or false",
    "int": "<an integer>",
    "float": "<a number>",
}


def result_spec(value_type: str, choices: Sequence[object] | None) -> str:
    """Describe the expected ``result`` to the model, in the JSON it should write."""
    if choices:
        return "one of " + ", ".join(json.dumps(c) for c in choices)
    return _RESULT_SPECS[value_type]


def _number(result: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(result, bool):
        raise TypeError
    if isinstance(result, str):
        result = float(result.strip())
    if not isinstance(result, int | float):
        raise TypeError
    if kind is int:
        if float(result) != int(result):
            raise ValueError
        return int(result)
    return float(result)


def to_value(result: object, value_type: str, choices: Sequence[object] | None) -> Any:  # noqa: ANN401
    """Convert a verdict to a ``make_judge`` judge's declared type.

    Raises:
        UnparseableAnswerError: the verdict does not fit the type or the choices.
    """
    if choices:
        for choice in choices:
            if result == choice and isinstance(result, bool) == isinstance(choice, bool):
                return choice
        wanted = str(result).strip().lower()
        for choice in choices:
            if str(choice).lower() == wanted or json.dumps(choice).lower() == wanted:
                return choice
        raise UnparseableAnswerError(
            f"the result {result!r} is not one of {', '.join(json.dumps(c) for c in choices)}"
        )
    if value_type == "bool":
        return to_yes_no(result) == "yes"
    if value_type in {"int", "float"}:
        try:
            return _number(result, int if value_type == "int" else float)
        except (TypeError, ValueError, OverflowError):
            kind = "an integer" if value_type == "int" else "a number"
            raise UnparseableAnswerError(f"the result {result!r} is not {kind}") from None
    if isinstance(result, str):
        return result
    if result is None:
        raise UnparseableAnswerError("the result is null")
    return json.dumps(result, ensure_ascii=False)


_SCHEMA_TYPES = {"str": "string", "bool": "boolean", "int": "integer", "float": "number"}


def result_schema(value_type: str, choices: Sequence[object] | None) -> dict[str, Any]:
    """The JSON schema of a ``make_judge`` result of a type, or restricted to choices."""
    if choices:
        return {"enum": list(choices)}
    return {"type": _SCHEMA_TYPES[value_type]}


def verdict_words(value_type: str, choices: Sequence[object] | None) -> dict[str, Any]:
    """Which prose words a ``make_judge`` judge's verdict may be read from (maybe none)."""
    if choices:
        return {str(c).lower(): c for c in choices}
    if value_type == "bool":
        return dict(YES_NO_VERDICTS)
    return {}
