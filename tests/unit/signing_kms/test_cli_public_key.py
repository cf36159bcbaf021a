"""``chainmail keys public-key [KMSREF|KEY]``: the argument form, next to ``--key`` and ``$CHAINMAIL_KEY``."""

from __future__ import annotations

from pathlib import Path

import pytest

from clirun import cli


def test_argument_and_option_print_the_same_pem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "pw")
    code, _, err = cli(["keys", "generate", str(tmp_path)], capsys)
    assert code == 0, err
    expected = (tmp_path / "cosign.pub").read_text()
    for args in (["keys", "public-key", str(tmp_path)], ["keys", "public-key", "--key", str(tmp_path / "cosign.key")],
                 ["keys", "public-key", str(tmp_path / "cosign.pub")]):
        code, out, err = cli(args, capsys)
        assert (code, out) == (0, expected), err
    monkeypatch.setenv("CHAINMAIL_KEY", str(tmp_path / "elsewhere"))
    code, out, err = cli(["keys", "public-key", str(tmp_path)], capsys)
    assert (code, out) == (0, expected), err  # the argument wins over the step's environment


def test_a_bad_kms_reference_is_one_line_exit_5(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["keys", "public-key", "awskms://alias/missing-third-slash"], capsys)
    assert code == 5 and out == ""
    assert err.splitlines()[0] == "Error: 'awskms://alias/missing-third-slash' is not an AWS KMS key reference"
    assert "Traceback" not in err
