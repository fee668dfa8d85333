"""Images remembered from Slack channels: their vectors in a store of their own (never the archive's),
their Slack facts in a ChannelRegistry, both opened by findimage.backends.open_remembered.

Which channel's images a query may see is decided by findimage.visibility; here that decision is held:
a posting is searchable only with its channel's id, which is its path's top folder, so the store filters
by it inside every search (kNN, names, text, on both stores), and a result is returned only with its
registry record naming that very channel.

What a forget deletes is gone at once: the stores open_remembered opens leave none of it in the embedded
store's files (stores/embedded/erasing.py), and refresh Elasticsearch with every deletion, so no search of
any process finds it, shared or not (what Elasticsearch keeps on disk until its segments merge:
docs/remembered-channels.md).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from findimage.records import ImageDoc, Match, Posted
from findimage.stores.base import META_IMAGE_MODEL, ChannelRegistry, ChannelState, Store

log = logging.getLogger(__name__)


# How long a Slack file's deletion is recorded: a posting of it still waiting to be remembered then (a
# backlog, a backfill page read before the deletion) is not remembered.
GONE_KEPT_SECONDS = 7 * 86_400.0


def gone_keys(channel: str, file_id: str, message_ts: str) -> tuple[str, str]:
    """How a deletion is recorded (ChannelRegistry.mark_gone): the Slack file deleted everywhere, or one
    message holding it deleted (the same file shared again in a new message is remembered)."""
    return file_id, f"{channel}/{file_id}/{message_ts}"


class Remembered:
    def __init__(self, store: Store, registry: ChannelRegistry, shared: bool = False):
        """`shared`: other processes (the bot's replicas) search the same store, so every write is made
        visible to them at once (Elasticsearch refreshes about every second otherwise, later when idle)."""
        self.store = store
        self.registry = registry
        self.shared = shared

    def active(self, channel: str | None) -> bool:
        """Whether `channel`'s posted images are remembered (and so may be searched in it)."""
        return bool(channel) and self.registry.channel(str(channel)) is not None

    def add(self, items: Sequence[tuple[ImageDoc, Posted]], model_id: str) -> None:
        """Postings with their vectors. Postings first: a document without one is never shown, so a
        failure between the two writes leaves nothing visible half-made."""
        if not items:
            return
        self.registry.add_posted([p for _, p in items])
        if self.store.get_meta(META_IMAGE_MODEL) is None:
            self.store.set_meta(META_IMAGE_MODEL, model_id)
        self.store.upsert([doc for doc, _ in items])
        self._visible()
        # A channel forgotten or a file deleted while these were being made: what was just written goes
        # too (checked after the write, so a deletion racing it cannot leave anything behind).
        gone = self.deleted([p for _, p in items])
        self.forget_postings([p for _, p in items if not self.active(p.channel) or p.image_id in gone])

    def deleted(self, postings: Sequence[Posted]) -> set[str]:
        """The image ids of these postings whose file, or whose message, was deleted in Slack."""
        keys = {k: p.image_id for p in postings for k in gone_keys(p.channel, p.file_id, p.message_ts)}
        return {keys[k] for k in self.registry.gone(list(keys), time.time())}

    def forget_deleted(self, keys: Sequence[str]) -> None:
        """Slack files (or messages: `gone_keys`) deleted: recorded first, so a posting of them waiting to
        be remembered is not remembered later."""
        self.registry.mark_gone(keys, time.time(), GONE_KEPT_SECONDS)

    def forget_channel(self, channel: str) -> int:
        """Everything remembered from the channel, gone; how many images that was. The state goes first,
        so nothing posted meanwhile is remembered again."""
        image_ids = {p.image_id for p in self.registry.posted_in(channel)}
        # Documents whose posting was lost (a failed write): found by their path's channel folder.
        image_ids |= {s.image_id for path, s in self.store.file_states().items() if path.startswith(channel + "/")}
        self.registry.drop_channel(channel)
        self.store.delete(sorted(image_ids))
        self._visible()
        return len(image_ids)

    def forget_everything(self) -> tuple[int, int]:
        """Everything remembered from Slack (the app uninstalled, its token revoked): every channel's state
        first (nothing posted meanwhile is remembered again), every posting, kept event and deletion
        record, then every image, also one whose posting was lost. How many channels and images."""
        channels = len(self.registry.channels())
        image_ids = {s.image_id for s in self.store.file_states().values()}
        self.registry.erase_all()
        self.store.delete(sorted(image_ids))
        self._visible()
        return channels, len(image_ids)

    def forget_file(self, file_id: str, channel: str | None = None) -> int:
        """A Slack file deleted or changed: its postings (in `channel`, or everywhere), gone."""
        postings = [p for p in self.registry.posted_as(file_id) if channel is None or p.channel == channel]
        return self.forget_postings(postings)

    def forget_postings(self, postings: Iterable[Posted]) -> int:
        ids = sorted({p.image_id for p in postings})
        if ids:
            self.store.delete(ids)
            self.registry.drop_posted(ids)
            self._visible()
        return len(ids)

    def _visible(self) -> None:
        """Writes seen by every replica now (Elasticsearch: a refresh). The embedded store's readers see
        each commit anyway, and its snapshot is left to the next start (two writers must not save it)."""
        if self.shared:
            self.store.checkpoint()

    def visible_in(self, channel: str, *rankings: Sequence[Match]) -> list[list[Match]]:
        """Each ranking with only the matches whose posting belongs to `channel`, each carrying it; any
        other is dropped (the store's folder filter is the first guard, this the second: the posting
        itself must name the channel). One registry look-up for all of them."""
        postings = self.registry.posted({m.image_id for ranking in rankings for m in ranking})

        def shown(match: Match) -> Match | None:
            posted = postings.get(match.image_id)
            if posted is None or posted.channel != channel or not match.relative_path.startswith(channel + "/"):
                return None
            return replace(match, posted=posted)

        return [[m for m in map(shown, ranking) if m is not None] for ranking in rankings]

    def get(self, image_id: str, channel: str) -> ImageDoc | None:
        """A remembered image's document, only for a query in its own channel."""
        posted = self.registry.posted([image_id]).get(image_id)
        if posted is None or posted.channel != channel:
            return None
        return self.store.get(image_id)

    def channel(self, channel: str) -> ChannelState | None:
        return self.registry.channel(channel)

    def close(self) -> None:
        self.store.close()
        self.registry.close()
