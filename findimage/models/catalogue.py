"""immich's CLIP catalogue: the models a setting may name (`FINDIMAGE_IMAGE_MODEL=ViT-B-32-SigLIP2-256__webli`),
fetched from the Hugging Face hub as `immich-app/<name>`, with what immich publishes about each.

The names are immich's (machine-learning/immich_ml/models/constants.py), the vector sizes its server's
(server/src/constants.ts, CLIP_MODEL_INFO). Memory, time and recall are immich's evaluation, copied from
`SOURCE`: memory (peak RSS, MiB) and time (ms per input) were measured at float32 without acceleration on a
Ryzen 7800X3D; recall is the mean of recall@1, @5 and @10 for zero-shot image retrieval on Crossmodal-3600,
per query language. A model immich did not evaluate in a language (too weak there to list) has no figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SOURCE = "https://github.com/immich-app/immich/blob/main/docs/docs/features/searching.md"
SOURCE_LINE = ("memory, time and recall: immich's evaluation (float32, no accelerator, Ryzen 7800X3D; recall = mean "
               f"of R@1/5/10 on Crossmodal-3600), {SOURCE}")
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "zh": "Chinese", "ar": "Arabic"}

ENGLISH, MULTILINGUAL, NLLB = "English", "multilingual", "about 200 (NLLB)"


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    dims: int
    languages: str  # what its text side was trained on: English, multilingual, or NLLB's 200 languages
    memory_mib: int | None = None
    ms: float | None = None
    recall: dict[str, float] = field(default_factory=dict)  # LANGUAGES key -> recall in %

    @property
    def repo(self) -> str:
        return f"immich-app/{self.name}"


def _model(name: str, dims: int, languages: str, memory: int | None = None, ms: float | None = None,
           en: float | None = None, de: float | None = None, fr: float | None = None, zh: float | None = None,
           ar: float | None = None) -> CatalogueModel:
    recall = {key: value for key, value in (("en", en), ("de", de), ("fr", fr), ("zh", zh), ("ar", ar))
              if value is not None}
    return CatalogueModel(name, dims, languages, memory, ms, recall)


# Ordered by English recall, as immich's table; the models immich did not evaluate last.
MODELS: tuple[CatalogueModel, ...] = (
    _model("ViT-H-14-378-quickgelu__dfn5b", 1024, ENGLISH, 5049, 108.4, en=75.73, de=89.77, fr=87.74),
    _model("ViT-L-16-SigLIP2-512__webli", 1024, MULTILINGUAL, 3358, 92.59, en=75.44, de=89.69, fr=87.51, zh=67.39,
           ar=68.35),
    _model("ViT-B-16-SigLIP2__webli", 768, MULTILINGUAL, 3038, 5.81, en=75.19, de=86.44, fr=84.3, zh=64.39,
           ar=61.71),
    _model("ViT-SO400M-16-SigLIP2-384__webli", 1152, MULTILINGUAL, 3854, 56.57, en=75.09, de=89.81, fr=87.6,
           zh=67.33, ar=69.31),
    _model("ViT-SO400M-16-SigLIP2-512__webli", 1152, MULTILINGUAL, 4050, 107.67, en=75.07, de=90.04, fr=88.01,
           zh=67.81, ar=69.29),
    _model("ViT-H-14-quickgelu__dfn5b", 1024, ENGLISH, 4701, 38.74, en=75.01, de=89.44, fr=87.58),
    _model("ViT-L-16-SigLIP2-384__webli", 1024, MULTILINGUAL, 3057, 51.7, en=74.92, de=89.39, fr=86.9, zh=67.05,
           ar=68.25),
    _model("ViT-gopt-16-SigLIP2-384__webli", 1536, MULTILINGUAL, 6585, 146.84, en=74.9, de=89.85, fr=87.23,
           zh=67.83, ar=67.56),
    _model("ViT-SO400M-14-SigLIP2-378__webli", 1152, MULTILINGUAL, 3940, 72.25, en=74.87, de=89.97, fr=87.69,
           zh=67.23, ar=69.29),
    _model("ViT-SO400M-16-SigLIP2-256__webli", 1152, MULTILINGUAL, 3611, 27.84, en=74.87, de=89.45, fr=86.9,
           zh=66.24, ar=68.64),
    _model("ViT-SO400M-14-SigLIP2__webli", 1152, MULTILINGUAL, 3622, 27.63, en=74.77, de=89.35, fr=86.44, zh=65.56,
           ar=68.23),
    _model("ViT-gopt-16-SigLIP2-256__webli", 1536, MULTILINGUAL, 6475, 64.51, en=74.28, de=89.03, fr=86.44,
           zh=67.51, ar=67.28),
    _model("ViT-L-16-SigLIP2-256__webli", 1024, MULTILINGUAL, 2830, 23.77, en=74.26, de=88.82, fr=86.08, zh=66.1,
           ar=66.89),
    _model("ViT-B-32-SigLIP2-256__webli", 768, MULTILINGUAL, 3061, 3.31, en=73.15, de=84.44, fr=82.27, zh=62.56,
           ar=60.7),
    _model("ViT-L-14-quickgelu__dfn2b", 768, ENGLISH, 2212, 20.49, en=72.78, de=84.81, fr=83.03),
    _model("ViT-SO400M-14-SigLIP-384__webli", 1152, ENGLISH, 4417, 72.19, en=72.58, de=64.61, fr=69.59),
    _model("ViT-L-16-SigLIP-384__webli", 1024, ENGLISH, 3396, 47.6, en=72.57, de=82.75, fr=80.96),
    _model("ViT-B-16-SigLIP-512__webli", 768, ENGLISH, 1828, 26.17, en=72.47, de=76.76, fr=77.4),
    _model("ViT-B-16-SigLIP-384__webli", 768, ENGLISH, 1128, 13.53, en=72.45, de=76.33, fr=76.88),
    _model("ViT-L-16-SigLIP-256__webli", 1024, ENGLISH, 3160, 23.84, en=72.44, de=82.32, fr=80.64),
    _model("nllb-clip-large-siglip__mrl", 1152, NLLB, 4248, 75.44, en=72.37, de=88.55, fr=86.28, zh=76.98, ar=77.3),
    _model("ViT-B-16-SigLIP__webli", 768, ENGLISH, 1081, 5.77, en=71.64, de=75.19, fr=76.3),
    _model("ViT-B-16-SigLIP-256__webli", 768, ENGLISH, 1102, 7.11, en=71.63, de=75.07, fr=75.68),
    _model("XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", 1024, MULTILINGUAL, 4014, 39.14, en=71.45,
           de=87.19, fr=84.49, zh=77.19, ar=66.52),
    _model("ViT-H-14__laion2b-s32b-b79k", 1024, ENGLISH, 4676, 39.06, en=71.33, de=52.81, fr=68.36),
    _model("nllb-clip-large-siglip__v1", 1152, NLLB, 4226, 75.05, en=71.19, de=88.42, fr=86.11, zh=77.49, ar=76.44),
    _model("ViT-L-14__laion2b-s32b-b82k", 768, ENGLISH, 2233, 20.56, en=69.86, de=42.88, fr=61.78),
    _model("nllb-clip-base-siglip__mrl", 768, NLLB, 4696, 16.95, en=69.66, de=84.58, fr=82.93, zh=72.89, ar=74.03),
    _model("ViT-B-16-SigLIP-i18n-256__webli", 768, MULTILINGUAL, 3029, 6.87, en=69.38, de=83.33, fr=80.28,
           zh=66.87, ar=64.1),
    _model("ViT-B-32__laion2b-s34b-b79k", 512, ENGLISH, 1001, 2.29, en=68.78, de=36.6, fr=56.08),
    _model("ViT-L-14__laion400m_e31", 768, ENGLISH, 2183, 19.87, en=68.53, de=38.37, fr=58.35),
    _model("ViT-B-16-plus-240__laion400m_e32", 640, ENGLISH, 1246, 6.95, en=68.53, de=35.44, fr=57.17),
    _model("ViT-B-16-plus-240__laion400m_e31", 640, ENGLISH, 1263, 6.94, en=68.53, de=35.44, fr=57.17),
    _model("ViT-L-14__laion400m_e32", 768, ENGLISH, 2218, 19.73, en=68.51, de=38.65, fr=58.4),
    _model("nllb-clip-base-siglip__v1", 768, NLLB, 4675, 15.17, en=68.41, de=84.81, fr=82.14, zh=72.65, ar=73.19),
    _model("ViT-B-32__laion2b_e16", 512, ENGLISH, 1004, 2.38, en=68.41, de=37.65, fr=57.05),
    _model("XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", 512, MULTILINGUAL, 3030, 3.2, en=68.33, de=81.63,
           fr=79.65, zh=72.52, ar=59.66),
    _model("ViT-B-16__laion400m_e31", 512, ENGLISH, 991, 5.04, en=66.96, de=32.46, fr=52.96),
    _model("ViT-B-16__laion400m_e32", 512, ENGLISH, 975, 4.98, en=66.95, de=32.31, fr=52.83),
    _model("ViT-B-32__laion400m_e31", 512, ENGLISH, 999, 2.28, en=65.65, de=31.85, fr=51.82),
    _model("ViT-B-32__laion400m_e32", 512, ENGLISH, 1003, 2.35, en=65.49, de=31.81, fr=51.88),
    _model("ViT-L-14__openai", 768, ENGLISH, 2212, 19.91, en=60.12, de=27.63, fr=42.54),
    _model("ViT-B-32__openai", 512, ENGLISH, 1004, 2.26, en=59.37, fr=35.17),
    _model("RN50x64__openai", 1024, ENGLISH, 5079, 48.79, en=59.36, de=28.41, fr=42.86),
    _model("RN50x16__openai", 768, ENGLISH, 2221, 15.87, en=59.17, de=24.48, fr=41.72),
    _model("ViT-L-14-336__openai", 768, ENGLISH, 2616, 43.45, en=59.09, de=27.09, fr=42.81),
    _model("RN50__openai", 1024, ENGLISH, 913, 2.39, en=58.32, de=20.91, fr=34.44),
    _model("ViT-B-16__openai", 512, ENGLISH, 985, 5.03, en=58.27, de=20.83, fr=36.47),
    _model("RN50x4__openai", 640, ENGLISH, 1416, 5.85, en=57.88, de=23.49, fr=38.85),
    _model("RN50__cc12m", 1024, ENGLISH, 914, 2.37, en=57.75),
    _model("RN101__openai", 512, ENGLISH, 1111, 3.21, en=57.7, de=20.39, fr=36.79),
    _model("RN101__yfcc15m", 512, ENGLISH, 1111, 3.22, en=50.11),
    _model("RN50__yfcc15m", 1024, ENGLISH, 908, 2.34, en=48.28),
    _model("ViT-g-14__laion2b-s12b-b42k", 1024, ENGLISH),
    # M-CLIP: a multilingual text side (XLM-R or LaBSE; `input_ids` + `attention_mask`) beside an OpenAI or
    # LAION image side
    _model("XLM-Roberta-Large-Vit-B-32", 512, MULTILINGUAL),
    _model("XLM-Roberta-Large-Vit-B-16Plus", 640, MULTILINGUAL),
    _model("LABSE-Vit-L-14", 768, MULTILINGUAL),
    _model("XLM-Roberta-Large-Vit-L-14", 768, MULTILINGUAL),
)

_BY_NAME = {model.name: model for model in MODELS}


def find(name: str) -> CatalogueModel | None:
    """The catalogue's model of that name (exactly as immich spells it), or None."""
    return _BY_NAME.get(name)
