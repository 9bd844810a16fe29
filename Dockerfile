# One image for both processes: `python -m bot` (the default command) and `python -m model.worker`
# (docker-compose.yml sets it). See docs/operations.md.
#
# torch: the default wheel from PyPI is the CUDA build on x86_64 Linux; it runs on a CPU too, it is just big
# (several GB). A bot-only or CPU-only machine can build a slim image with
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t omnifusion-telegram .
# The GPU driver comes from the host (NVIDIA Container Toolkit), not from this image.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface

WORKDIR /app

# torch first and pinned (the same pins as pyproject.toml and the Makefile; tests/test_deploy_files.py
# checks they agree), in a layer of its own so code changes do not reinstall it.
RUN pip install torch==2.14.1 torchvision==0.29.1 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY model ./model
COPY training ./training
RUN pip install .

# Nothing here needs root; /cache is where Hugging Face may keep files, /checkpoints where weights are mounted.
RUN useradd --create-home --uid 10001 app && mkdir -p /cache /checkpoints && chown app /cache
USER app

CMD ["python", "-m", "bot"]
