"""The indexer's side of `findimage doctor`: the archive as a pass lists it, and the queue of its workers."""
from __future__ import annotations

import time

from findimage.archive_files import archive_root_problem
from findimage.config import Settings, public_url
from findimage.doctor import Check, fail, ok, warn
from findimage.errors import EXIT_UNAVAILABLE, EXIT_USAGE
from findimage.imaging import IMAGE_EXTENSIONS

from .scan import ARCHIVE_HINT, scan_archive

COUNT_SECONDS = 20.0  # a huge archive is counted this long; `findimage index` lists it all
SHOWN = 3  # unreadable folders named


def archive_check(settings: Settings, seconds: float = COUNT_SECONDS) -> Check:
    """FINDIMAGE_ARCHIVE: there, a folder, readable; its images counted by the pass's own listing (so the
    count is the one `findimage index` sees), and the folders that listing could not read."""
    root = settings.archive
    problem = archive_root_problem(root)
    if problem:
        return fail("archive", f"{problem}. {ARCHIVE_HINT}")
    scan = scan_archive(root, until=time.monotonic() + seconds)
    count = f"{len(scan.files):,} images" if scan.finished else \
        f"at least {len(scan.files):,} images (counted for {seconds:.0f} s; `findimage index` lists them all)"
    if scan.unlisted:
        shown = ", ".join(scan.unlisted[:SHOWN]) + (f" and {len(scan.unlisted) - SHOWN} more"
                                                     if len(scan.unlisted) > SHOWN else "")
        return warn("archive", f"{root}: {count}; {len(scan.unlisted)} folder(s) or file(s) could not be read "
                               f"({shown}): their images are kept as they were indexed until this user may read "
                               "them again.")
    if not scan.files and scan.finished:
        return warn("archive", f"{root}: no images found (findimage indexes {', '.join(sorted(IMAGE_EXTENSIONS))} "
                               "files; hidden ones are skipped): is FINDIMAGE_ARCHIVE the right folder?")
    return ok("archive", f"{root}: {count}")


def queue_checks(settings: Settings) -> list[Check]:
    """FINDIMAGE_QUEUE_URL, where set: Redis answers, as a worker connects to it (no line where it is unset)."""
    if not settings.queue_url:
        return []
    from .queue import celery_app, on_redis, refused_as_configured, trouble

    app = celery_app(settings)
    shown = public_url(settings.queue_url)
    try:
        on_redis(app, lambda client: client.ping())
    except Exception as exc:  # noqa: BLE001 - the sentence says what failed; the exception may quote the URL
        if refused_as_configured(exc):  # a password or a certificate: a setting to change
            return [fail("queue", f"the queue at FINDIMAGE_QUEUE_URL={shown} {trouble(exc)}.", EXIT_USAGE)]
        return [fail("queue", f"the queue at FINDIMAGE_QUEUE_URL={shown} {trouble(exc)}: check that Redis runs "
                              "there and that FINDIMAGE_QUEUE_URL is right.", EXIT_UNAVAILABLE)]
    finally:
        app.close()
    return [ok("queue", f"Redis answers at {shown}")]
