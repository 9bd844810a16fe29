"""A released OmniFusion folder -> our checkpoint format (`python -m model.convert SRC DST`): layouts.py names the
folder, pickles.py reads the adapter with a restricted unpickler, clip_weights.py maps CLIP weight layouts,
llm_folder.py links or rewrites the LLM shards. Only this package reads pickles; serving reads safetensors."""
