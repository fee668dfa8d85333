"""When a photo was taken (from its EXIF header, else the file's modification time).

Dates are kept as naive local ISO 8601 text ('2024-06-14T18:03:00'): EXIF has no time zone, and text in
this one format sorts and compares like the dates it stands for, in SQLite and in Elasticsearch alike.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import BinaryIO

from PIL import Image

from findimage.imaging import FORMATS, header_exif

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED, DATE_TIME = 0x9003, 0x9004, 0x0132
EARLIEST_YEAR = 1900
_EXIF_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def parse_exif_date(raw: object) -> datetime | None:
    """'2024:06:14 18:03:00' -> datetime; None for blanks, garbage, year 0000, before 1900 or in the future."""
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str):
        return None
    found = _EXIF_DATE.match(raw.strip("\x00"))
    if not found:
        return None
    try:
        year, month, day, hour, minute, second = (int(part or 0) for part in found.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:  # month 13, February 30th, hour 25
        return None
    if moment.year < EARLIEST_YEAR or moment > datetime.now() + timedelta(days=1):
        return None
    return moment


def exif_taken(exif: Image.Exif) -> tuple[str, str] | None:
    """(iso, source) from an image's EXIF, best tag first; None if it carries no usable date."""
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:  # a mangled EXIF block must never cost the file, only its date
        return None
    for raw, source in ((sub.get(DATE_TIME_ORIGINAL), "exif_original"),
                        (sub.get(DATE_TIME_DIGITIZED), "exif_digitized"), (exif.get(DATE_TIME), "exif_datetime")):
        moment = parse_exif_date(raw)
        if moment is not None:
            return iso(moment), source
    return None


def taken_of(exif: Image.Exif | None, mtime: float) -> tuple[str, str]:
    """When the photo was taken and where that came from; the file's modification time as the last resort."""
    found = exif_taken(exif) if exif is not None else None
    return found or (iso(datetime.fromtimestamp(mtime)), "mtime")


def taken_of_header(stream: BinaryIO, mtime: float) -> tuple[str, str]:
    """The same from an open image file, reading only its header (for indexes made before dates were
    kept): only findimage's own decoders are tried, and no pixel is decoded."""
    try:
        with Image.open(stream, formats=FORMATS) as image:
            return taken_of(header_exif(image), mtime)
    except Exception:  # unreadable now: its modification time still says something
        return taken_of(None, mtime)
