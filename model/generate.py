"""Try a model from the terminal: the answer is printed as it is generated.

    python -m model.generate --preset tiny --image cat.jpg --prompt "What is on this photo?"
    python -m model.generate --model-path omnifusion-1.1 --image cat.jpg --prompt "..." --released

Exit codes: 0 answered, 2 bad input (an image that cannot be used, bad sampling values), 1 the model did not
load. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from model.images import ImageError, load_image

RELEASED_MAX_NEW_TOKENS = 50  # what the release generated with
DEFAULT_MAX_NEW_TOKENS = 256


class InputError(ValueError):
    """Something the user can fix in the command line; printed as one line, exit code 2."""


def read_images(paths: list[str]) -> list[Image.Image]:
    images = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read image {path}: {exc.strerror or exc}") from exc
        try:
            images.append(load_image(data))
        except ImageError as exc:
            raise InputError(f"{path}: {exc.message} ({exc.code})") from exc
    return images


def build_embeds(model, images: list[Image.Image], prompt: str, max_new_tokens: int):
    """One user turn: the images (in order) then the prompt, in the released layout -> [T, H]."""
    from model.dialog import DialogTooLong, encode_dialog

    content = [{"type": "image", "key": str(i)} for i in range(len(images))]
    content.append({"type": "text", "text": prompt})
    try:
        dialog = encode_dialog([{"role": "user", "content": content}], model.tokenizer, model.config,
                               max_tokens=model.config.llm_max_context - max_new_tokens)
    except DialogTooLong as exc:
        raise InputError(f"the prompt does not fit the model's context: {exc}") from exc
    image_embeds = model.encode_images(images) if images else []
    embeds, _ = model.embed_dialog(dialog, image_embeds)
    return embeds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="in-memory preset when no --model-path (default tiny)")
    parser.add_argument("--model-path", help="a checkpoint folder in our format (see python -m model.convert)")
    parser.add_argument("--image", action="append", default=[], help="image file; repeat for several")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int,
                        help=f"default {DEFAULT_MAX_NEW_TOKENS}, or {RELEASED_MAX_NEW_TOKENS} with --released")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--released", action="store_true",
                        help="the release's 3-beam search (printed at the end, not streamed)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--8bit", dest="load_in_8bit", action="store_true", help="LLM in int8 (bitsandbytes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Bad images are reported before torch and transformers are even imported: an instant answer.
        images = read_images(args.image)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from model.checkpoint import load_model
    from model.release.generation import generate_released
    from model.serving.engine import SamplingParams, stream

    default_tokens = RELEASED_MAX_NEW_TOKENS if args.released else DEFAULT_MAX_NEW_TOKENS
    try:
        params = SamplingParams(max_new_tokens=args.max_new_tokens or default_tokens,
                                temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.preset, args.model_path, load_in_8bit=args.load_in_8bit, device=args.device)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 1
    try:
        embeds = build_embeds(model, images, args.prompt, params.max_new_tokens)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.released:
        print(generate_released(model, embeds, params.max_new_tokens))
        return 0
    finish = None
    for event in stream(model, embeds, params):
        sys.stdout.write(event.text)
        sys.stdout.flush()
        finish = event.finish or finish
    sys.stdout.write("\n")
    if finish == "length":
        print(f"[stopped at --max-new-tokens {params.max_new_tokens}]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
