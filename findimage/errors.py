"""Exceptions the core raises across modules, named for what they mean to the person who reads them.

Each message is one sentence a user can act on; the bot and the CLI show it (or a gentler version).
"""
from __future__ import annotations

from findimage import __version__

# The command's exit codes, by kind of failure (findimage_cli; FindimageError.exit_code).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_PIPE = 141  # the output's reader went away (`| head`): what a shell reports for a process SIGPIPE ended


class FindimageError(Exception):
    """The root of every failure findimage explains: its message is the sentence to show, `exit_code`
    what the command exits with. Anything else that escapes is a bug, reported as such."""

    exit_code = EXIT_ERROR


class BackendUnavailable(FindimageError):
    """Elasticsearch (the store, or the ML node vectorizing text) cannot serve right now: down, starting,
    overloaded; the message says what to check. Worth retrying later."""

    exit_code = EXIT_UNAVAILABLE


class BackendBusy(BackendUnavailable):
    """Elasticsearch answers but cannot serve yet (starting, recovering shards, overloaded: 429/5xx)."""


class IndexMissing(BackendUnavailable):
    """The index a search asked for does not exist yet: only an indexing pass creates it."""


class AccessDenied(BackendUnavailable):
    """Elasticsearch refused the credentials, or this operation for them; the message names the key to use."""


class StoreError(FindimageError):
    """The store could not take a write: some documents refused (`failures` lists (relative_path, reason)),
    or the whole write failed (no failures listed: e.g. disk full)."""

    def __init__(self, message: str, failures: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.failures = failures or []


class ModelError(FindimageError):
    """A model that cannot be loaded or run, with what to do about it."""


class LicenseRefused(ModelError):
    """Elasticsearch's license does not include machine learning, so _infer cannot run the text model."""



class ModelMismatch(FindimageError):
    """The configured image model differs from the one the index was built with."""


def check_image_model(stored: str | None, configured: str, stored_size: int | None = None,
                      size: int | None = None) -> None:
    """Vectors of two models, or of two sizes, are not comparable: refuse to mix them, and say how to rebuild."""
    if stored and stored != configured:
        raise ModelMismatch(
            f"The index was built with the image model {stored}, but FINDIMAGE_IMAGE_MODEL is now "
            f"{configured}. Run `findimage index --full` to re-embed the archive with it.")
    check_vector_size(stored_size, size)


def check_vector_size(stored: int | None, size: int | None) -> None:
    """The one sentence for vectors of a size the index does not hold (a model of another size configured)."""
    if stored and size and stored != size:
        raise ModelMismatch(
            f"The index holds {stored}-dim vectors, but the configured models give {size}-dim ones: run "
            "`findimage index --full` to re-embed the archive with FINDIMAGE_IMAGE_MODEL and FINDIMAGE_TEXT_MODEL.")


class StoreTooNew(FindimageError):
    """A store (or a backup of one) written by a newer findimage, whose schema this one does not know: it is
    neither read nor changed."""

    exit_code = EXIT_REFUSED


def refuse_newer_schema(subject: str, written_by: str | None, schema: int, known: int) -> None:
    """The one check and sentence for every store and backup: `subject` ("The store in /data") holds
    `schema`, written by findimage `written_by`; this findimage knows schemas up to `known`."""
    if schema > known:
        raise StoreTooNew(f"{subject} was written by findimage {written_by or 'a newer version'} (schema {schema}); "
                          f"this is findimage {__version__} (schema {known}): upgrade findimage, or restore a backup "
                          "made by this version.")


class LeaseHeld(FindimageError):
    """Another indexing pass holds the indexing lease; the message names it."""


class TextReadingError(FindimageError):
    """Text could not be read in a picture (the reading engine failed to load or to run); the message is
    one sentence with the reason. Other pictures may still be read."""
