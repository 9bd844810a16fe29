"""`python -m model.generate` on the tiny preset: answers stream to stdout, bad images are one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from model.checkpoint import load_model
from model.generate import build_embeds, main, read_images
from model.images import IMAGE_ERROR_CODES
from model.release.generation import generate_released
from model.serving.engine import SamplingParams, generate

PROMPT = "What is on this photo?"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", device="cpu")


@pytest.fixture
def png(tmp_path):
    image = Image.new("RGB", (80, 60), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 50, 50), fill="red")
    draw.rectangle((55, 20, 75, 55), fill="blue")
    path = tmp_path / "drawing.png"
    image.save(path)
    return path


def _expected(model, paths, prompt, max_new_tokens):
    embeds = build_embeds(model, read_images([str(p) for p in paths]), prompt, max_new_tokens)
    [(text, _, tokens)] = generate(model, [embeds], SamplingParams(max_new_tokens=max_new_tokens))
    return text, tokens


def _run(*args):
    return subprocess.run([sys.executable, "-m", "model.generate", *map(str, args)], capture_output=True,
                          text=True, timeout=240)


def test_cli_prints_the_greedy_answer(tiny, png):
    text, tokens = _expected(tiny, [png], PROMPT, 12)
    assert text.strip() and tokens  # the check below must compare something
    done = _run("--preset", "tiny", "--device", "cpu", "--image", png, "--prompt", PROMPT, "--max-new-tokens", 12)
    assert done.returncode == 0, done.stderr
    assert done.stdout == text + "\n"
    assert "Traceback" not in done.stderr


class _Recorder:
    def __init__(self):
        self.writes: list[str] = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass


def test_answer_is_streamed_piece_by_piece(tiny, png, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    monkeypatch.setattr("model.checkpoint.load_model", lambda *a, **k: tiny)
    assert main(["--image", str(png), "--prompt", PROMPT, "--max-new-tokens", "12"]) == 0
    pieces = [w for w in recorder.writes if w]
    assert len(pieces) > 2  # one write per delta, not the whole answer at the end
    assert "".join(recorder.writes) == _expected(tiny, [png], PROMPT, 12)[0] + "\n"


def test_released_text_only_and_several_images(tiny, png, monkeypatch, capsys):
    monkeypatch.setattr("model.checkpoint.load_model", lambda *a, **k: tiny)
    assert main(["--prompt", "Hello", "--released", "--max-new-tokens", "6"]) == 0
    embeds = build_embeds(tiny, [], "Hello", 6)
    assert capsys.readouterr().out == generate_released(tiny, embeds, 6) + "\n"

    assert main(["--image", str(png), "--image", str(png), "--prompt", PROMPT, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out == _expected(tiny, [png, png], PROMPT, 4)[0] + "\n"
    patches = tiny.config.vision_num_patches
    assert build_embeds(tiny, read_images([str(png)] * 2), PROMPT, 4).shape[0] \
        == build_embeds(tiny, [], PROMPT, 4).shape[0] + 2 * (patches + 2)


def _bad_image(tmp_path, kind):
    path = tmp_path / "photo.png"
    if kind == "not_an_image":
        path.write_text("this is a text file, not a picture\n")
    elif kind == "empty":
        path.write_bytes(b"")
    return path


def test_bad_image_from_the_shell_is_one_line_and_exit_code_2(tmp_path):
    path = _bad_image(tmp_path, "not_an_image")
    done = _run("--preset", "tiny", "--device", "cpu", "--image", path, "--prompt", PROMPT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {path}: {IMAGE_ERROR_CODES['not_an_image']} (not_an_image)"]
    assert done.stdout == ""


@pytest.mark.parametrize("kind", ["missing", "not_an_image", "empty"])
def test_bad_image_is_a_one_line_error_with_exit_code_2(tmp_path, png, kind, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a bad image must be reported before the model loads")

    monkeypatch.setattr("model.checkpoint.load_model", no_model)
    path = _bad_image(tmp_path, kind)
    assert main(["--image", str(png), "--image", str(path), "--prompt", PROMPT]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read image {path}" if kind == "missing"
                                                   else f"error: {path}: "), out.err
    assert out.out == ""


def test_bad_sampling_values_are_input_errors(capsys):
    assert main(["--prompt", PROMPT, "--top-p", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: top_p")
