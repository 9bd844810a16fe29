"""The composite model: CLIP features -> adapter -> spliced into the LLM's input embeddings with SOI/EOI/USER/BOT."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model import weights
from model.adapter import Adapter
from model.config import OmniFusionConfig
from model.dialog import IGNORE, SPECIALS, EncodedDialog
from model.vision import VisionEncoder


class OmniFusion(nn.Module):
    def __init__(self, config: OmniFusionConfig, llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        hidden = llm.get_input_embeddings().embedding_dim
        if hidden != config.adapter_out:
            raise ValueError(f"LLM width {hidden} != config llm_hidden_size {config.adapter_out}")
        self.config = config
        self.vision = VisionEncoder(config)
        self.adapter = Adapter(config)
        # Learned vectors in the LLM's embedding space, not vocabulary entries (as released).
        self.special = nn.ParameterDict({name: nn.Parameter(torch.zeros(hidden)) for name in SPECIALS})
        self.llm = llm
        self.tokenizer = tokenizer
        self.vision.requires_grad_(False)  # CLIP is frozen in every stage

    # --- properties ---------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the LLM's input embeddings: what every spliced vector is cast to."""
        return self.llm.get_input_embeddings().weight.dtype

    def init_special(self, generator: torch.Generator | None = None) -> None:
        """Random SOI/EOI/USER/BOT at the scale of the LLM's token embeddings."""
        std = self.llm.get_input_embeddings().weight.float().std().item()
        with torch.no_grad():
            for p in self.special.values():
                p.copy_(torch.randn(p.shape, generator=generator) * std)

    # --- images -------------------------------------------------------------------------------------------

    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> adapter outputs [B, N, H] in the LLM's dtype."""
        vision_param = next(self.vision.parameters())
        with torch.no_grad():
            feats = self.vision(pixel_values.to(vision_param.device, vision_param.dtype))  # [B, N, W]
        adapter_param = next(self.adapter.parameters())
        out = self.adapter(feats.to(adapter_param.dtype))  # [B, N, H]
        return out.to(self.device, self.dtype)

    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> [B, N, H]."""
        return self.encode_pixels(self.vision.preprocess(images))

    # --- sequences ----------------------------------------------------------------------------------------

    def embed_dialog(self, dialog: EncodedDialog, image_embeds: list[torch.Tensor] | torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (inputs_embeds [T, H], labels [T]). `image_embeds[i]` is [N, H] for the dialog's i-th image."""
        if len(image_embeds) != len(dialog.image_keys):
            raise ValueError(f"dialog has {len(dialog.image_keys)} images, got {len(image_embeds)} embeddings")
        text_ids = [t for s in dialog.segments if s.kind == "text" for t in s.ids]
        table = self.llm.get_input_embeddings()
        text = table(torch.tensor(text_ids, dtype=torch.long, device=self.device)) if text_ids else None
        pieces, offset = [], 0
        for s in dialog.segments:
            if s.kind == "text":
                pieces.append(text[offset:offset + len(s.ids)])
                offset += len(s.ids)
            elif s.kind == "special":
                pieces.append(self.special[s.name].to(self.dtype)[None])
            else:
                pieces.append(image_embeds[s.image].to(self.device, self.dtype))
        embeds = torch.cat(pieces)  # [T, H]
        labels = torch.tensor(dialog.labels(), dtype=torch.long, device=self.device)  # [T]
        return embeds, labels

    def pad_batch(self, embeds: list[torch.Tensor], labels: list[torch.Tensor] | None = None, left: bool = True):
        """Pad to one length. Left padding for generation (new tokens line up at the end), right for training.
        -> dict(inputs_embeds [B, T, H], attention_mask [B, T], position_ids [B, T], labels [B, T] | None)."""
        longest = max(e.shape[0] for e in embeds)
        batch, hidden = len(embeds), embeds[0].shape[-1]
        out = torch.zeros(batch, longest, hidden, dtype=embeds[0].dtype, device=embeds[0].device)
        mask = torch.zeros(batch, longest, dtype=torch.long, device=embeds[0].device)
        lab = torch.full((batch, longest), IGNORE, dtype=torch.long, device=embeds[0].device)
        for i, e in enumerate(embeds):
            span = slice(longest - e.shape[0], longest) if left else slice(0, e.shape[0])
            out[i, span], mask[i, span] = e, 1
            if labels is not None:
                lab[i, span] = labels[i]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"inputs_embeds": out, "attention_mask": mask, "position_ids": position_ids,
                "labels": lab if labels is not None else None}

    def forward(self, inputs_embeds, attention_mask=None, position_ids=None, labels=None, **kwargs):
        """The LLM on spliced embeddings; with `labels`, `.loss` is the mean over non-ignored (answer) tokens."""
        return self.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                        labels=labels, **kwargs)

    # --- checkpoints (files: model/weights.py) ------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        if getattr(self.llm, "is_loaded_in_8bit", False):
            raise ValueError("an 8-bit model cannot be saved as a checkpoint; load it without LOAD_IN_8BIT first")
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / weights.CONFIG_FILE)
        save_file(weights.adapter_state(self), str(folder / weights.ADAPTER_FILE), metadata={"format": "pt"})
        vision = {k: v.detach().contiguous().cpu() for k, v in self.vision.tower.state_dict().items()}
        save_file(vision, str(folder / weights.VISION_FILE), metadata={"format": "pt"})
        self.llm.save_pretrained(folder / self.config.llm_subfolder)
        self.tokenizer.save_pretrained(folder / self.config.llm_subfolder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="auto", dtype=None, load_in_8bit: bool = False,
                        device_map=None) -> OmniFusion:
        folder = Path(folder)
        if not (folder / weights.CONFIG_FILE).is_file():
            hint = " (a released OmniFusion folder? convert it with `python -m model.convert SRC DST`)" \
                if (folder / "projection.pt").exists() else ""
            raise FileNotFoundError(f"{folder} has no {weights.CONFIG_FILE}{hint}")
        cfg = weights.read_config(folder / weights.CONFIG_FILE)
        device = weights.resolve_device(device)
        dtype = weights.resolve_dtype(device, dtype)
        llm_folder = folder / cfg.llm_subfolder
        llm = weights.load_llm(llm_folder, device, dtype, load_in_8bit, device_map)
        model = cls(cfg, llm, weights.read_tokenizer(llm_folder))
        adapter_file, vision_file = folder / weights.ADAPTER_FILE, folder / weights.VISION_FILE
        weights.load_adapter_state(model, weights.read_safetensors(adapter_file), str(adapter_file))
        weights.load_state_checked(model.vision.tower, weights.read_safetensors(vision_file), str(vision_file))
        return weights.place(model, device, dtype)
