"""Option kinds: the values an option of a network builder or a training method accepts,
checked the same way everywhere before any work starts (the ground floor: imports
nothing of the package).

Example:
    >>> WEIGHT.check("kd_weight", 0.3)
    >>> WEIGHT.check("kd_weight", -3)
    Traceback (most recent call last):
    ...
    ValueError: kd_weight must be a number >= 0, got -3.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def is_number(value) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def is_integer(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def items_of(value) -> list | None:
    """The items of a list, tuple, range, set or 1-D array; None for anything else,
    strings included (`exits="13"` would otherwise read as [1, 3])."""
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim == 1 else None
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:  # mixed types: the caller's item check refuses them
            return list(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return None


def is_integer_list(value) -> bool:
    """A list, tuple, range, set or 1-D array of integers."""
    items = items_of(value)
    return items is not None and all(is_integer(v) for v in items)


class UnknownOptionError(ValueError):
    """An option name the method does not have (the zoo's builders then also list their
    own keywords, since a misspelt one lands here)."""


@dataclass(frozen=True)
class OptionKind:
    """The values an option accepts: `accepts(value)`, and `valid`, the words that say
    which ("a number >= 0"). One kind serves every option of that sort, so each method's
    and builder's options are checked the same way, before any work starts."""

    valid: str
    accepts: Callable[[object], bool]

    def check(self, option: str, value, owner: str = "") -> None:
        """Raises a ValueError naming `owner` (e.g. "byot option"), the option, the bad
        value and what is valid; wrong types raise the same ValueError."""
        if self.accepts(value):
            return
        valid = self.valid
        if is_number(value) and not math.isfinite(value) and valid.startswith("a number"):
            valid = "a finite number" + valid[len("a number"):]
        prefix = f"Invalid {owner}: " if owner else ""
        raise ValueError(f"{prefix}{option} must be {valid}, got {value!r}.")


def number_at_least(low: float, *, strict: bool = False) -> OptionKind:
    """Finite numbers >= `low` (> `low` with `strict`)."""
    return OptionKind(
        f"a number {'>' if strict else '>='} {low:g}",
        lambda v: is_number(v) and math.isfinite(v) and (v > low if strict else v >= low))


def number_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False
              ) -> OptionKind:
    """Numbers in an interval, written as `[low, high]`, `(low, high]`, ..."""
    def accepts(v) -> bool:
        return is_number(v) and (v > low if open_low else v >= low) and (
            v < high if open_high else v <= high)

    return OptionKind(f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}",
                      accepts)


def integer_at_least(low: int) -> OptionKind:
    return OptionKind(f"an integer >= {low}", lambda v: is_integer(v) and v >= low)


def optional(kind: OptionKind, meaning: str = "") -> OptionKind:
    """`kind` or None; `meaning` says what None stands for."""
    return OptionKind(f"None{f' ({meaning})' if meaning else ''} or {kind.valid}",
                      lambda v: v is None or kind.accepts(v))


#: Loss weights: a negative weight would reward the error it weighs.
WEIGHT = number_at_least(0)
#: Mixing coefficients (`x` and `1 - x` are both weights).
FRACTION = number_in(0, 1)
POSITIVE = number_at_least(0, strict=True)
FLAG = OptionKind("True or False", lambda v: isinstance(v, bool | np.bool_))
