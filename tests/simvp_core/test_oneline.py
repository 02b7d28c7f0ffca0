"""simvp_core.oneline: paths cut in the middle for one-line errors."""

from simvp_core.oneline import short_path


def test_short_path_keeps_short_paths_and_the_name_of_long_ones():
    assert short_path("/a/b/c.gz", 20) == "/a/b/c.gz"
    long = "/x" * 100 + "/train-images-idx3-ubyte.gz"
    cut = short_path(long, 64)
    assert len(cut) == 64 and cut.startswith("/x/x") and cut.endswith("/train-images-idx3-ubyte.gz")
    assert "..." in cut and len(short_path(long, 200)) == 200
