"""`findimage`: index the archive, search it, keep it current, show status, run the Slack bot."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from findimage import __version__, process
from findimage.config import Settings, load_settings_or_report
from findimage.errors import EXIT_ERROR, EXIT_OK, EXIT_PIPE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, FindimageError
from findimage.logs import printable, tell

if TYPE_CHECKING:  # the commands import what they use when they run: `findimage --help` stays quick
    from findimage.records import Match

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]
log = logging.getLogger("findimage")


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a reader gone away is noticed here
        return code
    except BrokenPipeError:  # whoever read the output stopped early (`findimage status | head -3`): fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_PIPE


def _main(argv: list[str] | None) -> int:
    process.start()  # before anything reaches stderr, argparse's usage errors included
    args = _parser().parse_args(argv)
    # FINDIMAGE_LOG_LEVEL if set, else WARNING for what is run by hand and INFO for the services; -v: INFO at least
    process.log_level(args.log_default, args.verbose)
    if args.run is cmd_doctor:  # a setting it cannot read is its first finding, not a reason to stop
        try:
            return cmd_doctor(args)
        except KeyboardInterrupt:
            return 130
    settings = load_settings_or_report()
    if settings is None:
        return EXIT_USAGE
    try:
        return args.run(settings, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except FindimageError as exc:  # a failure findimage explains: its sentence, its exit code
        if args.verbose:
            log.exception("failed")
        tell(f"findimage: {exc}")
        return exc.exit_code
    except Exception:  # a bug: say so, and where to look
        log.info("unexpected error", exc_info=True)
        tell("findimage: unexpected error (run with -v to see where it happened).")
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="findimage", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(log_default=logging.WARNING)  # the services below log what they do: INFO
    sub = parser.add_subparsers(required=True, metavar="command")

    index = sub.add_parser("index", help="embed new and changed archive images, drop deleted ones")
    index.add_argument("--full", action="store_true", help="re-embed every image (e.g. after a model change)")
    index.add_argument("--allow-mass-removal", action="store_true",
                       help="remove documents even if more than FINDIMAGE_MAX_REMOVAL_FRACTION of them are gone")
    index.set_defaults(run=cmd_index)

    search = sub.add_parser("search", help="find archive images by text or by an example image")
    search.add_argument("text", nargs="*", help="what to look for, in any language")
    search.add_argument("--image", metavar="PATH", help="find images similar to this image file")
    search.add_argument("-k", type=int, default=None, metavar="N", help="number of matches (default FINDIMAGE_TOP_K)")
    search.add_argument("--folder", metavar="PREFIX", help="only images under this archive folder")
    search.add_argument("--after", metavar="DATE", help="only photos taken on or after DATE (YYYY, YYYY-MM or "
                                                       "YYYY-MM-DD)")
    search.add_argument("--before", metavar="DATE", help="only photos taken before DATE (YYYY, YYYY-MM or "
                                                        "YYYY-MM-DD)")
    search.add_argument("--channel", metavar="ID", help="also the images remembered from this Slack channel "
                                                       "(C...), as a query made in it would see them")
    search.add_argument("--json", action="store_true", help="print matches as JSON")
    search.set_defaults(run=cmd_search)

    duplicates = sub.add_parser("duplicates", help="groups of near-identical archive images (resized, re-compressed, "
                                                   "cropped copies) and the space the extra copies take")
    duplicates.add_argument("--folder", metavar="PREFIX", help="only images under this archive folder")
    duplicates.add_argument("--json", action="store_true", help="print the groups as JSON")
    duplicates.set_defaults(run=cmd_duplicates)

    sub.add_parser("schedule", help="index now and then every FINDIMAGE_INDEX_INTERVAL_MINUTES").set_defaults(
        run=cmd_schedule, log_default=logging.INFO)
    sub.add_parser("status", help="store, document count, models and the last pass").set_defaults(run=cmd_status)
    models = sub.add_parser("models", help="immich's CLIP catalogue (vector size, languages, memory, speed, recall) "
                                           "and the models in use")
    models.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    models.set_defaults(run=cmd_models)
    sub.add_parser("worker", help="embed what indexing passes queue on FINDIMAGE_QUEUE_URL (run several)").set_defaults(
        run=cmd_worker, log_default=logging.INFO)
    sub.add_parser("bot", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)").set_defaults(
        run=cmd_bot, log_default=logging.INFO)
    doctor = sub.add_parser("doctor", help="check the settings, archive, data folder, store, models, Slack and "
                                           "queue, one line each; exit non-zero if one fails")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(run=cmd_doctor)
    backup = sub.add_parser("backup", help="a consistent copy of the store, made while the bot and the indexer run")
    backup.add_argument("target", nargs="?", metavar="DEST",
                        help="embedded store: a new folder; Elasticsearch: the snapshot's name (default: a dated one)")
    backup.set_defaults(run=cmd_backup)
    restore = sub.add_parser("restore", help="bring back a backup (embedded store: with the bot and the indexer "
                                             "stopped)")
    restore.add_argument("source", metavar="SRC", help="a folder `findimage backup` made, or a snapshot's name")
    restore.add_argument("--force", action="store_true",
                         help="replace a store that holds documents (embedded: its files are kept aside)")
    restore.set_defaults(run=cmd_restore)
    keys = sub.add_parser("keys", help="make the least-privilege Elasticsearch API keys of the bot, the indexer "
                                       "and backups (run once as the elastic user)")
    keys.add_argument("action", choices=["create"])
    for role in ("bot", "indexer", "backup"):
        keys.add_argument(f"--{role}-key-file", metavar="PATH",
                          help=f"keep the {role}'s key in this file (kept while still valid) instead of printing it")
    keys.set_defaults(run=cmd_keys)
    return parser


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.run import index_once

    # A missing archive or a mass removal stops the pass before any change (exit 4: EXIT_REFUSED).
    summary = index_once(settings, full=args.full, allow_mass_removal=args.allow_mass_removal)
    for path, reason in summary.failures:
        tell(f"failed: {printable(path)}: {printable(reason)}", logging.WARNING)
    print(summary.line())
    if summary.removal_sentence:
        tell(f"findimage: {summary.removal_sentence}")
        return EXIT_REFUSED
    return EXIT_OK


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.query import Arguments, read_arguments

    query = read_arguments(Arguments(args.text, args.image, args.k, args.folder, args.after, args.before), settings)
    from findimage.backends import open_remembered
    from findimage.search import Searcher, empty_result_sentence, example_file
    from findimage.visibility import OperatorFacts, Place, Purpose, Rules, decide

    # Remembered images only for an explicit --channel: whoever runs the CLI names the channel they ask for.
    remembered = open_remembered(settings) if args.channel else None
    sight = decide(Purpose.ANSWER, Place.cli(args.channel),
                   OperatorFacts(lambda c: remembered is not None and remembered.active(c), args.channel), Rules())
    searcher = Searcher(settings, remembered=remembered)
    searcher.check_model()
    example = example_file(args.image, settings.query_images) if args.image is not None else None
    result = searcher.search(query, channel=sight.channel, example=example)
    if args.json:
        print(json.dumps([m.as_json() for m in result.matches], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not result.matches:
        print(empty_result_sentence(result, searcher.store))
        return EXIT_OK
    if result.uncertain:
        print(f"(uncertain: even the best match scores below {settings.weak_score:.2f})")
    for rank, match in enumerate(result.matches, 1):
        exact = ("  (exact match)" if match.image_id in result.exact
                 else "  (near-identical copy: already in the archive)" if match.image_id in result.near else "")
        taken = f"  {match.taken[:10]}" if match.taken else ""
        also = f"  (also at {', '.join(match.also_at)})" if match.also_at else ""
        if match.near_copies:
            also += f"  (near copies at {', '.join(match.near_copies)})"
        also = printable(also)
        where = printable(f"{match.posted.title} (posted in {match.posted.channel} by {match.posted.poster}, "
                          f"{match.posted.permalink})" if match.posted else match.relative_path)
        print(f"{rank:>3}  {match.score:.4f}  {where}{taken}{exact}{also}{why(match)}")
        if match.text_snippet:
            print(f"     text: {printable(match.text_snippet)}")
    return EXIT_OK


def cmd_duplicates(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.backends import open_store
    from findimage.duplicates import duplicate_groups, summary_lines
    from findimage.query import query_filters

    folder = query_filters(folder=args.folder).folder  # checked as a search's --folder is
    store = open_store(settings)
    try:
        groups = duplicate_groups(store, folder)
        waiting = len(store.fingerprint_pending()) if not args.json else 0
    finally:
        store.close()
    if args.json:
        print(json.dumps([found.as_json() for found in groups], ensure_ascii=False, indent=2))
        return EXIT_OK
    for line in summary_lines(groups, folder):
        print(printable(line))
    if waiting:  # an index made before fingerprints were kept, not upgraded by a pass yet
        print(f"{waiting:,} indexed image(s) have no fingerprint yet and are not compared: run `findimage index` "
              "(no re-embedding).")
    return EXIT_OK


def cmd_schedule(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.run import schedule

    schedule(settings)
    return EXIT_OK


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.queue_url:
        tell("findimage: `findimage worker` needs FINDIMAGE_QUEUE_URL (e.g. redis://localhost:6379/0), the queue "
             "indexing passes hand their work to.")
        return EXIT_USAGE
    from indexer.run import work

    work(settings)
    return EXIT_OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.backends import open_store, text_embedder_state, text_model_id
    from findimage.models.factory import model_fingerprint
    from findimage.stores.base import META_IMAGE_MODEL, META_LAST_PASS, META_TEXT_MODEL

    store = open_store(settings)
    try:
        print(f"version:      {__version__}")
        print(f"store:        {store.description}")
        for label, value in store.details():
            print(f"{label + ':':<13} {value}")
        print(f"documents:    {store.count()}")
        if settings.queue_url:
            from indexer.queue import queue_state

            print(f"queue:        {queue_state(settings)}")
        read, total = store.text_status()
        print(f"text read:    {read:,} of {total:,} images" + ("" if settings.ocr else " (FINDIMAGE_OCR=off)"))
        print(f"image model:  {model_fingerprint(settings.image_model)} (index built with: "
              f"{store.get_meta(META_IMAGE_MODEL) or 'nothing yet'})")
        print(f"text model:   {text_model_id(settings)} via {settings.text_embedder} (last pass: "
              f"{store.get_meta(META_TEXT_MODEL) or 'none'})")
        infer_state = text_embedder_state(settings)
        if infer_state is not None:
            print(f"text _infer:  {infer_state}")
        print(f"last pass:    {_describe_pass(store.get_meta(META_LAST_PASS))}")
        print(f"indexing:     {_running_pass(settings)}")
        print(f"remembered:   {_remembered_state(settings)}")
    finally:
        store.close()
    for line in _indexer_state_lines(settings):
        print(line)
    return EXIT_OK


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    """immich's catalogue, each model's figures as immich publishes them, and which one each setting uses."""
    from findimage.models import catalogue
    from findimage.models.factory import runtime_of
    from findimage.models.layout import layout_model

    uses: dict[str, list[str]] = {}
    for role, setting in (("images", settings.image_model), ("text", settings.text_model)):
        layout = layout_model(setting)
        if layout is not None and layout.repo is not None:
            uses.setdefault(layout.repo.partition("/")[2], []).append(role)
    if args.json:
        print(json.dumps({"source": catalogue.SOURCE, "in_use": {"image": settings.image_model,
                                                                 "text": settings.text_model},
                          "models": [{"name": m.name, "hub": m.repo, "dims": m.dims, "languages": m.languages,
                                      "memory_mib": m.memory_mib, "ms": m.ms, "recall": m.recall,
                                      "in_use": uses.get(m.name, [])} for m in catalogue.MODELS]},
                         ensure_ascii=False, indent=2))
        return EXIT_OK
    for role, setting in (("images", settings.image_model), ("text", settings.text_model)):
        print(f"in use for {role + ':':<7} {setting} ({runtime_of(setting)})")
    print()
    columns = "".join(f"{code:>7}" for code in catalogue.LANGUAGES)
    print(f"   {'model (immich-app/<name> on the Hugging Face hub)':<54}{'dims':>5}  {'languages':<17}{'MiB':>5}"
          f"{'ms':>8}  recall %:{columns}")
    for m in catalogue.MODELS:
        mark = "*" if m.name in uses else " "
        figures = "".join(f"{m.recall[code]:>7.2f}" if code in m.recall else f"{'-':>7}"
                          for code in catalogue.LANGUAGES)
        memory = f"{m.memory_mib:>5}" if m.memory_mib else f"{'-':>5}"
        ms = f"{m.ms:>8.2f}" if m.ms else f"{'-':>8}"
        print(f" {mark} {m.name:<54}{m.dims:>5}  {m.languages:<17}{memory}{ms}  {'':9}{figures}")
    print()
    print("* in use. Languages: " + ", ".join(f"{code} {name}" for code, name in catalogue.LANGUAGES.items()) + ".")
    print(f"Source of {catalogue.SOURCE_LINE}")
    return EXIT_OK


def _remembered_state(settings: Settings) -> str:
    """Channels remembered, their images, and the Slack events the bot kept and has not applied yet."""
    from findimage.backends import open_remembered
    from findimage.errors import FindimageError
    from findimage.stores.base import LIFECYCLE, REMEMBER

    if settings.remember == "off":
        return "off (FINDIMAGE_REMEMBER=off)"
    try:
        remembered = open_remembered(settings)
        assert remembered is not None
        try:
            channels, images = len(remembered.registry.channels()), remembered.store.count()
            waiting = remembered.registry.backlog()
        finally:
            remembered.close()
    except FindimageError as exc:
        return f"unknown ({exc})"
    line = f"{channels:,} channel(s), {images:,} image(s)"
    if waiting:
        line += (f"; waiting: {waiting.get(REMEMBER, 0):,} message(s) with images to remember, "
                 f"{waiting.get(LIFECYCLE, 0):,} deletion(s) to apply (the bot applies them)")
    return line


def _indexer_state_lines(settings: Settings, shown: int = 5) -> list[str]:
    """Failed files (count and the first few, with reasons) and a removal waiting for confirmation."""
    from indexer.state import load_state

    state = load_state(settings.data_dir)
    lines = [f"failed files: {len(state.failed)}" + (" (retried when they change, or with --full)"
                                                      if state.failed else "")]
    for path, failed in sorted(state.failed.items())[:shown]:
        lines.append(f"  {printable(path)}: {printable(failed.reason)}")
    if len(state.failed) > shown:
        lines.append(f"  ... and {len(state.failed) - shown} more")
    pending = state.pending_removal
    if pending:
        when = datetime.fromtimestamp(pending.refused_at).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"refused removal: {pending.count} of {pending.indexed} documents at {when} (e.g. "
                     f"{printable(', '.join(pending.examples[:3]))}); "
                     "confirm with `findimage index --allow-mass-removal`")
    return lines


def _running_pass(settings: Settings) -> str:
    """The pass holding the lock (embedded) or the lease (Elasticsearch), or why that is not known."""
    from elasticsearch import ApiError

    from indexer.lock import running_pass

    try:
        return running_pass(settings)
    except ApiError as exc:  # e.g. the bot's key, which may not read the lease
        return f"not known ({exc.meta.status}: {exc.message})"


def why(match: Match) -> str:
    """Where a match stands for a reason its score (the CLIP similarity) does not show: its name or the
    text in it matched the query's words (the ranking fuses those; see findimage.fusion)."""
    reasons = [signal for signal in match.matched if signal != "image"]
    return f"  [{' and '.join(reasons)} matched]" if reasons else ""


