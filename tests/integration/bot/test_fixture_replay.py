"""Every payload in tests/fixtures/slack/ that the bot handles (recorded or documented by Slack and its SDKs,
re-typed with the test workspace's ids), replayed through the real app over HTTP and over Socket Mode,
with the answer a user would see checked.

Only Slack's hosts are rewritten (``SlackEmulator.adopt``: files.slack.com and hooks.slack.com point at the
emulator); a fixture's fields are delivered as they are.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from bot_support import ALICE, png_bytes, serve_bot, slack_env, stored_vectors
from photos import jpeg_bytes, save_photo
from slack_emulator import SlackEmulator
from slack_emulator.fixtures import fixture

from bot.app import create_app
from bot.handlers.shortcut import NO_IMAGES
from bot.work import WorkPool
from findimage.config import load_settings
from findimage.records import ImageDoc, Posted, image_id_for, posted_path
from findimage.stores.base import ChannelState
from indexer.run import index_once

MODES = ("http", "socket")


@pytest.fixture(scope="module")
def emu():
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def settings(tmp_path_factory, test_models, emu):
    root = tmp_path_factory.mktemp("replay")
    for i in range(4):
        save_photo(root / "archive" / "events" / "2024" / f"stage-{i}.jpg", seed=100 + i)
    for i in range(3):
        save_photo(root / "archive" / "nature" / f"mountain-{i}.png", seed=200 + i, size=(320, 240))
    env = {"FINDIMAGE_ARCHIVE": str(root / "archive"), "FINDIMAGE_DATA_DIR": str(root / "data"),
           "FINDIMAGE_IMAGE_MODEL": str(test_models["image"]), "FINDIMAGE_TEXT_MODEL": str(test_models["text"]),
           "FINDIMAGE_BATCH_SIZE": "8", **slack_env(emu)}
    loaded = load_settings(env, env_file=None)
    assert index_once(loaded, progress=False).added == 7
    return loaded


@pytest.fixture(scope="module")
def bots(settings, emu):
    """The app served over HTTP, and the same app connected over Socket Mode, both talking to `emu`."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    socket_work = WorkPool.from_settings(settings)
    with serve_bot(settings) as http_bot:
        app = create_app(settings, work=socket_work)
        handler = SocketModeHandler(app, emu.app_token)
        handler.connect()
        try:
            emu.wait_for_socket_client(timeout=30)
            yield {"http": http_bot, "socket": handler, "pools": (http_bot.work, socket_work)}
        finally:
            handler.close()
            socket_work.shutdown(wait=False)
            if app.services.memory is not None:
                app.services.memory.stop()


def settled(emu, bots) -> None:
    """Until both apps have finished every answer they accepted (so one case's answer cannot leak into the next)."""
    emu.wait_for(lambda: all(pool.pending == 0 for pool in bots["pools"]), 20, "the answers to finish")


@dataclass
class Delivery:
    kind: str  # "events_api", "slash_commands" or "interactive"
    payload: dict


def deliver(emu, bots, mode: str, delivery: Delivery):
    """Send a payload as Slack does in `mode`; the ack's text (a command's answer in its ack), if any."""
    payload = emu.adopt(delivery.payload)
    if mode == "socket":
        ack = emu.wait_for_ack(emu.socket_send(delivery.kind, payload), timeout=10)
        return (ack.payload or {}).get("text")
    url = bots["http"].events_url
    send = {"events_api": emu.send_envelope, "slash_commands": emu.send_command_payload,
            "interactive": emu.send_interaction}[delivery.kind]
    answer = send(url, payload)
    assert answer.status == 200, answer.body
    return answer.body or None


def barrier(emu, bots, mode: str, seed: int) -> None:
    """A photo posted elsewhere and answered: whatever was delivered before it has been handled."""
    photo = emu.add_file(jpeg_bytes(seed=seed), "barrier.jpg", user=ALICE)
    posted = emu.post_user_message_with_files("C0BARRIER", [photo], user=ALICE)
    deliver(emu, bots, mode, Delivery("events_api", emu.event_callback(posted)))
    emu.wait_for_upload("C0BARRIER", thread_ts=posted["ts"], timeout=20)


