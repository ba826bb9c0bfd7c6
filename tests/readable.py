"""What every figure of the course must give a reader, checked by behaviour rather than wording: a
title (its own or its figure's), labelled axes, and a legend wherever it draws several labelled
series."""


def labelled_series(ax):
    artists = list(ax.lines) + list(ax.collections) + list(ax.containers)
    return [a for a in artists if a.get_label() and not a.get_label().startswith("_")]


def assert_readable(ax):
    suptitle = ax.figure._suptitle.get_text() if ax.figure._suptitle is not None else ""
    assert (ax.get_title() or suptitle).strip(), "the figure has no title"
    assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), "an axis has no label"
    if len(labelled_series(ax)) > 1:
        assert ax.get_legend() is not None, "several labelled series and no legend"
