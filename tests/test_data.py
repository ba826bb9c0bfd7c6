import numpy as np
import pytest

from dkp.core.data import DataError, Vocab, batchify, bptt_windows, load_corpus, n_windows, tokenize


def test_ptb_word_counts(ptb):
    assert (len(ptb.train), len(ptb.valid), len(ptb.test)) == (929_590, 73_760, 82_430)
    assert len(ptb.vocab) == 10_000
    assert ptb.vocab.decode(ptb.valid[:4]) == ["consumers", "may", "want", "to"]
    assert ptb.vocab.itos.count("<eos>") == 1


def test_ptb_char_level():
    corpus = load_corpus("ptb", level="char")
    # 49 distinct characters in train (a space among them, written '_'), plus <eos>.
    assert len(corpus.vocab) == 50
    assert "_" in corpus.vocab.stoi and "<eos>" in corpus.vocab.stoi
    assert 5.0e6 < len(corpus.train) < 5.2e6


def test_unigram_perplexity_is_the_bar(ptb):
    # add-one unigram on train, scored on valid: several hundred
    assert 600 < ptb.unigram_perplexity("valid") < 800


def test_directory_corpus_and_vocab_from_train_only(corpus_dir):
    corpus = load_corpus(corpus_dir)
    # "a" appears only in valid: it maps to <unk>, it is not added to the vocabulary
    assert "a" not in corpus.vocab.stoi
    assert corpus.vocab.decode(corpus.valid) == ["the", "cat", "sat", "<eos>", "<unk>", "dog", "<eos>"]
    assert len(corpus.train) == 12  # 6 + 4 words, 2 <eos>


def test_a_corpus_is_read_once_per_process_and_shared_read_only(corpus_dir):
    first = load_corpus(corpus_dir)
    assert load_corpus(corpus_dir) is first                    # the same files: not read again
    with pytest.raises(ValueError, match="read-only"):
        first.train[0] = 0                                      # no caller can change another's data
    train = corpus_dir / "ptb.train.txt"
    train.write_text(train.read_text() + "the dog\n")           # an edited file is read again
    second = load_corpus(corpus_dir)
    assert second is not first and len(second.train) == len(first.train) + 3


def test_empty_lines_count_as_eos():
    assert tokenize("a b\n\nc\n") == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
    assert tokenize("ab c\n", level="char") == ["a", "b", "_", "c", "<eos>"]


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")


def test_missing_file(corpus_dir):
    (corpus_dir / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match=r"missing data file .*ptb\.test\.txt"):
        load_corpus(corpus_dir)


def test_empty_file(corpus_dir):
    (corpus_dir / "ptb.valid.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="valid split is empty"):
        load_corpus(corpus_dir)


def test_not_utf8(corpus_dir):
    (corpus_dir / "ptb.train.txt").write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_corpus(corpus_dir)


def test_unknown_token_without_unk(corpus_dir):
    (corpus_dir / "ptb.train.txt").write_text("the cat sat on the mat\n")
    (corpus_dir / "ptb.valid.txt").write_text("the cat\n")
    (corpus_dir / "ptb.test.txt").write_text("the dog\n")
    with pytest.raises(DataError, match=r"test split holds the token 'dog'.* has no <unk>"):
        load_corpus(corpus_dir)


def test_unknown_level():
    with pytest.raises(ValueError, match="level must be"):
        tokenize("a b", level="byte")


def test_batchify_columns_are_contiguous():
    ids = np.arange(23)
    s = batchify(ids, 4)                      # (5, 4): 3 tokens dropped
    assert s.shape == (5, 4)
    np.testing.assert_array_equal(s[:, 1], np.arange(5, 10))


def test_bptt_windows_cover_the_stream_with_shifted_targets():
    s = batchify(np.arange(4 * 11), 4)        # (11, 4)
    windows = list(bptt_windows(s, 3))
    assert len(windows) == n_windows(s, 3) == 4
    assert [x.shape[0] for x, _ in windows] == [3, 3, 3, 1]
    xs = np.concatenate([x for x, _ in windows])
    ys = np.concatenate([y for _, y in windows])
    np.testing.assert_array_equal(xs, s[:-1])
    np.testing.assert_array_equal(ys, s[1:])


def test_bad_batching_arguments():
    with pytest.raises(ValueError, match="batch_size must be"):
        batchify(np.arange(10), 0)
    with pytest.raises(DataError, match="too short"):
        batchify(np.arange(10), 8)
    with pytest.raises(ValueError, match="bptt must be"):
        list(bptt_windows(np.zeros((5, 2), int), 0))


def test_vocab_roundtrip():
    v = Vocab(["b", "a", "b", "c"])
    assert v.itos == ["b", "a", "c"]
    assert v.decode(v.encode(["c", "a"])) == ["c", "a"]
