"""Every notebook's exercises, checked one way: the exercise cell holds `answer = ...` (Ellipsis, the
placeholder) and the check cell below it is one line,

    check("01.3", answer, model=model)

which prints `not answered yet`, `correct` or `not yet: <hint>`, the hint aimed at the common wrong
answer it recognises (or `cannot be checked here: ...` when a committed record it needs is absent).
An exercise that needs something the notebook built (a trained model, a matrix) names it, and the
check cell passes it by that name. The references are computed here, from dkp's own functions and
the committed records, when the check runs: the notebooks hold none. The protocol is
dkp.course.exercise_protocol; the exercises of notebooks 00-02, 03-06, 07-10 and 11 are in
exercises_foundations, exercises_doping, exercises_results and exercises_transformer."""
from __future__ import annotations

from dkp.course import exercises_doping, exercises_foundations, exercises_results, exercises_transformer
from dkp.course.exercise_protocol import NOT_ANSWERED, judge

EXERCISES = {e.id: e for bank in (exercises_foundations, exercises_doping, exercises_results, exercises_transformer)
             for e in bank.EXERCISES}

__all__ = ["EXERCISES", "NOT_ANSWERED", "check", "reference", "verdict"]


def _exercise(exercise_id):
    try:
        return EXERCISES[exercise_id]
    except KeyError:
        raise KeyError(f"no exercise {exercise_id!r}; the course's are {', '.join(EXERCISES)}") from None


def verdict(exercise_id, answer, **context):
    """The verdict line on `answer` to exercise "NN.k"; `context` holds what the exercise needs from the
    notebook (its `needs`)."""
    return judge(_exercise(exercise_id), answer, context)


def check(exercise_id, answer, **context):
    """Print the verdict on `answer` to exercise "NN.k" (the notebooks' check cells)."""
    print(verdict(exercise_id, answer, **context))


def reference(exercise_id, **context):
    """The Reference an exercise is judged against: its solution, common mistakes and hints (tests)."""
    exercise = _exercise(exercise_id)
    return exercise.reference(**{n: context[n] for n in exercise.needs})