def _describe_pass(raw: str | None) -> str:
    if not raw:
        return "never"
    try:
        data = json.loads(raw)
        when = datetime.fromtimestamp(float(data["finished_at"])).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, TypeError, KeyError):  # written by another version, or damaged: still not a failure
        return "recorded in a form this version does not read"
    counts = ", ".join(f"{name} {data.get(name, 0)}" for name in ("added", "updated", "moved", "removed",
                                                                    "unchanged", "failed"))
    return (f"{when}: {counts} in {float(data.get('seconds', 0)):.1f}s"
            + (f", upgraded {data['upgraded']}" if data.get("upgraded") else ""))


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.backends import backups
    from indexer.state import STATE_FILE

    for line in backups(settings, (STATE_FILE,)).make(args.target):
        print(line)
    return EXIT_OK


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.backends import backups
    from indexer.state import STATE_FILE

    for line in backups(settings, (STATE_FILE,)).restore(args.source, force=args.force):
        print(line)
    return EXIT_OK


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from findimage.stores.elasticsearch.privileges import make_keys

    if not settings.uses_elasticsearch:
        tell("findimage: API keys are for Elasticsearch: set ELASTICSEARCH_URL and the elastic user's "
             "ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD.")
        return EXIT_USAGE
    files = {"bot": args.bot_key_file, "indexer": args.indexer_key_file, "backup": args.backup_key_file}
    for line in make_keys(settings, files):
        print(line)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every check in order, each whatever the others found; exits with the first failure's code (EXIT_USAGE:
    a setting, token or permission to change; EXIT_UNAVAILABLE: something not reachable), 0 with warnings."""
    from bot.doctor import CHECKS as SLACK_CHECKS
    from bot.doctor import slack_checks
    from findimage import doctor
    from indexer.doctor import archive_check, queue_checks

    settings, loaded = doctor.settings_check()
    checks = [loaded]
    if settings is None:
        checks += doctor.skipped(("archive", *doctor.CHECKS, *SLACK_CHECKS), "the settings above must be fixed first")
    else:
        ready = settings
        checks += doctor.guarded("archive", lambda: archive_check(ready))
        checks += doctor.guarded("data dir", lambda: doctor.data_dir_check(ready))
        checks += doctor.guarded("store", lambda: doctor.store_check(ready))
        checks += doctor.model_checks(settings)
        checks += slack_checks(settings)
        checks += doctor.guarded("queue", lambda: queue_checks(ready))
    if args.json:
        print(json.dumps([check.as_json() for check in checks], ensure_ascii=False, indent=2))
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(check.line(width))
    return doctor.exit_code(checks)


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    from bot.server import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
