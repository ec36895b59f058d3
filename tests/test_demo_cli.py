"""The random-walk demo and the command line."""
import json

import pytest

from irnet_fast import cli, demo


def test_demo_writes_report_and_walk_beats_cams(tmp_path):
    summary = demo.run(str(tmp_path), 94, 125, seed=0)
    assert (tmp_path / "random_walk_demo.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["rw_miou"] >= summary["cam_miou"] + 10
    for name, row in summary["backends"].items():
        diff = next(v for k, v in row.items() if k.startswith("max_rel_diff"))
        assert diff <= 1e-3, name
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_info_and_errors(capsys):
    assert cli.main(["info"]) == 0
    assert '"backends"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["demo", "--height", "0"])
    assert "--height and --width expected >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])
