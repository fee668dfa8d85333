"""The answers themselves, run on the work pool after the ack: search, then show, errors always answered."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from findimage.duplicates import duplicate_groups
from findimage.i18n import N_, Language
from findimage.query import Filters, Query
from findimage.search import SearchResult, empty_result_sentence
from findimage.visibility import Purpose

from . import slack_files
from .channels import Asking, refusal_text
from .delivery import Target
from .errors import user_message
from .metrics import counted, timed
from .replies import Answer, duplicates_text, image_heading, more_heading, similar_heading, text_heading
from .services import Services
from .untrusted import escape
from .work import BUSY_TEXT

log = logging.getLogger(__name__)


# Each answer returns what became of the request (one of bot.metrics.OUTCOMES), which bot.metrics counts.

def answer_query(services: Services, query: Query, asking: Asking, target: Target) -> str:
    """A text or an archive image's query (the command, "More like this", "Show more", the Home tab's
    examples), one page of it with its buttons, where `asking` may see it."""
    said = asking.language(target.client)
    sight = asking.sight(target.client)
    if sight.refusal is not None:
        tell_safely(target, refusal_text(Purpose.ANSWER, sight.refusal, said))
        return "refused"
    user_id = asking.requester.user_id if asking.requester is not None else None
    if user_id is None:  # Slack names the user of every command and click; the heading names them too
        log.warning("a query without a user; not answering it")
        return "ignored"
    try:
        services.searcher.check_model()
        result = services.searcher.search(query, channel=sight.channel)
    except Exception as exc:
        tell_safely(target, user_message(exc, said))
        return "failed"
    if not result.matches:
        tell_safely(target, _nothing_sentence(services, query, result, said))
        return "empty"
    following = query.following(len(result.matches), services.settings.max_results)
    return show_safely(services, [Answer(_heading(query, result, user_id, said), result, first_rank=query.skip + 1,
                                         next_page=following, said=said)], target, said)


SHOWN_GROUPS = 10  # the duplicates report in Slack: the groups whose copies take the most space


def answer_duplicates(services: Services, filters: Filters, asking: Asking, target: Target) -> str:
    """`/findimage duplicates`: the groups of near-identical archive images (under the folder of `filters`),
    only to the person who asked, where the archive may be shown to them (never a channel's remembered
    images)."""
    said = asking.language(target.client)
    folder = filters.folder
    sight = asking.sight(target.client)
    if sight.refusal is not None:
        tell_safely(target, refusal_text(Purpose.ANSWER, sight.refusal, said))
        return "refused"
    try:
        groups = duplicate_groups(services.searcher.store, folder)
    except Exception as exc:
        tell_safely(target, user_message(exc, said))
        return "failed"
    tell_safely(target, duplicates_text(groups, folder, SHOWN_GROUPS, said))
    return "answered" if groups else "empty"


def _heading(query: Query, result: SearchResult, user_id: str, said: Language) -> str:
    if query.text is not None:
        about = query.text
        if query.skip == 0:
            return text_heading(user_id, about, query.folder, said)
    else:
        about = result.query_path or query.image_id or ""  # the archive path of the image asked about
        if query.skip == 0:
            return similar_heading(user_id, about, said)
    return more_heading(user_id, query, about, len(result.matches), said)


def _nothing_sentence(services: Services, query: Query, result: SearchResult, said: Language) -> str:
    if query.skip:
        return said._("There are no further matches for this query.")
    return escape(empty_result_sentence(result, services.searcher.store, said))


def answer_posted_images(services: Services, files: list[dict], query: Query, asking: Asking,
                         target: Target) -> str:
    """A message's images, answered together in one reply to its thread, each with `query` (how many).

    Stripped file objects (Slack Connect) are completed with files.info first, so whether the message
    holds any image is known before anything is said: a message without images gets no reply ("ignored"),
    and only a message with images gets a refusal where the archive may not be shown."""
    client = target.client
    completed = [_completed(client, file) for file in files]
    wanted = [(file, problem) for file, problem in completed if problem is not None or slack_files.is_image_file(file)]
    if not wanted:
        return "ignored"
    said = asking.language(client)  # the poster's (or the shortcut's user's), also in the channel's thread
    sight = asking.sight(client)
    if sight.refusal is not None:
        log.info("image(s) of %s in %s not searched: %s", asking.requester.user_id if asking.requester else None,
                 target.channel_id, sight.refusal.value)
        tell_safely(target, refusal_text(Purpose.ANSWER, sight.refusal, said))
        return "refused"
    channel = sight.channel
    answered = [_answer_one_image(services, client, file, query, channel, said) if problem is None
                else (Answer(image_heading(_display_name(file), said),
                             instead=user_message(problem, said, subject=_display_name(file)), said=said), True)
                for file, problem in wanted]
    answers = [answer for answer, _ in answered]
    if all(a.result is None for a in answers):
        tell_safely(target, _reasons(answers))
        return "failed" if any(failed for _, failed in answered) else "empty"
    return show_safely(services, answers, target, said)


def _reasons(answers: list[Answer]) -> str:
    """No image could be searched: just why, per image when there were several."""
    if len(answers) == 1 and answers[0].instead is not None:
        return answers[0].instead
    return "\n\n".join(f"{a.heading}\n{a.instead}" for a in answers)


def _answer_one_image(services: Services, client: WebClient, file: dict, query: Query,
                      channel: str | None, said: Language) -> tuple[Answer, bool]:
    """The image's answer, and whether it is an error (not just no match)."""
    name = _display_name(file)
    settings = services.settings
    try:
        if client.token is None:  # the app's client is made with SLACK_BOT_TOKEN
            raise RuntimeError("the Slack client has no bot token to download images with")
        data = slack_files.fetch(file, client.token, settings.max_image_bytes, settings.slack_api_url)
        services.searcher.check_model()
        # One more: the posted image itself, once remembered, is not an answer to itself.
        result = services.searcher.search(dataclasses.replace(query, k=query.k + 1), channel=channel, example=data)
        result.matches = [m for m in result.matches if not (m.posted and m.posted.file_id == file.get("id"))][:query.k]
        # The picture's own posting, once remembered, is no repost of it.
        result.reposts = [m for m in result.reposts if not (m.posted and m.posted.file_id == file.get("id"))]
    except Exception as exc:
        return Answer(image_heading(name, said), instead=user_message(exc, said, subject=name), said=said), True
    if not result.matches:
        nothing = escape(empty_result_sentence(result, services.searcher.store, said))
        return Answer(image_heading(name, said), instead=nothing, said=said), False
    return Answer(image_heading(name, said), result, said=said), False


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
            return file, slack_files.LoginPageInstead(N_(
                "I may not read files here: the findimage app lacks the `files:read` permission. Ask a "
                "workspace admin to add the `files:read` bot scope (OAuth & Permissions) and reinstall it."))
        return file, exc
    except Exception as exc:
        return file, exc


def show_safely(services: Services, answers: list[Answer], target: Target, said: Language) -> str:
    try:
        services.presenter.show(answers, target)
    except Exception as exc:
        tell_safely(target, user_message(exc, said))
        return "failed"
    return "answered"


def submit_or_busy(services: Services, kind: str, target: Target, said: Language, job: Callable[..., str | None],
                   *args: object) -> None:
    """Queue the job, the answer to a request of `kind` (bot.metrics); when the work pool refuses it (full),
    say so now (in `said`) instead of answering late."""
    if services.work.submit(timed(kind, job), *args) is False:
        counted(kind, "busy")
        tell_safely(target, said._(BUSY_TEXT))


def tell_safely(target: Target, text: str) -> None:
    """The last way to reach the user; if Slack refuses even this, the log is all that is left."""
    try:
        target.tell(text)
    except Exception:
        log.exception("could not deliver the message %r", text[:200])
