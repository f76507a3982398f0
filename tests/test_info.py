"""anyfc._info (``anyfc.info()``): every backend is listed."""

import anyfc


def test_info_lists_every_backend(capsys):
    text = anyfc.info()
    for name in anyfc.BACKENDS:
        assert name in text
    assert "numpy             usable: yes" in capsys.readouterr().out
