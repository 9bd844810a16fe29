"""training/config.py: one dataclass is the YAML schema, the CLI and --help; every problem is reported at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from training.config import DOCS, FIELDS, ConfigError, TrainConfig, build_config, parse_args

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "captions.jsonl"
    path.write_text('{"image": "a.png", "caption": "a red circle"}\n')
    return path


def test_every_field_is_documented():
    assert set(DOCS) == set(FIELDS), f"fields without a docstring: {set(FIELDS) - set(DOCS)}"


def test_stage_presets_are_valid_configs(data_file, tmp_path):
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "config.json").write_text("{}")
    one = parse_args(["--config", str(CONFIGS / "stage1.yaml"), "--data", str(data_file)])
    two = parse_args(["--config", str(CONFIGS / "stage2.yaml"), "--data", str(data_file),
                      "--init_from", str(tmp_path / "stage1")])
    assert (one.stage, two.stage) == (1, 2)
    assert one.append_eos is False and two.append_eos is True  # stage 2 teaches the model to stop
    assert two.llm_lr < two.lr


def test_cli_overrides_yaml_and_coerces_types(data_file, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": str(data_file), "lr": "1e-3", "batch_size": 16,
                                        "micro_batch_size": 4, "append_eos": True}))
    cfg = parse_args(["--config", str(cfg_file), "--lr", "5e-4", "--append-eos", "false", "--max_steps=7",
                      "--feature_cache", "none"])
    assert cfg.lr == 5e-4 and cfg.append_eos is False and cfg.max_steps == 7 and cfg.feature_cache is None
    assert cfg.batch_size == 16 and isinstance(cfg.lr, float)


def test_all_problems_reported_at_once(data_file, tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": str(data_file), "lrr": 0.1, "optimizer": "sgd",
                                        "batch_size": 10, "micro_batch_size": 4}))
    with pytest.raises(ConfigError) as err:
        parse_args(["--config", str(cfg_file), "--stage", "3", "--lr", "fast", "--warmup_ratio", "1.5",
                    "--epochs", "0", "--gradient_checkpointing", "maybe", "--no_such_option", "1",
                    "--init_from", str(tmp_path / "nowhere")])
    text = str(err.value)
    for expected in ("unknown key 'lrr' (did you mean 'lr'?)", "optimizer: must be one of adamw, adafactor",
                     "stage: must be one of vision, text, 1, 2", "lr: must be a number", "warmup_ratio: must be in [0, 1)",
                     "epochs: must be >= 1", "gradient_checkpointing: must be true or false",
                     "unknown option --no_such_option", "batch_size 10 must be a multiple of micro_batch_size 4",
                     "init_from:"):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert len(err.value.problems) == 10


def test_missing_data_and_stage2_without_init_are_reported():
    with pytest.raises(ConfigError) as err:
        build_config({"stage": 2, "data": "/no/such/file.json"})
    assert any("no such file" in p for p in err.value.problems)
    assert any("stage 2 starts from a trained checkpoint" in p for p in err.value.problems)


def test_saved_config_round_trips(data_file, tmp_path):
    cfg = build_config({"data": str(data_file), "lr": 0.02})
    cfg.save(tmp_path / "train_config.yaml")
    again = build_config(yaml.safe_load((tmp_path / "train_config.yaml").read_text()))
    assert again == cfg and isinstance(again, TrainConfig)


def test_run_py_from_repo_root_help_and_errors(tmp_path):
    """`python training/run.py` works as a plain script and rejects a bad config before loading anything."""
    help_text = subprocess.run([sys.executable, "training/run.py", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=60)
    assert help_text.returncode == 0, help_text.stderr
    flat = " ".join(help_text.stdout.split())
    assert "--micro_batch_size INT" in flat and "gradient accumulation makes up the rest" in flat
    assert "--optimizer {adamw,adafactor}" in flat
    bad = subprocess.run([sys.executable, "training/run.py", "--data", str(tmp_path / "x.jsonl"), "--lr", "-1",
                          "--bogus", "2"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "lr: must be > 0" in bad.stderr and "unknown option --bogus" in bad.stderr
    assert "no such file" in bad.stderr


def test_resume_inherits_the_saved_config_but_not_its_stop(data_file, tmp_path):
    ckpt = tmp_path / "run" / "step-000003"
    ckpt.mkdir(parents=True)
    saved = build_config({"data": str(data_file), "lr": 0.5, "stop_at": 3, "output_dir": str(tmp_path / "run")})
    saved.save(ckpt / "train_config.yaml")
    (ckpt / "training_state.pt").write_bytes(b"")
    (ckpt / "progress.json").write_text('{"step": 3}')
    for resume in (str(ckpt), "latest"):
        cfg = parse_args(["--resume", resume, "--output_dir", str(tmp_path / "run"), "--log_every", "5"])
        assert cfg.resume == str(ckpt) and cfg.lr == 0.5 and cfg.log_every == 5
        assert cfg.stop_at is None  # stopping early concerned the interrupted invocation only
    assert parse_args(["--resume", "latest", "--data", str(data_file),
                       "--output_dir", str(tmp_path / "fresh")]).resume is None  # nothing yet: a fresh start


def test_native_precision_is_bf16_only_where_the_chip_computes_in_it(data_file, tmp_path):
    from training.distributed import cpu_has_bf16, make_accelerator, uses_bf16

    # (precision, cuda, a CPU with bf16 instructions) -> bf16 autocast?
    assert uses_bf16("native", cuda=True, cpu_bf16=False)
    assert uses_bf16("native", cuda=False, cpu_bf16=True)
    assert not uses_bf16("native", cuda=False, cpu_bf16=False)  # emulated bf16: 3.3x slower than fp32 (measured)
    assert not uses_bf16("auto", cuda=False, cpu_bf16=True)  # auto keeps its old meaning: fp32 on every CPU
    assert uses_bf16("auto", cuda=True, cpu_bf16=False) and uses_bf16("bf16", cuda=False, cpu_bf16=False)
    assert not uses_bf16("fp32", cuda=True, cpu_bf16=True)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # torch's private probes agree with what the kernel says this CPU has
        flags = set(cpuinfo.read_text().split())
        assert cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    cfg = build_config({"stage": 1, "data": str(data_file), "output_dir": str(tmp_path), "precision": "native"})
    if not torch.cuda.is_available():
        assert make_accelerator(cfg).mixed_precision == ("bf16" if cpu_has_bf16() else "no")


def test_runs_of_other_precisions_follow_each_other_in_one_process(data_file, tmp_path):
    """accelerate keeps one state per process; a run in bf16 after one in fp32 (stage 1, then stage 2 on a CPU
    with bf16) must not be refused as 'already initialized'."""
    from training.distributed import make_accelerator

    common = {"stage": 1, "data": str(data_file), "output_dir": str(tmp_path)}
    assert make_accelerator(build_config({**common, "precision": "fp32"})).mixed_precision == "no"
    assert make_accelerator(build_config({**common, "precision": "bf16"})).mixed_precision == "bf16"
    assert make_accelerator(build_config({**common, "precision": "fp32"})).mixed_precision == "no"
    assert make_accelerator(build_config({**common, "precision": "fp32"})).mixed_precision == "no"
