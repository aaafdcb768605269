"""The tokenizer of filter strings: text to a list of tokens, each with its position.

Strings take single or double quotes, a doubled quote standing for one; backticks quote
keys that hold dots. An unterminated quote or a bad key is a ``FilterSyntaxError`` here;
other errors are the parser's, which knows what it expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from localscorers.exceptions import FilterSyntaxError

__all__ = [
    "KEYWORDS",
    "NUMBER_RE",
    "OPERATORS",
    "WORD_RE",
    "Token",
    "read_ident",
    "read_number",
    "read_quoted",
    "tokenize",
]

KEYWORDS: Final = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "RLIKE"})
OPERATORS: Final = ("!=", "<=", ">=", "=", "<", ">")  # longest first
NUMBER_RE: Final = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
WORD_RE: Final = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text and where it starts; literals carry their value."""

    kind: str  # ident keyword string number op lparen rparen comma invalid end
    text: str
    pos: int
    parts: tuple[str, ...] = ()
    quoted: bool = False
    string: str = ""
    number: int | float = 0


def read_quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    """Read a quoted run starting at ``start``; a doubled quote stands for one quote."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            if text.startswith(quote, i + 1):
                chars.append(quote)
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    raise FilterSyntaxError(
        text,
        start,
        text[start:],
        f"a closing {quote} (to put {quote} inside, write it twice: {quote}{quote})",
    )


def read_ident(text: str, start: int) -> tuple[Token, int]:
    """Read a dotted name such as ``tags.`my.key``` into its parts."""
    parts: list[str] = []
    first_quoted = text[start] == "`"
    i = start
    while True:
        if text.startswith("`", i):
            part, i = read_quoted(text, i, "`")
        elif parts and text.startswith('"', i):
            part, i = read_quoted(text, i, '"')
        else:
            match = WORD_RE.match(text, i)
            if match is None:
                raise FilterSyntaxError(
                    text, i, text[i : i + 1], "a key after '.' (a plain word, or `quoted`)"
                )
            part, i = match.group(), match.end()
        parts.append(part)
        if not text.startswith(".", i):
            break
        i += 1
    raw = text[start:i]
    if len(parts) == 1 and not first_quoted and parts[0].upper() in KEYWORDS:
        return Token("keyword", raw, start, parts=(parts[0].upper(),)), i
    return Token("ident", raw, start, parts=tuple(parts), quoted=first_quoted), i


def read_number(text: str, start: int) -> tuple[Token, int]:
    """Read a number starting at ``start``; return its token and where it ends."""
    match = NUMBER_RE.match(text, start)
    end = match.end() if match else start
    if match is None or (end < len(text) and (text[end].isalnum() or text[end] in "._")):
        # "-x", "1abc" or "1.2.3": report the whole run as one bad token.
        run_end = start + 1
        while run_end < len(text) and (WORD_RE.match(text[run_end]) or text[run_end] == "."):
            run_end += 1
        return Token("invalid", text[start:run_end], start), run_end
    raw = match.group()
    number: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
    return Token("number", raw, start, number=number), end


def tokenize(text: str) -> list[Token]:
    """Split filter text into tokens; unknown characters become ``invalid`` tokens."""
    tokens: list[Token] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            tokens.append(Token("end", "", len(text)))
            return tokens
        char = text[i]
        if char in "'\"":
            value, end = read_quoted(text, i, char)
            tokens.append(Token("string", text[i:end], i, string=value))
            i = end
            continue
        if char == "`" or (char.isascii() and (char.isalpha() or char == "_")):
            token, i = read_ident(text, i)
        elif char.isascii() and (char.isdigit() or char in "-."):
            token, i = read_number(text, i)
        elif char in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[char]
            token, i = Token(kind, char, i), i + 1
        else:
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            width = len(op) if op else 1
            token = Token("op" if op else "invalid", text[i : i + width], i)
            i += width
        tokens.append(token)
