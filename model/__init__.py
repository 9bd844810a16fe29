"""OmniFusion model, loading and the inference worker.

Kept import-light on purpose: the bot imports `model.protocol` and `model.images`, which must not pull in
torch. Import the heavy parts from their modules (`model.checkpoint.load_model`, `model.serving.engine`).
"""
