"""The step registry: it generates the CLI, run_step and the docs' table; importing it and building
the parser load no torch; only the user's input errors get the CLI's one-line form."""
import subprocess
import sys
from pathlib import Path

import pytest

from irnet_fast import cli
from irnet_fast.errors import InputError, InputValueError
from irnet_fast.pipeline import steps

REPO = Path(__file__).resolve().parents[1]


def test_docs_table_is_generated_from_the_registry():
    text = (REPO / "docs" / "pipeline.md").read_text()
    assert steps.step_table() in text, "docs/pipeline.md: regenerate the table with steps.step_table()"


def test_every_step_is_a_command_with_its_arguments_and_a_function(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for step in steps.STEPS:
        assert callable(step.load()), step.name
        assert step.command in commands and cli.PIPELINE_COMMANDS[step.command] == step.help
        help_text = commands[step.command].format_help()
        for arg in step.args:
            assert arg.flag in help_text, (step.name, arg.flag)
        assert ("--no-resume" in help_text) == (step.kind == "train")
    order = steps.DEFAULT_ORDER
    assert order[0] == "train_cam" and order[-1] == "eval_ins"
    # the final networks train on the pseudo labels, after every pseudo-label step
    assert order.index("eval_ins_seg") < order.index("train_sem") < order.index("eval_sem")
    assert order.index("eval_ins_seg") < order.index("train_ins") < order.index("eval_ins")
    assert set(steps.EXTRA) == {"tune", "export_coco", "train_aff", "make_sem_seg_aff", "eval_sem_seg_aff"}


def test_parser_and_registry_import_no_torch():
    code = ("import sys; from irnet_fast import cli; cli.build_parser().parse_args(['make-cam', '--out', 'x']); "
            "from irnet_fast.pipeline import steps; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_step_functions_keep_their_names_after_their_modules_load():
    import importlib
    importlib.import_module("irnet_fast.pipeline.make_cam")
    from irnet_fast.pipeline import make_cam
    assert callable(make_cam) and make_cam.__name__ == "make_cam"


def test_run_step_rejects_unknown_steps_and_arguments(tmp_path):
    from irnet_fast.pipeline import Config, run_step
    with pytest.raises(InputValueError, match="unknown step 'paint'"):
        run_step("paint", Config(out_dir=str(tmp_path)))
    with pytest.raises(InputValueError, match=r"make_cam expected arguments among \['weights'\], got \['thresholds'\]"):
        run_step("make_cam", Config(out_dir=str(tmp_path)), thresholds=[0.1])


def test_cli_keeps_the_traceback_of_anything_but_input_errors(monkeypatch, tmp_path, capsys):
    from irnet_fast.pipeline import run
    data = tmp_path / "data"
    data.mkdir()
    argv = ["eval-cam", "--data-root", str(data), "--out", str(tmp_path / "out")]

    def bug(*args, **kwargs):
        raise KeyError("a bug, not the user's fault")
    monkeypatch.setattr(run, "run_step", bug)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(argv)

    def user_error(*args, **kwargs):
        raise InputValueError("the user's fault")
    monkeypatch.setattr(run, "run_step", user_error)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == "irnet-fast eval-cam: error: the user's fault"
    assert issubclass(InputValueError, ValueError) and issubclass(InputValueError, InputError)