def archive_image_id(settings) -> str:
    paths, _ = stored_vectors(settings)
    return image_id_for(sorted(paths)[0])


def with_button_value(payload: dict, value: str) -> dict:
    """The fixture's click, on a button whose value is an image of this archive (re-typed like the ids)."""
    payload = copy.deepcopy(payload)
    payload["actions"][0]["value"] = value
    for block in (payload.get("message") or {}).get("blocks", []):
        for element in block.get("elements", []):
            element["value"] = value
    return payload


def photo_file(emu, name: str, file_id: str, seed: int) -> None:
    emu.add_file(png_bytes(size=(320, 240), color=("red", "green", "blue")[seed % 3]), name, "image/png",
                 user=ALICE, file_id=file_id)


# ---- the cases: how each fixture is prepared, delivered and answered -------------------------------------

def posted_photo(emu, bots, mode, settings):
    photo_file(emu, "photo.png", "F0PHOTO001", 1)
    envelope = fixture("events/message_file_share")
    deliver(emu, bots, mode, Delivery("events_api", envelope))
    answer = emu.wait_for_upload("C0PHOTOS", thread_ts=envelope["event"]["ts"], timeout=20)
    assert answer.initial_comment.startswith("Archive images most similar to `photo.png`:")
    assert len(answer.files) == 5
    assert [c.params["user"] for c in emu.api_calls("users.info")] == [ALICE], "the event names no team"


def stripped_photo(emu, bots, mode, settings):
    photo_file(emu, "connect.png", "F0PHOTO002", 2)
    emu.add_conversation("D0ALICE000", "im", user=ALICE)
    envelope = fixture("events/message_file_share_slack_connect")
    deliver(emu, bots, mode, Delivery("events_api", envelope))
    answer = emu.wait_for_upload("D0ALICE000", thread_ts=envelope["event"]["ts"], timeout=20)
    assert [c.params["file"] for c in emu.api_calls("files.info")] == ["F0PHOTO002"]
    assert answer.initial_comment.startswith("Archive images most similar to `connect.png`:")


def ignored(name: str, seed: int, prepare: Callable = lambda emu: None):
    def case(emu, bots, mode, settings):
        prepare(emu)
        deliver(emu, bots, mode, Delivery("events_api", fixture(name)))
        barrier(emu, bots, mode, seed)
        assert [u.channel for u in emu.uploads()] == ["C0BARRIER"]
        assert [m.text for m in emu.messages() if m.channel != "C0BARRIER"] == []
        assert emu.api_calls("files.info") == [] and len({d.file_id for d in emu.downloads()}) == 1
    return case


def home_opened(name: str):
    def case(emu, bots, mode, settings):
        deliver(emu, bots, mode, Delivery("events_api", fixture(name)))
        home = emu.wait_for_view(ALICE, containing="Images indexed:* 7", timeout=20)
        assert "home_example:1" in str(home.blocks)
    return case


def slash_command(emu, bots, mode, settings):
    ack = deliver(emu, bots, mode, Delivery("slash_commands", fixture("commands/slash_command")))
    answer = emu.wait_for_upload("C0PHOTOS", timeout=20)
    assert ack == "Searching the archive for `stage with red lights`…"
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive for `stage with red lights`")
    assert len(answer.files) == 5 and answer.thread_ts is None


def more_like_this(name: str, thread_ts):
    def case(emu, bots, mode, settings):
        payload = with_button_value(fixture(name), archive_image_id(settings))
        deliver(emu, bots, mode, Delivery("interactive", payload))
        answer = emu.wait_for_upload("C0PHOTOS", timeout=20)
        assert answer.initial_comment.startswith(f"<@{ALICE}> asked for more like")
        assert answer.thread_ts == thread_ts
    return case


def home_example(emu, bots, mode, settings):
    deliver(emu, bots, mode, Delivery("interactive", fixture("interactivity/block_actions_home")))
    answer = emu.wait_for_upload(emu.dm_channel(ALICE), timeout=20)
    assert answer.initial_comment.startswith(f"<@{ALICE}> searched the archive for `a snow covered mountain`")


def shortcut_without_images(emu, bots, mode, settings):
    payload = fixture("interactivity/message_action")
    deliver(emu, bots, mode, Delivery("interactive", payload))
    note = emu.wait_for(lambda: emu.responses(), 20, "the shortcut's note")[0]
    assert note.ephemeral and note.text == NO_IMAGES


