"""The committed notebooks store no outputs: nothing a student opens can be older than the code and
the records it is computed from. A notebook saved with outputs fails here, naming its cells; clear
them with `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb` before committing."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_committed_notebook_stores_no_output(path):
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
              and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not stored, f"{path.name}: code cells {stored} store outputs or execution counts"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state"


def test_the_check_fails_on_a_stored_output(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["1"], "metadata": {}, "execution_count": 1,
                     "outputs": [{"output_type": "execute_result", "data": {"text/plain": ["1"]}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match=r"code cells \[0\] store outputs"):
        test_a_committed_notebook_stores_no_output(tmp_path / "x.ipynb")
