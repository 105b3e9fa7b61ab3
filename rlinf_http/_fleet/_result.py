"""``FleetResult``: worker URL -> result or exception, and the version agreement check."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from .._errors import FleetError, InvalidRequestError, WeightVersionMismatchError

__all__ = ["FleetResult"]

T = TypeVar("T")


class FleetResult(Mapping[str, "T | Exception"], Generic[T]):
    """The outcome of one :class:`Fleet` call: worker URL -> its result or its exception.

    Iteration follows the fleet's worker order. ``ok`` is ``True`` when every
    worker succeeded; ``results`` and ``errors`` split the two kinds.
    """

    def __init__(self, outcomes: Mapping[str, T | Exception], operation: str = "") -> None:
        self._outcomes = dict(outcomes)
        self.operation = operation

    def __getitem__(self, url: str) -> T | Exception:
        return self._outcomes[url]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return f"FleetResult({self.operation!r}, {self._outcomes!r})"

    @property
    def ok(self) -> bool:
        """Whether every worker succeeded."""
        return not any(isinstance(v, Exception) for v in self._outcomes.values())

    @property
    def results(self) -> dict[str, T]:
        """Worker URL -> result, for the workers that succeeded."""
        return {u: v for u, v in self._outcomes.items() if not isinstance(v, Exception)}

    @property
    def errors(self) -> dict[str, Exception]:
        """Worker URL -> exception, for the workers that failed."""
        return {u: v for u, v in self._outcomes.items() if isinstance(v, Exception)}

    def raise_for_errors(self) -> FleetResult[T]:
        """Raise :class:`~rlinf_http.FleetError` if any worker failed; else return ``self``."""
        errors = self.errors
        if errors:
            details = "; ".join(
                f"{url}: {type(exc).__name__}: {_short(exc)}" for url, exc in errors.items()
            )
            raise FleetError(
                f"{self.operation} failed on {len(errors)} of {len(self)} workers: {details}",
                operation=self.operation,
                result=self,
            )
        return self


def _short(exc: Exception, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def check_expected(expected: object) -> None:
    if not isinstance(expected, str) or not expected:
        raise InvalidRequestError(f"expected must be a non-empty str, got {expected!r}")


def agree(expected: str, versions: FleetResult[str | None]) -> FleetResult[str | None]:
    """``versions`` if every worker serves ``expected``; else raise the mismatch."""
    found = versions.results
    if any(v != expected for v in found.values()):
        raise WeightVersionMismatchError(
            WeightVersionMismatchError.describe(expected, found),
            expected=expected,
            versions=found,
        )
    return versions
