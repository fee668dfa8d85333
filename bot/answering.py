"""The answers themselves, run on the work pool after the ack: search, then show, errors always answered."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.config import Settings
from findimage.remembered import Remembered
from findimage.search import Searcher, SearchResult, empty_result_sentence
from findimage.stores.base import SeenKeys
from findimage.visibility import Place, Purpose

from . import slack_files
from .buttons import BadButton, Page
from .channel_memory import ChannelMemory
from .channels import ChannelPolicy, Lookup, Requester, refusal_text
from .delivery import Presenter, Target
from .errors import user_message
from .metrics import counted, timed
from .options import MAX_K, TextQuery
from .replies import Answer, image_heading, more_heading, similar_heading, text_heading, usage_text
from .untrusted import escape
from .work import BUSY_TEXT, WorkPool

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the handlers share: built once per process by the app factory."""

    settings: Settings
    searcher: Searcher
    presenter: Presenter
    work: WorkPool
    seen: SeenKeys  # in memory, or shared by the replicas through Elasticsearch
    policy: ChannelPolicy
    remembered: Remembered | None = None  # images remembered from channels (FINDIMAGE_REMEMBER)
    memory: ChannelMemory | None = None  # remembering, the backfill, forgetting

    def usage(self) -> str:
        return usage_text(self.settings.top_k, self.settings.backfill_days if self.memory else None)

    @property
    def max_image_bytes(self) -> int:
        return int(self.settings.max_image_mb * 1_000_000)


def services_of(context) -> Services:
    """The services a listener gets through Bolt's context (put there by bot.handlers.register_all)."""
    return context["services"]


# Each answer returns what became of the request (one of bot.metrics.OUTCOMES), which bot.metrics counts.

def answer_text_query(services: Services, client: WebClient, query: TextQuery, requester: Requester,
                      target: Target) -> str:
    page = Page(k=query.k, text=query.text, folder=query.folder, options=_extra_options(query))
    return answer_page(services, client, page, requester, target)


def answer_page(services: Services, client: WebClient, page: Page, requester: Requester, target: Target) -> str:
    """One page of a text or archive-image query ("More like this", "Show more"), with its buttons."""
    sight = services.policy.sight(client, Purpose.ANSWER, Place.of(target.channel_id), requester)
    if sight.refusal is not None:
        tell_safely(target, refusal_text(Purpose.ANSWER, sight.refusal))
        return "refused"
    channel = sight.channel
    user_id = requester.user_id
    if user_id is None:  # Slack names the user of every command and click; the heading names them too
        log.warning("a query without a user; not answering it")
        return "ignored"
    try:
        services.searcher.check_model()
        if page.text is not None:
            heading, result = _text_page(services, page, page.text, user_id, channel)
        elif page.image_id is not None:
            heading, result = _image_page(services, page, page.image_id, user_id, channel)
        else:
            raise BadButton("a page needs a text or an image id")
    except Exception as exc:
        tell_safely(target, user_message(exc))
        return "failed"
    if not result.matches:
        tell_safely(target, _nothing_sentence(services, page, result))
        return "empty"
    return show_safely(services, [Answer(heading, result, first_rank=page.skip + 1,
                                         next_page=_next_page(services, page, len(result.matches)))], target)


def _text_page(services: Services, page: Page, text: str, user_id: str,
               channel: str | None) -> tuple[str, SearchResult]:
    result = services.searcher.by_text(text, page.k, page.filters, skip=page.skip, channel=channel)
    if page.skip == 0:
        return text_heading(user_id, text, page.folder), result
    return more_heading(user_id, page, text, len(result.matches)), result


def _image_page(services: Services, page: Page, image_id: str, user_id: str,
                channel: str | None) -> tuple[str, SearchResult]:
    result = services.searcher.by_image_id(image_id, page.k, page.filters, skip=page.skip, channel=channel)
    about = result.query_path or image_id  # by_image_id names the image by its archive path
    if page.skip == 0:
        return similar_heading(user_id, about), result
    return more_heading(user_id, page, about, len(result.matches)), result


def _next_page(services: Services, page: Page, found: int) -> Page | None:
    """The following page, while this one was full and FINDIMAGE_MAX_RESULTS is not reached."""
    shown = page.skip + page.k
    if found < page.k or shown >= services.settings.max_results:
        return None
    return dataclasses.replace(page, skip=shown, k=min(page.k, services.settings.max_results - shown))


def _nothing_sentence(services: Services, page: Page, result: SearchResult) -> str:
    if page.skip:
        return "There are no further matches for this query."
    return escape(empty_result_sentence(result, services.searcher.store))


