"""Queries as users make them: text or an example image in, ranked archive matches out."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from findimage import backends
from findimage.archive_files import ArchiveFileRefused, is_servable, read_named_file
from findimage.backends import open_store
from findimage.config import DecodeLimits, Settings
from findimage.duplicates import NearCopies, picture_fingerprint, with_near_copy
from findimage.errors import BackendUnavailable, IndexMissing, StoreError, check_image_model
from findimage.fingerprint import Fingerprint
from findimage.fusion import collapse_copies, fuse
from findimage.i18n import N_, Language, english
from findimage.imaging import ImageError, prepare_bytes
from findimage.models.base import ImageEmbedder, TextEmbedder
from findimage.names import meaningful, query_words
from findimage.query import EVERYWHERE, NO_IMAGE_FILE, Filters, Query, QueryError, clean_text, default_k
from findimage.records import ImageDoc, Match, cosine_to_score
from findimage.remembered import Remembered
from findimage.stores.base import META_IMAGE_MODEL, Store, candidates_for

log = logging.getLogger(__name__)
QUERY_DECODES = 2
MAX_LOOKAHEAD = 4  # at most 4 x k matches are fetched to replace ones whose file has gone (or copies)
FUSION_DEPTH = 50  # each ranking contributes at least this many to the fusion


def example_file(path: str | Path, limits: DecodeLimits) -> bytes:
    """An example image's bytes from a file whoever asks names (the command line's `--image`), read no
    further than its decode budget, as an archive file is."""
    if not Path(path).is_file():
        raise QueryError(NO_IMAGE_FILE.format(path=path))
    try:
        return read_named_file(path, limits.budget)
    except ArchiveFileRefused as exc:
        raise ImageError(f"cannot read {path}: {exc}") from None


def servable(archive: Path, match: Match) -> bool:
    """Whether a match can be shown now: a remembered image is Slack's file, shown by reference (Slack
    decides whether it is there); an archive image's file must be there as indexed: inside the archive
    (no link leading out), a regular file, of the indexed size and modification time (archive_files, as
    every reader opens them)."""
    return match.posted is not None or is_servable(archive, match.relative_path, match.indexed)


@dataclass
class SearchResult:
    matches: list[Match]
    filters: Filters = EVERYWHERE
    query_sha256: str | None = None
    weak_score: float = 0.0
    exact: set[str] = field(default_factory=set)  # image_ids byte-identical to the query image
    # An example image's near-identical copies (findimage.fingerprint): in the archive (their image ids: the
    # first matches), and remembered in the query's channel (postings of it before, the earliest first).
    near: set[str] = field(default_factory=set)
    reposts: list[Match] = field(default_factory=list)
    query_path: str | None = None  # by_image_id: the archive path of the image asked about
    words: list[str] = field(default_factory=list)  # by_text: the query's words (matched in names and text)

    @property
    def folder(self) -> str | None:
        return self.filters.folder

    @property
    def uncertain(self) -> bool:
        """Even the best match is weak (and its name or text does not hold the query's words): guesses, not
        answers."""
        return (bool(self.matches) and not {"name", "text"} & set(self.matches[0].matched)
                and self.matches[0].score < self.weak_score)


class Searcher:
    """Vectorizes queries and runs kNN on the configured store; safe to share between threads."""

    def __init__(self, settings: Settings, store: Store | None = None, text_embedder: TextEmbedder | None = None,
                 image_embedder: ImageEmbedder | None = None, remembered: Remembered | None = None):
        """`remembered`: the images remembered from Slack channels, searched only for a query that names
        its channel (every method's `channel`)."""
        self.settings = settings
        # Query images decode at most this many at a time: a burst of large posted photos queues here
        # instead of multiplying the process's memory (each may take up to FINDIMAGE_MAX_QUERY_PIXELS).
        self._decodes = threading.BoundedSemaphore(QUERY_DECODES)
        self.store = store or open_store(settings)
        self.text_embedder: TextEmbedder = text_embedder or backends.text_embedder(settings)
        self.image_embedder: ImageEmbedder = image_embedder or backends.image_embedder(settings)
        self.remembered = remembered

    def warm_up(self) -> None:
        """Load both models now so the first query does not pay for it."""
        self.text_embedder.load()
        self.image_embedder.load()

    def check_model(self) -> None:
        """ModelMismatch unless the index was built with the configured image model (cheap to repeat:
        the stores keep the answer until the index behind them changes)."""
        check_image_model(self.store.get_meta(META_IMAGE_MODEL), self.image_embedder.model_id)

    def search(self, query: Query, *, channel: str | None = None, example: bytes | None = None) -> SearchResult:
        """A query as its door made it: a description, an indexed image, or the example image given with it;
        among the images its filters allow, and those remembered in `channel` (findimage.visibility decided
        which, for where it was asked)."""
        if (example is None) != (query.text is not None or query.image_id is not None):
            raise ValueError("an example image is given with an example image's query, and only with it")
        if query.text is not None:
            return self._by_text(query, query.text, channel)
        if query.image_id is not None:
            return self._like(query, query.image_id, channel)
        assert example is not None
        return self._by_example(query, example, channel)

    # The library's ways in (tests, tools): a query as the command line makes it, FINDIMAGE_TOP_K images
    # where `k` is not given.
    def by_text(self, text: str, k: int | None = None, filters: Filters = EVERYWHERE, *, skip: int = 0,
                channel: str | None = None) -> SearchResult:
        return self.search(Query(k or default_k(self.settings), text, filters=filters, skip=skip), channel=channel)

    def by_image_bytes(self, data: bytes, k: int | None = None, filters: Filters = EVERYWHERE, *,
                       channel: str | None = None) -> SearchResult:
        return self.search(Query(k or default_k(self.settings), filters=filters), channel=channel, example=data)

    def by_image_id(self, image_id: str, k: int | None = None, filters: Filters = EVERYWHERE,
                    skip: int = 0, *, channel: str | None = None) -> SearchResult:
        query = Query(k or default_k(self.settings), image_id=image_id, filters=filters, skip=skip)
        return self.search(query, channel=channel)

    def _by_text(self, query: Query, text: str, channel: str | None) -> SearchResult:
        """Ranked by CLIP and the query's words in names and text read from the images (findimage.fusion;
        CLIP alone with FINDIMAGE_HYBRID=off). `skip` pages on: the ranking starts from the top each time
        and the earlier pages are dropped."""
        cleaned = clean_text(text, self.settings.max_query_chars)
        vector = self.text_embedder.embed_texts([cleaned])[0]
        words = meaningful(query_words(cleaned)) if self.settings.hybrid else []
        result = self._knn(vector, query.skip + query.k, query.filters, words, channel)
        result.matches = result.matches[query.skip:]
        result.words = words
        return result

    def _by_example(self, query: Query, data: bytes, channel: str | None) -> SearchResult:
        """The images most like an example image (pure CLIP), decoded within the query images' limits; its
        near-identical copies in the archive first, and those remembered in `channel` as its reposts."""
        limits = self.settings.query_images
        with self._decodes:
            decoded = prepare_bytes(data, max_pixels=limits.max_pixels, budget=limits.budget).image
            # Down to the model's input size while still bounded: a 40-MP picture waiting for the model
            # (which runs one query at a time) would hold ~160 MB, and the model's processor would copy it.
            image = self.image_embedder.shrink(decoded)
            made = picture_fingerprint(decoded, image)  # as the indexer makes it
            del decoded
        vector = self.image_embedder.embed_images([image])[0]
        result = self._knn(vector, query.k, query.filters, channel=channel)
        copies = self._on_disk(self._archive_copies(made, vector, query.filters))
        if copies:
            # Every copy is the same picture as the one asked about: one hit at the closest, the others listed
            # with it (byte-identical ones as `also_at`), however the copies compare among themselves.
            first = collapse_copies(copies)
            one = functools.reduce(with_near_copy, first[1:], first[0])
            result.near = {m.image_id for m in copies}
            result.matches = self._shown([one, *(m for m in result.matches if m.image_id not in result.near)],
                                         query.k)
        result.reposts = self._reposts(made, channel if query.filters.folder is None else None)
        result.query_sha256 = hashlib.sha256(data).hexdigest()
        result.exact = {m.image_id for m in result.matches if m.sha256 == result.query_sha256}
        return result

    def _archive_copies(self, made: Fingerprint, vector: np.ndarray, filters: Filters) -> list[Match]:
        """The archive's near-identical copies of a picture, each with its CLIP score for `vector`: those its
        probes find, and those of the closest one (a lookup misses about one copy in 300; two rarely miss
        the same one)."""
        found = self.store.near_copies(made, filters)
        if found:
            closest = found[0].fingerprint  # a store's near copies come with their fingerprints
            known = {m.image_id for m in found}
            if closest:
                found += [m for m in self.store.near_copies(Fingerprint.from_string(closest), filters)
                          if m.image_id not in known]
        copies = []
        for match in found:
            doc = self.store.get(match.image_id)
            if doc is not None:
                score = cosine_to_score(float(np.dot(doc.image_embedding, vector)))
                copies.append(dataclasses.replace(match, score=score))
        return copies

    def _reposts(self, made: Fingerprint, channel: str | None) -> list[Match]:
        """The pictures remembered in `channel` that are near-identical copies of this one, the earliest
        posting first (the one this query's picture was posted in among them, if it is remembered already:
        the caller knows which that is)."""
        if channel is None or self.remembered is None:
            return []
        try:
            found = self.remembered.store.near_copies(made, Filters(folder=channel))
        except IndexMissing:
            return []
        except (BackendUnavailable, StoreError) as exc:  # the answer still comes, without them
            log.warning("the images remembered in %s could not be searched for copies: %s", channel, exc)
            return []
        [visible] = self.remembered.visible_in(channel, found)
        return sorted(visible, key=lambda m: float(m.posted.message_ts) if m.posted else 0.0)

    def _like(self, query: Query, image_id: str, channel: str | None) -> SearchResult:
        """The images nearest to an indexed one, from its stored vector (no file read, no model call): an
        archive image, or one remembered in `channel` (asked about in that channel only). The image itself
        is left out: whoever asks is looking at it already. `skip` pages on."""
        doc, about = self._indexed(image_id, channel)
        skip, k = query.skip, query.k
        result = self._knn(doc.image_embedding, skip + k + 1, query.filters, channel=channel)
        result.matches = [m for m in result.matches if m.image_id != image_id][skip:skip + k]
        result.query_sha256, result.query_path = doc.sha256, about
        result.exact = {m.image_id for m in result.matches if m.sha256 == doc.sha256}
        return result

    def _indexed(self, image_id: str, channel: str | None) -> tuple[ImageDoc, str]:
        """The document of an archive image, or of one remembered in `channel`; and how to name it."""
        doc = self.store.get(image_id)
        if doc is not None:
            return doc, doc.relative_path
        if channel is not None and self.remembered is not None:
            doc = self.remembered.get(image_id, channel)
            if doc is not None:
                return doc, doc.image_name
        raise QueryError(N_("That image is no longer in the archive (it was removed or re-indexed since)."))

    def _knn(self, vector: np.ndarray, k: int, filters: Filters, words: list[str] | None = None,
             channel: str | None = None) -> SearchResult:
        asked = k
        # `channel`: whose remembered images this query may see, as findimage.visibility decided for where
        # it was made; they do not join a query for an archive folder.
        channel = channel if filters.folder is None and self.remembered is not None else None
        found, complete = self._ranked(vector, asked, filters, words, channel)
        shown = self._shown(found, k)
        # Files deleted since the last pass (or kept by a refused mass removal) are left out and the
        # next matches move up: an answer never offers a file that cannot be shown. Copies of one
        # picture count once, so k results are k different pictures.
        while len(shown) < k and not complete and asked < k * MAX_LOOKAHEAD:
            asked = min(k * MAX_LOOKAHEAD, asked + 2 * max(1, k - len(shown)))
            found, complete = self._ranked(vector, asked, filters, words, channel)
            shown = self._shown(found, k)
        self.check_model()  # again after the search: a rebuild may have swapped the index meanwhile
        return SearchResult(shown, filters, weak_score=self.settings.weak_score)

    def _ranked(self, vector: np.ndarray, asked: int, filters: Filters, words: list[str] | None,
                channel: str | None = None) -> tuple[list[Match], bool]:
        """The ranking (fused with names when there are query words) beyond `asked`, so copies of the
        last pictures are found too; and whether the stores had nothing more to give."""
        depth = max(2 * asked, FUSION_DEPTH)
        # The same candidates with and without names, so a query matching no name ranks exactly as CLIP alone.
        candidates = candidates_for(asked, self.settings.num_candidates)
        rankings = self._rankings(self.store, vector, words, depth, candidates, filters)
        if channel is not None and self.remembered is not None:
            # Remembered images are stored under their channel's folder: the store's folder filter keeps
            # every other channel's out of the search itself.
            in_channel = dataclasses.replace(filters, folder=channel)
            try:
                posted = self._rankings(self.remembered.store, vector, words, depth, candidates, in_channel)
            except IndexMissing:  # remembered, nothing stored yet
                posted = ([], [], [])
            except (BackendUnavailable, StoreError) as exc:  # the archive's answer still comes, without them
                log.warning("the images remembered in %s could not be searched: %s", channel, exc)
                posted = ([], [], [])
            by_image, by_name, by_text = self.remembered.visible_in(channel, *posted)
            rankings = merge_rankings(rankings, (by_image, by_name, by_text), depth)
        complete = all(len(r) < depth for r in rankings)
        if not words:
            return rankings[0], complete
        return fuse(*rankings, words=words), complete

    def _rankings(self, store: Store, vector: np.ndarray, words: list[str] | None, depth: int, candidates: int,
                  filters: Filters) -> tuple[list[Match], list[Match], list[Match]]:
        """(CLIP, names, text) of one store: the names and text only for a query with words, the text only
        where it is read (FINDIMAGE_OCR), in one request where the store can; with the text, every
        candidate carries its lines (for findimage.fusion to judge)."""
        if not words:
            return store.knn(vector, depth, candidates, filters), [], []
        if self.settings.ocr:
            return store.hybrid_with_text(vector, words, depth, candidates, filters)
        by_image, by_name = store.hybrid(vector, words, depth, candidates, filters)
        return by_image, by_name, []

    def _shown(self, found: list[Match], k: int) -> list[Match]:
        """The first k different pictures whose files are there, each with the paths of its byte-identical
        copies (`also_at`) and its near-identical ones (`near_copies`, findimage.fingerprint); files are
        looked at only for those (a slow network mount pays for k, not for the whole ranking)."""
        kept: list[Match] = []
        contents: set[str] = set()
        near = NearCopies(self._fingerprints_of(found))
        for match in found:
            identical = bool(match.sha256) and match.sha256 in contents
            copy_of = None if identical else near.copy_of(match)
            if len(kept) >= k and not identical and copy_of is None:
                continue
            if not self._on_disk([match]):
                continue
            if copy_of is not None:
                kept[copy_of] = with_near_copy(kept[copy_of], match)
                near.merge(copy_of, match)
                continue
            before = len(kept)
            kept = collapse_copies([*kept, match])
            contents.add(match.sha256)
            if len(kept) > before:
                near.keep(match)
        return kept[:k]

    def _fingerprints_of(self, matches: list[Match]) -> dict[str, str]:
        """The archive matches' fingerprints: those the store gave with the matches (Elasticsearch, from the
        search's own doc values), the others in one request (a store that cannot give them now: none, and
        near copies are shown apart)."""
        archive = [m for m in matches if m.posted is None]
        if len(archive) < 2:
            return {}
        given = {m.image_id: m.fingerprint for m in archive if m.fingerprint}
        wanted = [m.image_id for m in archive if m.fingerprint is None]
        if not wanted:
            return given
        try:
            return {**given, **self.store.fingerprints_of(wanted)}
        except (BackendUnavailable, StoreError) as exc:
            log.warning("near copies are not collapsed in this answer: %s", exc)
            return given

    def _on_disk(self, matches: list[Match]) -> list[Match]:
        """The matches that can be shown now (`servable`)."""
        archive = Path(self.settings.archive)
        if not archive.is_dir():  # the archive is not mounted here (e.g. a search from another machine)
            return matches
        return [m for m in matches if servable(archive, m)]


def merge_rankings(archive: tuple[list[Match], list[Match], list[Match]],
                   posted: tuple[list[Match], list[Match], list[Match]],
                   depth: int) -> tuple[list[Match], list[Match], list[Match]]:
    """The archive's and a channel's rankings as one per signal: CLIP's by score (one model, one space,
    so the scores compare), the names' and text's alternately by rank (BM25 of two collections does not)."""
    by_image = sorted([*archive[0], *posted[0]], key=lambda m: -m.score)[:depth]  # stable: archive first on ties
    return by_image, _alternate(archive[1], posted[1], depth), _alternate(archive[2], posted[2], depth)


def _alternate(first: list[Match], second: list[Match], depth: int) -> list[Match]:
    merged = [m for pair in zip(first, second, strict=False) for m in pair]
    shorter = min(len(first), len(second))
    return (merged + first[shorter:] + second[shorter:])[:depth]


def empty_result_sentence(result: SearchResult, store: Store, language: Language | None = None) -> str:
    """Why there is nothing to show, in one sentence, in `language` (the command line's: English)."""
    said = language or english()
    if result.folder and store.count() > 0:
        return said._("No indexed images under the folder {folder}.", folder=repr(result.folder))
    return said._("The archive is not indexed yet: run `findimage index` (or wait for the scheduled indexer).")
