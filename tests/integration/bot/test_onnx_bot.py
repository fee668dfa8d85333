"""The bot deployed with a model in immich's layout: it answers `/findimage` with the ranking that model's
vectors give (as immich computes them), and none of its processes ever loads torch."""
from __future__ import annotations

import re
from pathlib import Path

from bot_support import (
    CHANNEL,
    BotProcess,
    brute_force_ranking,
    free_port,
    libraries_of_tree,
    process_env,
    slack_env,
)
from immich_reference import immich_text_vector

from findimage.config import load_settings
from indexer.run import index_once

RANKED_LINE = re.compile(r"^\*(\d+)\.\* `(\d\.\d{3})` `([^`]+)`", re.MULTILINE)


def test_the_bot_answers_with_an_onnx_model_and_never_loads_torch(env, emu, archive, test_models, tmp_path):
    model = str(test_models["clip-onnx"])
    values = {**env, **slack_env(emu), "FINDIMAGE_IMAGE_MODEL": model, "FINDIMAGE_TEXT_MODEL": model,
              "FINDIMAGE_HYBRID": "off"}
    settings = load_settings(values, env_file=None)
    assert index_once(settings, progress=False).added == 7
    query = "a concert under red lights"
    expected = brute_force_ranking(settings, immich_text_vector(test_models["clip-onnx"], query), 5)

    port = free_port()
    web = BotProcess(["findimage", "bot"], process_env(values, PORT=str(port), PYTHONUNBUFFERED="1"), cwd=tmp_path)
    try:
        web.wait_for_line("findimage bot ready over HTTP")
        emu.send_slash_command(f"http://127.0.0.1:{port}/slack/events", text=query, channel_id=CHANNEL)
        answer = emu.wait_for_upload(CHANNEL, timeout=30)
        libraries = libraries_of_tree(web.process.pid)
    finally:
        status = web.stop()

    shown = [(path, float(score)) for _, score, path in RANKED_LINE.findall(answer.initial_comment)]
    assert [path for path, _ in shown] == [path for path, _ in expected]
    assert all(abs(got - want) <= 0.0006 for (_, got), (_, want) in zip(shown, expected, strict=True))
    assert len(answer.files) == 5
    assert any("onnxruntime" in library for library in libraries), "the model runs on ONNX Runtime"
    assert not [library for library in libraries if "torch" in Path(library).name], "torch is never loaded"
    assert status == 0, web.output