def _extra_options(query: TextQuery) -> dict:
    """TextQuery fields beyond text, k and folder, for "Show more" to repeat the query exactly."""
    extra = {f.name: getattr(query, f.name) for f in dataclasses.fields(query) if f.name not in ("text", "k", "folder")}
    return {name: value for name, value in extra.items() if value is not None}


def answer_posted_images(services: Services, files: list[dict], requester: Requester, target: Target,
                         lookup: Lookup = Lookup.CACHED) -> str:
    """A message's images, answered together in one reply to its thread.

    Stripped file objects (Slack Connect) are completed with files.info first, so whether the message
    holds any image is known before anything is said: a message without images gets no reply ("ignored"),
    and only a message with images gets a refusal where the archive may not be shown."""
    client = target.client
    completed = [_completed(client, file) for file in files]
    wanted = [(file, problem) for file, problem in completed if problem is not None or slack_files.is_image_file(file)]
    if not wanted:
        return "ignored"
    sight = services.policy.sight(client, Purpose.ANSWER, Place.of(target.channel_id), requester, lookup)
    if sight.refusal is not None:
        log.info("image(s) of %s in %s not searched: %s", requester.user_id, target.channel_id, sight.refusal.value)
        tell_safely(target, refusal_text(Purpose.ANSWER, sight.refusal))
        return "refused"
    channel = sight.channel
    answered = [_answer_one_image(services, client, file, channel) if problem is None
                else (Answer(image_heading(_display_name(file)),
                             instead=user_message(problem, subject=_display_name(file))), True)
                for file, problem in wanted]
    answers = [answer for answer, _ in answered]
    if all(a.result is None for a in answers):
        tell_safely(target, _reasons(answers))
        return "failed" if any(failed for _, failed in answered) else "empty"
    return show_safely(services, answers, target)


def _reasons(answers: list[Answer]) -> str:
    """No image could be searched: just why, per image when there were several."""
    if len(answers) == 1 and answers[0].instead is not None:
        return answers[0].instead
    return "\n\n".join(f"{a.heading}\n{a.instead}" for a in answers)


def _answer_one_image(services: Services, client: WebClient, file: dict,
                      channel: str | None) -> tuple[Answer, bool]:
    """The image's answer, and whether it is an error (not just no match)."""
    name = _display_name(file)
    try:
        if client.token is None:  # the app's client is made with SLACK_BOT_TOKEN
            raise RuntimeError("the Slack client has no bot token to download images with")
        data = slack_files.fetch(file, client.token, services.max_image_bytes, services.settings.slack_api_url)
        services.searcher.check_model()
        k = min(services.settings.top_k, MAX_K)
        result = services.searcher.by_image_bytes(data, k + 1, channel=channel)
        # The posted image itself, once remembered, is not an answer to itself.
        result.matches = [m for m in result.matches if not (m.posted and m.posted.file_id == file.get("id"))][:k]
    except Exception as exc:
        return Answer(image_heading(name), instead=user_message(exc, subject=name)), True
    if not result.matches:
        nothing = escape(empty_result_sentence(result, services.searcher.store))
        return Answer(image_heading(name), instead=nothing), False
    return Answer(image_heading(name), result), False


def _display_name(file: dict) -> str:
    return file.get("name") or file.get("title") or file.get("id", "image")


def _completed(client: WebClient, file: dict) -> tuple[dict, Exception | None]:
    """The whole file object (files.info for a stripped one), or the file as given and why it could not be had."""
    if not slack_files.needs_file_info(file):
        return file, None
    try:
        return client.files_info(file=file["id"])["file"], None
    except SlackApiError as exc:
        log.info("files.info for %s failed: %s", file.get("id"), exc.response.get("error"))
        if exc.response.get("error") == "missing_scope":
            return file, slack_files.LoginPageInstead(
                "I may not read files here: the findimage app lacks the `files:read` permission. Ask a "
                "workspace admin to add the `files:read` bot scope (OAuth & Permissions) and reinstall it.")
        return file, exc
    except Exception as exc:
        return file, exc


def show_safely(services: Services, answers: list[Answer], target: Target) -> str:
    try:
        services.presenter.show(answers, target)
    except Exception as exc:
        tell_safely(target, user_message(exc))
        return "failed"
    return "answered"


def submit_or_busy(services: Services, kind: str, target: Target, job: Callable[..., str | None],
                   *args: object) -> None:
    """Queue the job, the answer to a request of `kind` (bot.metrics); when the work pool refuses it (full),
    say so now instead of answering late."""
    if services.work.submit(timed(kind, job), *args) is False:
        counted(kind, "busy")
        tell_safely(target, BUSY_TEXT)


def tell_safely(target: Target, text: str) -> None:
    """The last way to reach the user; if Slack refuses even this, the log is all that is left."""
    try:
        target.tell(text)
    except Exception:
        log.exception("could not deliver the message %r", text[:200])
