"""What the handlers share: built once per process by the app factory (bot.app), reached by every listener
through Bolt's context."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from findimage.config import Settings
from findimage.i18n import Language
from findimage.query import default_k
from findimage.remembered import Remembered
from findimage.search import Searcher
from findimage.stores.base import SeenKeys

from .channel_memory import ChannelMemory
from .channels import ChannelPolicy
from .delivery import Presenter
from .options import IN_SLACK
from .replies import usage_text
from .work import WorkPool


@dataclass(frozen=True)
class Services:
    settings: Settings
    searcher: Searcher
    presenter: Presenter
    work: WorkPool
    seen: SeenKeys  # in memory, or shared by the replicas through Elasticsearch
    policy: ChannelPolicy
    remembered: Remembered | None = None  # images remembered from channels (FINDIMAGE_REMEMBER)
    memory: ChannelMemory | None = None  # remembering, the backfill, forgetting

    def usage(self, said: Language) -> str:
        return usage_text(said, default_k(self.settings, IN_SLACK),
                          self.settings.backfill_days if self.memory else None)


def services_of(context: Mapping[str, Any]) -> Services:
    """The services a listener gets through Bolt's context (put there by bot.handlers.register_all)."""
    services: Services = context["services"]
    return services
