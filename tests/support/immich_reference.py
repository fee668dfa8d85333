"""immich's preprocessing and tokenizer for its CLIP models, reimplemented as plainly as immich_ml writes them
(machine-learning/immich_ml/models/clip/visual.py, textual.py and transforms.py), with plain onnxruntime
sessions: what findimage's vectors of a model in immich's layout must equal."""
from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image
from tokenizers import Tokenizer

SAME = 0.9999  # cosine: the same vector, up to float rounding


def immich_image_input(image: Image.Image, cfg: dict) -> np.ndarray:
    """immich_ml.models.clip.visual.OpenClipVisualEncoder.transform, after decode_pil."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = cfg["size"][0] if isinstance(cfg["size"], list) else cfg["size"]
    resample = {m.name.lower(): m for m in Image.Resampling}[cfg["interpolation"].lower()]
    if cfg.get("resize_mode", "shortest") == "squash":
        image = image.resize((size, size), resample=resample)
    else:
        if image.width < image.height:
            image = image.resize((size, int((image.height / image.width) * size)), resample=resample)
        else:
            image = image.resize((int((image.width / image.height) * size), size), resample=resample)
        left = int((image.size[0] / 2) - (size / 2))
        upper = int((image.size[1] / 2) - (size / 2))
        image = image.crop((left, upper, left + size, upper + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.array(cfg["mean"], dtype=np.float32)) / np.array(cfg["std"], dtype=np.float32)
    return np.expand_dims(array.transpose(2, 0, 1), 0)


def immich_image_vector(folder: Path, image: Image.Image) -> np.ndarray:
    cfg = json.loads((folder / "visual" / "preprocess_cfg.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / "visual" / "model.onnx"))
    return session.run(None, {"image": immich_image_input(image, cfg)})[0][0]


def immich_text_vector(folder: Path, text: str) -> np.ndarray:
    """immich_ml.models.clip.textual: OpenClipTextualEncoder (`text`), MClipTextualEncoder (`input_ids` and
    `attention_mask`), with clean_text."""
    text_cfg = json.loads((folder / "config.json").read_text())["text_cfg"]
    pad_token = json.loads((folder / "textual" / "tokenizer_config.json").read_text())["pad_token"]
    context_length = text_cfg.get("context_length", 77)
    tokenizer = Tokenizer.from_file((folder / "textual" / "tokenizer.json").as_posix())
    tokenizer.enable_padding(length=context_length, pad_token=pad_token, pad_id=tokenizer.token_to_id(pad_token))
    tokenizer.enable_truncation(max_length=context_length)
    kwargs = text_cfg.get("tokenizer_kwargs")
    text = " ".join(text.split())
    if kwargs is not None and kwargs.get("clean") == "canonicalize":
        text = text.translate(str.maketrans("", "", string.punctuation)).lower()
    tokens = tokenizer.encode(text)
    session = onnxruntime.InferenceSession(str(folder / "textual" / "model.onnx"))
    if {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask"}:
        inputs = {"input_ids": np.array([tokens.ids], dtype=np.int32),
                  "attention_mask": np.array([tokens.attention_mask], dtype=np.int32)}
    else:
        inputs = {"text": np.array([tokens.ids], dtype=np.int32)}
    return session.run(None, inputs)[0][0]


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