def shortcut_on_a_photo(emu, bots, mode, settings):
    """The shortcut's fixture on the message of events/message_file_share.json (as the channel shows it)."""
    photo_file(emu, "photo.png", "F0PHOTO001", 3)
    payload = fixture("interactivity/message_action")
    message = fixture("events/message_file_share")["event"]
    payload["message"] = {k: v for k, v in message.items() if k not in ("channel", "event_ts", "channel_type")}
    payload.update(message_ts=message["ts"], trigger_id="111.222.yyy")  # every interaction has its own
    deliver(emu, bots, mode, Delivery("interactive", payload))
    answer = emu.wait_for_upload("C0PHOTOS", thread_ts=message["ts"], timeout=20)
    assert answer.initial_comment.startswith("Archive images most similar to `photo.png`:")


# ---- remembered channels: each event forgets what it must, and nothing else -------------------------------

def remembered(bots):
    return bots["http"].searcher.remembered


def remembering(bots, channel: str, file_id: str = "F0REMEMB01", sha256: str = "sha-before") -> Posted:
    """`channel` remembered, with one posting of `file_id` in it (its vector made up: no image is read)."""
    memory = remembered(bots)
    now = time.time()
    memory.registry.save_channel(ChannelState(channel, ALICE, now, now - 86_400, done=True))
    posted = Posted(channel, file_id, f"{now:.6f}", ALICE, "", "photo.png")
    vector = np.random.default_rng(5).standard_normal(512).astype(np.float32)
    model = bots["http"].searcher.image_embedder.model_id
    memory.add([(ImageDoc(posted.image_id, "photo.png", posted_path(channel, file_id, "photo.png"),
                          vector / np.linalg.norm(vector), sha256, 1, now, 1, 1, now, model, None, "slack"), posted)],
               model)
    return posted


def forgets_channel(name: str, channel: str):
    def case(emu, bots, mode, settings):
        posted = remembering(bots, channel)
        deliver(emu, bots, mode, Delivery("events_api", fixture(name)))
        # the channel goes first (nothing new is remembered), then what it held
        emu.wait_for(lambda: remembered(bots).channel(channel) is None
                     and remembered(bots).store.get(posted.image_id) is None, 20, f"{channel} forgotten")
        assert remembered(bots).registry.posted_in(channel) == []
    return case


def forgets_the_file(emu, bots, mode, settings):
    posted = remembering(bots, "C0PHOTOS", "F0PHOTO001")
    deliver(emu, bots, mode, Delivery("events_api", fixture("events/file_deleted")))
    emu.wait_for(lambda: remembered(bots).registry.posted_as("F0PHOTO001") == [], 20, "the file forgotten")
    assert remembered(bots).store.get(posted.image_id) is None and remembered(bots).channel("C0PHOTOS") is not None
    remembered(bots).forget_channel("C0PHOTOS")


def remembers_the_changed_file(emu, bots, mode, settings):
    photo_file(emu, "photo.png", "F0PHOTO001", 4)
    posted = remembering(bots, "C0PHOTOS", "F0PHOTO001")
    deliver(emu, bots, mode, Delivery("events_api", fixture("events/file_change")))
    def again():
        doc = remembered(bots).store.get(posted.image_id)
        return doc is not None and doc.sha256 != "sha-before"

    emu.wait_for(again, 20, "the file remembered again as it is now")
    assert [p.channel for p in remembered(bots).registry.posted_as("F0PHOTO001")] == ["C0PHOTOS"]
    remembered(bots).forget_channel("C0PHOTOS")


