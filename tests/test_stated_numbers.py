"""Every number the course states in its prose is tied to a committed record (tests/record_numbers.py
says how): a stated number with no pin in tests/stated_numbers.json fails, and so does a pin whose
source no longer shows the number as written. `python tests/record_numbers.py --update` pins new
numbers where their value identifies the source and lists the rest; `--suggest` shows candidates."""
import pytest

import record_numbers as rn


@pytest.fixture(scope="module")
def ledger():
    return rn.load_ledger()


@pytest.fixture(scope="module")
def stated():
    printed = rn.printed_lines()
    return {doc: rn.stated(doc, printed) for doc in rn.DOCUMENTS}


def test_every_stated_number_is_pinned_to_a_record(ledger, stated):
    pinned = {(e["doc"], e["number"], e["unit"]) for e in ledger}
    loose = [f"{doc}: {number} in: {unit[:120]}" for doc, found in stated.items()
             for number, unit, _, _ in found if (doc, number, unit) not in pinned]
    assert not loose, (f"{len(loose)} stated numbers with no record (pin them with "
                       f"`python tests/record_numbers.py --update`, by hand, or mend the sentence):\n"
                       + "\n".join(loose[:40]))


def test_every_pin_still_shows_its_number(ledger):
    sources = rn.sources()
    wrong = [f"{e['doc']}: {e['number']} pinned to {e['source']}, "
             + ("which no record gives" if e["source"] not in sources else f"which is {sources[e['source']][0]:g}")
             for e in ledger if e["source"] not in sources or not rn.shows(sources[e["source"]][0], e["number"])]
    assert not wrong, "\n".join(wrong)


def test_the_ledger_keeps_no_pin_of_a_sentence_that_is_gone(ledger, stated):
    present = {(doc, number, unit) for doc, found in stated.items() for number, unit, _, _ in found}
    stale = [f"{e['doc']}: {e['number']} in: {e['unit'][:100]}" for e in ledger
             if (e["doc"], e["number"], e["unit"]) not in present]
    assert not stale, "pins of sentences no document has (drop them with --update):\n" + "\n".join(stale[:20])


def test_a_typed_number_finds_no_source_where_a_recorded_one_does():
    """The tie can fail: a mean and its sd as the report gives them match their record; the same
    sentence with a made-up mean matches nothing."""
    key = next(k for k in rn.sources() if k.startswith("doping/doped-kp/M3/mean"))
    mean, sd = rn.sources()[key][0], rn.sources()[key.replace("/mean", "/sd")][0]
    true = f"doped KP ends at {mean:.2f} ± {sd:.2f}"
    assert key in [k for k, _ in rn.candidates(f"{mean:.2f}", true, ("mean", f"{sd:.2f}"))]
    assert not rn.candidates(f"{mean + 7.31:.2f}", true, ("mean", f"{sd:.2f}"))
    assert not rn.candidates("123.45", "doped KP ends at 123.45, far below dense")


def test_numbers_are_read_in_prose_not_in_code_or_equations(tmp_path, monkeypatch):
    doc = tmp_path / "doc.md"
    doc.write_text("Dense ends at 190.13 ± 0.99 (`lr = 2.5`) with $p = 0.35$.\n\n"
                   "    python run.py --rate 0.25\n\n| arm | ppl |\n|---|---|\n| kp | 207.41 |\n")
    monkeypatch.setattr(rn, "ROOT", tmp_path)
    found = [(n, pair) for n, _, _, pair in rn.stated("doc.md")]
    assert found == [("190.13", ("mean", "0.99")), ("0.99", ("sd", "190.13")), ("207.41", None)]
