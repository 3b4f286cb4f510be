"""Every option of every `detector` command says what it does and what values it takes."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from detector.cli import main

# Numeric options that take any integer: their help must say so.
_UNBOUNDED = "any integer"


def _options():
    ctx = click.Context(main)
    for name, cmd in sorted(main.commands.items()):
        sub = click.Context(cmd, info_name=name, parent=ctx)
        for p in cmd.params:
            if isinstance(p, click.Option):
                yield name, p, sub


OPTIONS = list(_options())


def test_the_walk_finds_every_command():
    assert {n for n, _, _ in OPTIONS} >= {"generate", "train", "score", "evaluate", "explain",
                                          "report"}
    assert len(OPTIONS) > 30


@pytest.mark.parametrize("command,option,ctx", OPTIONS,
                         ids=[f"{n}:{p.name}" for n, p, _ in OPTIONS])
def test_every_option_has_help_and_states_its_range(command, option, ctx):
    if option.name == "help":
        return
    assert option.help and option.help.strip(), f"{command} {option.opts} has no help"
    record = option.get_help_record(ctx)
    assert record is not None
    text = record[1]
    t = option.type
    if isinstance(t, (click.IntRange, click.FloatRange)):
        # click writes the bounds into the help line, e.g. "[x>=1]" or "[0<x<1]"
        assert re.search(r"x?[<>]=?|<=?x", text), f"{command} {option.opts}: {text!r}"
    elif isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
        assert re.search(r"in [\[(][-\d.]+, [-\d.]+[\])]", text) or _UNBOUNDED in text, (
            f"{command} {option.opts} is numeric but its help states no range: {text!r}")
    elif isinstance(t, click.Choice):
        assert all(c in (record[0] + text) for c in t.choices)
    default = option.get_default(ctx, call=False)
    unset = default is None or type(default).__name__ == "Sentinel"  # click >= 8.3: UNSET
    if not unset and not option.is_flag and not option.multiple:
        assert option.show_default or "[default:" in text, (
            f"{command} {option.opts} has a default but does not show it")


def test_help_pages_show_ranges_as_a_user_sees_them():
    runner = CliRunner()
    gen = runner.invoke(main, ["generate", "--help"], terminal_width=200).output
    assert "Declarations to generate" in gen and "x>=1" in gen
    assert "0<=x<=0.5" in gen and "Share of declarations given a fraud scheme" in gen
    train = runner.invoke(main, ["train", "--help"], terminal_width=200).output
    assert "in [0, 1)" in train and "first lane" in train
    assert "0<x<1" in train
