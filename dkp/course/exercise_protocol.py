"""The course's one exercise protocol, as data and one judge: an exercise declares the form of its
answer, where its reference comes from (dkp's own functions or the committed records, computed when
the check runs, so a notebook holds no answers), the common wrong answers with the hint each
deserves, and what the notebook must pass it (`needs`).

A notebook's exercise cell starts as `answer = ...` (Ellipsis: `None` can be a real answer) and its
check cell is one line, `check("NN.k", answer)` (dkp.course.exercises). The verdict is one of

    not answered yet          the placeholder is still there
    correct                   (with a note, for some)
    not yet: <hint>           a hint for the mistake made, or what the answer must be
    cannot be checked here: <why>    the committed record the reference needs is absent
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

NOT_ANSWERED = "not answered yet"
CORRECT = "correct"


class Unavailable(Exception):
    """Raised by a reference that cannot be computed here (a committed record is absent)."""


class _Any:
    """In a wrong-answer pattern: any value in this place (the hint is about the other parts)."""

    def __repr__(self):
        return "ANY"


ANY = _Any()


@dataclass(frozen=True)
class Near:
    """In a wrong-answer pattern: a number within `rtol` of `value` (a rounded answer, say)."""
    value: float
    rtol: float


@dataclass
class Reference:
    """What an answer is judged against: the solution, the common mistakes [(pattern, hint)] tried
    in order (a pattern may hold ANY or Near), the hint for any other wrong answer (text, or a
    function of the answer), a note after a correct answer, the tolerance of numbers; or, for
    answers that cannot be compared (functions), `judge(answer) -> None or hint`."""
    solution: object
    mistakes: list = field(default_factory=list)
    otherwise: object = "that is not the answer"
    note: str | None = None
    rtol: float = 1e-6
    atol: float = 0.0
    judge: Callable | None = None


@dataclass(frozen=True)
class Exercise:
    """One exercise: `id` "NN.k" (notebook, number), `form` (answer -> None or what is wrong with
    its form), `reference` (**context -> Reference), `needs`: the names the notebook passes."""
    id: str
    form: Callable
    reference: Callable
    needs: tuple = ()


# --- forms: what an answer must look like, said plainly when it does not ---------------------------

def _shown(value):
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def number(what="a number"):
    def form(value):
        if not _is_number(value) or not math.isfinite(float(value)):
            return f"answer with {what}, not {_shown(value)}"
    return form


def integer(what="a whole number"):
    def form(value):
        if not _is_number(value) or not math.isfinite(float(value)) or float(value) != int(value):
            return f"answer with {what}, not {_shown(value)}"
    return form


def flag(what="True or False"):
    def form(value):
        if not isinstance(value, (bool, np.bool_)):
            return f"answer with {what}, not {_shown(value)}"
    return form


def choice(options, what=None):
    def form(value):
        if not any(same(value, o) for o in options):
            return f"answer with {what or 'one of ' + ', '.join(map(repr, options))}, not {_shown(value)}"
    return form


def function(what="a function"):
    def form(value):
        if not callable(value):
            return f"answer with {what}, not {_shown(value)}"
    return form


def vector(length, what=None):
    def form(value):
        try:
            a = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            a = None
        if a is None or a.shape != (length,) or not np.all(np.isfinite(a)):
            return f"answer with {what or f'an array of {length} numbers'}, not {_shown(value)}"
    return form


def names(what="a list of names"):
    def form(value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return f"answer with {what}, not {_shown(value)}"
    return form


def pair(first, second, what):
    """A tuple (or list) of two parts, each of its own form; `what` names them, e.g. "(n, ratio)"."""
    def form(value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return f"answer with a pair {what}, not {_shown(value)}"
        return first(value[0]) or second(value[1])
    return form


def record(**parts):
    """A dict with exactly these keys, each value of its own form."""
    def form(value):
        if not isinstance(value, dict) or set(value) != set(parts):
            return f"answer with a dict with the keys {', '.join(map(repr, parts))}, not {_shown(value)}"
        for key, part in parts.items():
            problem = part(value[key])
            if problem:
                return f"{key!r}: {problem}"
    return form


# --- comparing ---------------------------------------------------------------------------------------

def same(a, b, rtol=1e-6, atol=0.0):
    """Whether answer `a` matches `b` (numbers within the tolerance; tuples, lists and dicts part by
    part; `b` may hold ANY or Near)."""
    if b is ANY:
        return True
    if isinstance(b, Near):
        return _is_number(a) and abs(float(a) - b.value) <= b.rtol * abs(b.value)
    if b is None:
        return a is None
    if isinstance(b, str):
        return isinstance(a, str) and a == b
    if isinstance(b, (bool, np.bool_)):
        return isinstance(a, (bool, np.bool_)) and bool(a) == bool(b)
    if _is_number(b):
        return _is_number(a) and abs(float(a) - float(b)) <= atol + rtol * abs(float(b))
    if isinstance(b, np.ndarray):
        try:
            a = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            return False
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))
    if isinstance(b, dict):
        return isinstance(a, dict) and set(a) == set(b) and all(same(a[k], b[k], rtol, atol) for k in b)
    if isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list, np.ndarray)) and len(a) == len(b)
                and all(same(x, y, rtol, atol) for x, y in zip(a, b)))
    return a is b


def part_hints(hints):
    """`otherwise` for a tuple or dict answer: the hint of every part that is not right yet, given
    {part (index or key): hint}."""
    def otherwise(answer, ref):
        wrong = [hint for part, hint in hints.items()
                 if not same(answer[part], ref.solution[part], ref.rtol, ref.atol)]
        return "; ".join(wrong) or "that is not the answer"
    return otherwise


def judge(exercise, answer, context):
    """The verdict line on `answer` (see the module docstring). A malformed answer, or one the
    comparison cannot read, is reported, never raised; a missing `needs` name is the notebook's
    error and raises."""
    if answer is ...:
        return NOT_ANSWERED
    missing = [n for n in exercise.needs if n not in context]
    if missing:
        raise TypeError(f"check({exercise.id!r}, answer, ...) needs {', '.join(f'{n}=...' for n in missing)} "
                        f"from the notebook")
    problem = exercise.form(answer)
    if problem:
        return f"not yet: {problem}"
    try:
        ref = exercise.reference(**{n: context[n] for n in exercise.needs})
    except Unavailable as why:
        return f"cannot be checked here: {why}"
    try:
        if ref.judge is not None:
            hint = ref.judge(answer)
        elif same(answer, ref.solution, ref.rtol, ref.atol):
            hint = None
        else:
            hint = next((h for pattern, h in ref.mistakes if same(answer, pattern, ref.rtol, ref.atol)), None)
            if hint is None:
                hint = ref.otherwise(answer, ref) if callable(ref.otherwise) else ref.otherwise
    except Exception as error:                 # an answer the comparison cannot read
        hint = f"could not read this answer ({type(error).__name__}: {error})"
    if hint is None:
        return CORRECT + (f" ({ref.note})" if ref.note else "")
    return f"not yet: {hint}"
