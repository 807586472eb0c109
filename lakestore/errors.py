"""Every error lakestore raises on purpose. Each message names the bad value and the fix."""

from __future__ import annotations


class LakestoreError(Exception):
    """Base class of every error lakestore raises on purpose."""


class InvalidNameError(LakestoreError, ValueError):
    """An experiment name, run name or key that lakestore cannot store."""


class FilterError(LakestoreError, ValueError):
    """A filter or order-by string that does not parse."""


class InvalidValueError(LakestoreError, ValueError):
    """A metric, param, tag or step value of the wrong type or size."""


class ParamConflictError(LakestoreError):
    """A param logged again with a different value."""


class NoActiveRunError(LakestoreError):
    """A module-level logging call with no run started."""


class RunAlreadyActiveError(LakestoreError):
    """start_run() while a run is active, without nested=True."""


class RunEndedError(LakestoreError):
    """A logging call on a run that has already ended."""


class RunNotFoundError(LakestoreError):
    """A run id that the store does not hold."""


class RunDeletedError(LakestoreError):
    """A run that cannot be resumed because it, or its experiment, is deleted."""


class ExperimentNotFoundError(LakestoreError):
    """An experiment that the store does not hold."""


class FormatVersionError(LakestoreError):
    """A store written in a newer format than this lakestore reads."""


class StoreError(LakestoreError):
    """A store that cannot be opened, read or written."""


class FlushError(LakestoreError):
    """Buffered rows that could not be written to the store."""


class QueryError(LakestoreError):
    """A SQL statement that DuckDB rejected."""


class ReadOnlyError(QueryError):
    """A statement that writes or changes settings, on a connection that only reads."""


class ImportSourceError(LakestoreError):
    """Data of another tracker that cannot be imported: not found, not that tracker's,
    or holding a value lakestore cannot store."""


class UnreadableFileWarning(UserWarning):
    """A file in the store that lakestore's readers skip: not lakestore's, or unreadable."""
