"""Which public OmniFusion folder the converter was given, and where its parts are.

AIRI-Institute/OmniFusion publishes three folders (docs/convert.md):
- `OmniMistral-v1_1/` (OmniFusion-1.1): projection.pt, special_embeddings.pt, tuned-model/ (safetensors),
  tokenizer/. Converted.
- the repository root (OmniFusion-1.0): `projection` (the same pickled adapter class, no suffix),
  special_embeddings.pt, OmniMistral-model/ (pickled `.bin` state-dict shards), OmniMistral-tokenizer/.
  Converted; its shards are rewritten as safetensors (llm_folder.py).
- `OmniMistral-v1_1-encoders-mix/`: CLIP + DINOv2 features through an adapter without attention, whose class
  has no public code. Refused by name here, and by its pickled class in pickles.py if the folder was renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReleaseLayout:
    name: str  # for messages and the converted config's preset
    projection: str  # file names inside the folder
    special: str
    llm: str
    tokenizer: str

    def files(self) -> tuple[str, ...]:
        return self.projection, self.special, self.llm + "/", self.tokenizer + "/"

    def missing(self, src: Path) -> list[str]:
        return [name for name in self.files() if not (src / name.rstrip("/")).exists()]


V1_1 = ReleaseLayout("omnifusion-1.1", "projection.pt", "special_embeddings.pt", "tuned-model", "tokenizer")
V1_0 = ReleaseLayout("omnifusion-1.0", "projection", "special_embeddings.pt", "OmniMistral-model",
                     "OmniMistral-tokenizer")
LAYOUTS = (V1_1, V1_0)
ENCODERS_MIX = "OmniMistral-v1_1-encoders-mix"
UNSUPPORTED_MIX = (
    f"{ENCODERS_MIX} (OmniFusion-1.1 with CLIP + DINOv2) cannot be converted: its adapter reads features from "
    f"every layer of both encoders through a class whose code was never published, and this project runs a "
    f"single CLIP encoder. Supported: OmniMistral-v1_1 (OmniFusion-1.1) and the repository root "
    f"(OmniFusion-1.0).")


def find_layout(src: Path) -> ReleaseLayout:
    """The layout SRC has, or a ValueError / FileNotFoundError that names what SRC is and what is supported."""
    if ENCODERS_MIX.lower() in src.resolve().name.lower():
        raise ValueError(f"{src}: {UNSUPPORTED_MIX}")
    for layout in LAYOUTS:
        if not layout.missing(src):
            return layout
    hint = ""
    if (src / "OmniMistral-v1_1").is_dir():
        hint = f" It holds OmniMistral-v1_1/: pass {src / 'OmniMistral-v1_1'} to convert OmniFusion-1.1."
    expected = "; ".join(f"{layout.name} needs {', '.join(layout.files())} (missing: {', '.join(layout.missing(src))})"
                         for layout in LAYOUTS)
    raise FileNotFoundError(f"{src} is not a released OmniFusion folder: {expected}.{hint}")
