"""The settings file (``tierq serve --config tierq.toml``): the example in the repository is
what the code generates, every key of it parses back to the defaults, mistakes name the key
and the line, and variables and flags override the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tierq.cli import main
from tierq.config import ConfigError, Settings, from_env, from_sources
from tierq.config.sources import example_file as example

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_file_is_the_generated_one() -> None:
    kept = (ROOT / "tierq.example.toml").read_text(encoding="utf-8")
    assert kept == example() + "\n", "regenerate: tierq settings --example > tierq.example.toml"


def test_every_setting_of_the_example_parses_back_to_its_default(tmp_path: Path) -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    # A setting's line is "# name = value"; documentation lines never start with a name.
    uncommented = [
        line[2:]
        for line in example().splitlines()
        if line.startswith("# ") and line[2:].split(" = ")[0] in names
    ]
    assert len(uncommented) == len(names)
    assert {line.split(" = ")[0] for line in uncommented} == names
    path = tmp_path / "all.toml"
    path.write_text("\n".join(uncommented) + "\n", encoding="utf-8")
    settings, sources = from_sources(environ={}, config=str(path))
    assert settings == Settings()
    assert sources["workers"].startswith(f"{path}:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('host = "0.0.0.0"\nwrokers = 4\n', ":2: unknown setting 'wrokers'"),
        ("workers = 'many'\n", ":1: workers must be an integer, not 'many'"),
        ("workers = true\n", ":1: workers must be an integer"),
        ("breakers = 1\n", ":1: breakers must be true or false"),
        ("handlers = 'a'\n", ":1: handlers must be a list of strings"),
        ("[server]\nport = 1\n", "unknown setting 'server'"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        from_env(environ={}, config=str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_a_value_the_settings_refuse_names_it(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("workers = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="TIERQ_WORKERS"):
        from_env(environ={}, config=str(path))


def test_variables_override_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'workers = 8\nport = 9000\nhost = "127.0.0.2"\n'
        "queue_limits = {emails = {max_running = 3}}\n",
        encoding="utf-8",
    )
    settings, sources = from_sources(
        environ={"TIERQ_PORT": "9001", "TIERQ_HOST": "127.0.0.3"},
        overrides={"host": "127.0.0.4"},
        config=str(path),
    )
    assert (settings.workers, settings.port, settings.host) == (8, 9001, "127.0.0.4")
    assert sources["workers"] == f"{path}:1"
    assert sources["port"] == "TIERQ_PORT"
    assert sources["host"] == "flag"
    assert "memory_limit" not in sources  # a default
    assert settings.queue_limits == '{"emails": {"max_running": 3}}'


def test_the_settings_command_shows_where_each_value_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.toml"
    path.write_text('workers = 8\nsmtp_password = "s3cret"\n', encoding="utf-8")
    monkeypatch.setenv("TIERQ_PORT", "9001")
    assert main(["settings", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["workers"].split()[1:] == ["8", f"{path}:1"]
    assert rows["port"].split()[1:] == ["9001", "TIERQ_PORT"]
    assert rows["memory_limit"].split()[-1] == "default"
    assert "s3cret" not in out and "(hidden)" in rows["smtp_password"]
    path.write_text("nope = 1\n", encoding="utf-8")
    assert main(["settings", "--config", str(path)]) == 2
    assert f"{path}:1: unknown setting 'nope'" in capsys.readouterr().err
