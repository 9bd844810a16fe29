""".env.example lists every setting of the bot and the worker, and its values are the defaults."""

from pathlib import Path

from bot.settings import Settings
from model.serving.settings import WorkerSettings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
TOKEN = "123456:TEST-token"


def listed() -> set[str]:
    return {line.split("=")[0] for line in EXAMPLE.read_text().splitlines() if "=" in line and line[0] != "#"}


def test_every_setting_is_listed_once():
    names = listed()
    assert {n.upper() for n in Settings.model_fields} <= names
    assert {n.upper() for n in WorkerSettings.model_fields} <= names
    lines = [line.split("=")[0] for line in EXAMPLE.read_text().splitlines() if "=" in line and line[0] != "#"]
    assert len(lines) == len(set(lines)), "a variable is listed twice"
    assert all(names & {n.upper() for n in cls.model_fields} for cls in (Settings, WorkerSettings))


def test_every_listed_line_has_a_comment_above_it():
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            j = i - 1
            while j >= 0 and "=" in lines[j] and not lines[j].startswith("#"):
                j -= 1  # a group of related variables may share one comment
            assert j >= 0 and lines[j].startswith("#"), f"{line.split('=')[0]} has no comment"


def test_example_values_are_the_defaults(monkeypatch):
    for name in listed():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOT_TOKEN", TOKEN)  # the one value the example leaves empty
    assert Settings(_env_file=EXAMPLE).model_dump() == Settings(_env_file=None).model_dump()
    from_example = WorkerSettings(_env_file=EXAMPLE).model_dump()
    defaults = WorkerSettings(_env_file=None).model_dump()
    from_example.pop("worker_name"), defaults.pop("worker_name")  # empty in the file: hostname-pid by default
    assert from_example == defaults
