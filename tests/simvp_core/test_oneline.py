"""simvp_core.oneline: paths cut in the middle for one-line errors, durations, one-line usage errors."""

import pytest

from simvp_core.oneline import OneLineParser, duration, short_path, size


def test_short_path_keeps_short_paths_and_the_name_of_long_ones():
    assert short_path("/a/b/c.gz", 20) == "/a/b/c.gz"
    long = "/x" * 100 + "/train-images-idx3-ubyte.gz"
    cut = short_path(long, 64)
    assert len(cut) == 64 and cut.startswith("/x/x") and cut.endswith("/train-images-idx3-ubyte.gz")
    assert "..." in cut and len(short_path(long, 200)) == 200


@pytest.mark.parametrize("seconds,short,long", [
    (None, "n/a", "n/a"), (float("inf"), "n/a", "n/a"), (float("nan"), "n/a", "n/a"),
    (0.4, "0s", "0 s"), (59.4, "59s", "59 s"), (59.6, "1m00s", "1 min 00 s"), (61, "1m01s", "1 min 01 s"),
    (3599, "59m59s", "59 min 59 s"), (3725, "1h02m", "1 h 02 min 05 s"), (90_000, "25h00m", "25 h 00 min 00 s"),
])
def test_a_duration_is_rounded_to_seconds_short_for_progress_lines_long_for_reports(seconds, short, long):
    assert (duration(seconds), duration(seconds, "long")) == (short, long)


@pytest.mark.parametrize("n_bytes,text", [
    (None, "n/a"), (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1500, "1.5 kB"), (999_999, "1.0 MB"),
    (12_345_678, "12.3 MB"), (405_000_000_000, "405 GB"), (10**16, "10000 TB"),
])
def test_a_size_is_in_decimal_units_with_one_decimal_below_100(n_bytes, text):
    assert size(n_bytes) == text


def test_a_usage_error_is_one_short_line_and_exit_2(capsys):
    parser = OneLineParser(prog="python -m tool")
    parser.add_argument("--epochs", type=int)
    for argv, words in ((["--epochs", "1e20"], "argument --epochs: invalid int value: '1e20'"),
                        (["--epochs", "9" * 5000 + "x"], "invalid int value"), (["--nope"], "unrecognized")):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and len(err) <= 300, err
        assert err.startswith("error: python -m tool: ") and words in err
        assert err.endswith("; see python -m tool --help\n")


@pytest.mark.parametrize("module", ["simvp_core.train", "simvp_core.evaluate", "simvp_core.convert",
                                    "simvp_core.fetch", "search.run.plan", "search.space.json_schema",
                                    "search.cluster_files", "search.report.cli"])
def test_every_cli_refuses_an_unknown_flag_in_one_line(module: str, capsys) -> None:
    import importlib

    mod = importlib.import_module(module)
    parse = mod.build_parser().parse_args if hasattr(mod, "build_parser") else mod.main
    with pytest.raises(SystemExit) as info:
        parse(["--no-such-flag"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: python -m "), err


def test_control_characters_are_escaped_so_nothing_breaks_a_line_or_the_terminal():
    from simvp_core.oneline import error_line, printable

    raw = "name\nsecond line\r\x1b[31mred\x07\u2028end\x9b"
    assert printable(raw) == "name\\nsecond line\\r\\x1b[31mred\\x07\\u2028end\\x9b"
    assert printable("plain: ünïcödé, tabs\tstay visible") == "plain: ünïcödé, tabs\\tstay visible"
    line = error_line("what is wrong: " + "x" * 1000 + "; the fix\n")
    assert len(line) == 300 and line.startswith("error: what is wrong: ") and line.endswith("; the fix")
    assert "\n" not in line and " ... " in line
