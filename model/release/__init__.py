"""The released OmniFusion folder -> our checkpoint format (`python -m model.convert SRC DST`). The only code
that ever reads pickles (pickles.py, with a restricted unpickler); clip_weights.py maps CLIP weight layouts."""
