"""simvp_core.env: an environment variable set to a wrong value is refused in one line naming it,
never ignored; unset or empty means the default."""

from __future__ import annotations

import pytest

from simvp_core import env


@pytest.mark.parametrize("value", ["-1", "0", "abc", "1e3", "10" * 20, " 5 5", "٣", "9" * 100])
def test_a_wrong_integer_is_refused_naming_the_variable(monkeypatch, value: str) -> None:
    monkeypatch.setenv("SIMVP_TEST_INT", value)
    with pytest.raises(env.EnvError) as info:
        env.integer("SIMVP_TEST_INT", 10, 1, 1000)
    message = str(info.value)
    assert message.startswith("$SIMVP_TEST_INT=") and "expected an integer in [1, 1,000]" in message
    assert len(message) <= 300 and "\n" not in message


@pytest.mark.parametrize("value, expected", [(None, 10), ("", 10), ("  ", 10), (" 7 ", 7), ("1000", 1000)])
def test_unset_or_empty_is_the_default_and_a_good_value_is_read(monkeypatch, value, expected) -> None:
    if value is None:
        monkeypatch.delenv("SIMVP_TEST_INT", raising=False)
    else:
        monkeypatch.setenv("SIMVP_TEST_INT", value)
    assert env.integer("SIMVP_TEST_INT", 10, 1, 1000) == expected


@pytest.mark.parametrize("value, words", [
    ("ftp://example.org/mnist/", "is not a URL"), ("example.org/mnist", "is not a URL"),
    ("http://[::1/", "is not a URL (Invalid IPv6 URL)"), ("http://host:99999/", "is not a URL"),
    (",,,", "no URL in it"), ("http://ok/,https://", "'https://' is not a URL"),
    ("http://a b/", "is not a URL"), ("http://x/\x1b[31m", "\\x1b[31m"), ("x" * 5000, "5,000 characters"),
])
def test_malformed_mirrors_are_refused_in_one_line(monkeypatch, value: str, words: str) -> None:
    from simvp_core.fetch import mnist_mirrors

    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", value)
    with pytest.raises(env.EnvError) as info:
        mnist_mirrors()
    message = str(info.value)
    assert message.startswith("$SIMVP_MNIST_MIRRORS") and words in message, message
    assert "\n" not in message and "\x1b" not in message and len(message) <= 300


def test_good_mirrors_are_read_in_order(monkeypatch) -> None:
    from simvp_core.fetch import MNIST_MIRRORS, mnist_mirrors

    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", " http://127.0.0.1:8000/a/ , https://example.org/mnist/,file:///data/")
    assert mnist_mirrors() == ["http://127.0.0.1:8000/a/", "https://example.org/mnist/", "file:///data/"]
    monkeypatch.setenv("SIMVP_MNIST_MIRRORS", "")
    assert mnist_mirrors() == list(MNIST_MIRRORS)