def forgets_everything(name: str):
    """Uninstalled, or the bot's token revoked: every remembered channel forgotten, with all it held."""
    def case(emu, bots, mode, settings):
        postings = [remembering(bots, "C0PHOTOS"), remembering(bots, "G0PRIVATE", "F0REMEMB02")]
        # What each app answered before: Slack's ids, forgotten by the app that applies the uninstall.
        seen = [bots["http"].wsgi.routes.slack.app.services.seen, bots["socket"].app.services.seen]
        assert all(s.first_time(f"event:{name}:{mode}") for s in seen)
        deliver(emu, bots, mode, Delivery("events_api", fixture(name)))
        emu.wait_for(lambda: remembered(bots).registry.channels() == [] and remembered(bots).store.count() == 0,
                     20, "everything remembered deleted")
        assert all(remembered(bots).store.get(p.image_id) is None for p in postings)
        # The app forgets what it answered right after the store; wait for that step too rather than race it.
        emu.wait_for(lambda: any(s.first_time(f"event:{name}:{mode}") for s in seen), 20,
                     "what the app answered forgotten")
        assert remembered(bots).registry.posted_in("C0PHOTOS") == remembered(bots).registry.posted_in("G0PRIVATE") == []
    return case


def keeps_everything(name: str, seed: int):
    """An edit, or the deletion of a message without files: nothing remembered changes."""
    def case(emu, bots, mode, settings):
        posted = remembering(bots, "C0PHOTOS")
        ignored(name, seed)(emu, bots, mode, settings)
        assert remembered(bots).store.get(posted.image_id) is not None
        remembered(bots).forget_channel("C0PHOTOS")
    return case


CASES = {
    "events/message_file_share": posted_photo,
    "events/message_file_share_slack_connect": stripped_photo,
    "events/message_slack_connect": ignored("events/message_slack_connect", 950,
                                            lambda emu: emu.share_channel_externally("C0CONNECT")),
    "events/message": ignored("events/message", 951),
    "events/message_bot_other_app": ignored("events/message_bot_other_app", 952),
    "events/message_file_share_bot": ignored(
        "events/message_file_share_bot", 955,
        lambda emu: emu.add_file(jpeg_bytes(seed=956), "match.png", "image/png", user="U0OTHERBOT",
                                 file_id="F0OTHER001")),
    "events/message_own_bot": ignored("events/message_own_bot", 953),
    "events/message_replied": ignored("events/message_replied", 954),
    "events/app_home_opened": home_opened("events/app_home_opened"),
    "events/app_home_opened_view": home_opened("events/app_home_opened_view"),
    "commands/slash_command": slash_command,
    "interactivity/block_actions": more_like_this("interactivity/block_actions", None),
    "interactivity/block_actions_in_thread": more_like_this("interactivity/block_actions_in_thread",
                                                            "1678252100.000100"),
    "interactivity/block_actions_thread_parent": more_like_this("interactivity/block_actions_thread_parent", None),
    "interactivity/block_actions_home": home_example,
    "interactivity/message_action": shortcut_without_images,
    "interactivity/message_action+events/message_file_share": shortcut_on_a_photo,
    # last: their barriers look the user's team up, which the cases above expect to see happen
    "events/file_change": remembers_the_changed_file,
    "events/file_deleted": forgets_the_file,  # after file_change: a deleted file never changes again
    "events/message_deleted": keeps_everything("events/message_deleted", 957),
    "events/message_changed": keeps_everything("events/message_changed", 958),
    "events/channel_archive": forgets_channel("events/channel_archive", "C0PHOTOS"),
    "events/channel_deleted": forgets_channel("events/channel_deleted", "C0PHOTOS"),
    "events/channel_left": forgets_channel("events/channel_left", "C0PHOTOS"),
    "events/member_left_channel": forgets_channel("events/member_left_channel", "C0PHOTOS"),
    "events/group_archive": forgets_channel("events/group_archive", "G0PRIVATE"),
    "events/group_deleted": forgets_channel("events/group_deleted", "G0PRIVATE"),
    "events/group_left": forgets_channel("events/group_left", "G0PRIVATE"),
    "events/app_uninstalled": forgets_everything("events/app_uninstalled"),
    "events/tokens_revoked": forgets_everything("events/tokens_revoked"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_real_payload_is_answered_as_slack_users_expect(case, mode, bots, emu, settings):
    settled(emu, bots)
    emu.clear_records()
    CASES[case](emu, bots, mode, settings)


def test_every_payload_the_bot_handles_is_replayed():
    handled = {name for name in CASES for name in name.split("+")}
    from slack_emulator.fixtures import names

    payloads = {n for n in names() if n.split("/")[0] in ("events", "commands", "interactivity")}
    assert payloads <= handled, payloads - handled
