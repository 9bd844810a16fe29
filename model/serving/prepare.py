"""A job's dialog -> what the engine runs: checked params, the dialog trimmed to the budget, image features,
spliced embeddings. Everything a client can get wrong is answered here as a ProtocolError with its code."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from model import protocol
from model.dialog import DialogTooLong, EncodedDialog, encode_dialog
from model.serving.engine import Request, SamplingParams
from model.serving.feature_cache import ImageFeatureCache, image_features
from model.serving.settings import WorkerSettings
from model.serving.text_limits import bound_text, max_token_chars


@dataclass
class Prepared:
    request: Request
    dialog: EncodedDialog


class Preparer:
    def __init__(self, model, client: redis.Redis, settings: WorkerSettings):
        self.model, self.client, self.settings = model, client, settings
        self.cache = ImageFeatureCache(settings.worker_image_cache)
        self.chars_per_token = max_token_chars(model.tokenizer)

    def __call__(self, request_id: str, job: protocol.Job) -> Prepared:
        s, cfg = self.settings, self.model.config
        try:
            params = SamplingParams.from_dict(job.params, max_new_tokens=s.worker_default_max_new_tokens,
                                              wrap_up=s.worker_wrap_up)
        except (ValueError, TypeError) as exc:
            raise protocol.ProtocolError("bad_job", f"params: {exc}") from None
        params.max_new_tokens = min(params.max_new_tokens, s.worker_max_new_tokens)
        budget = min(s.worker_max_input_tokens, cfg.llm_max_context - params.max_new_tokens)
        messages = bound_text(job.messages, self.chars_per_token * budget)
        try:
            dialog = encode_dialog(messages, self.model.tokenizer, cfg, max_tokens=budget,
                                   max_images=s.worker_max_images)
        except DialogTooLong as exc:
            code = "too_many_images" if "images" in str(exc) else "too_long"
            raise protocol.ProtocolError(code, str(exc)) from None
        features = image_features(self.model, self.client, dialog.image_keys, self.cache)
        embeds, _ = self.model.embed_dialog(dialog, features)
        return Prepared(Request(request_id, embeds, params), dialog)
