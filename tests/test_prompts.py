"""Prompt sets: the shipped splits, user files (.txt / .jsonl), and clear errors for bad files."""

import json
from collections import Counter

import pytest

from morl_core.policy.model import ASSETS
from morl_core.prompts import SPLITS, available, load_prompts

KINDS = {"review", "request", "question", "story", "opinion"}


def shipped_rows(split: str) -> list[dict]:
    path = ASSETS / "prompts" / f"default.{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_default_set_is_shipped():
    assert "default" in available()
    assert SPLITS == ("train", "eval")


@pytest.mark.parametrize("split", SPLITS)
def test_shipped_split_loads_in_file_order(split):
    prompts = load_prompts("default", split)
    assert prompts == [row["text"] for row in shipped_rows(split)]
    assert all(isinstance(p, str) and p == p.strip() and p for p in prompts)
    assert len(set(prompts)) == len(prompts)  # no duplicates within a split
    assert len(prompts) >= (40 if split == "train" else 15)


def test_train_and_eval_are_disjoint_and_cover_every_kind():
    train, held_out = load_prompts("default", "train"), load_prompts("default", "eval")
    assert not set(train) & set(held_out)
    assert not {p.lower() for p in train} & {p.lower() for p in held_out}
    for split in SPLITS:
        kinds = Counter(row["kind"] for row in shipped_rows(split))
        assert set(kinds) == KINDS, split
        assert min(kinds.values()) >= 3
    # about a quarter of each kind is held out
    train_kinds = Counter(row["kind"] for row in shipped_rows("train"))
    eval_kinds = Counter(row["kind"] for row in shipped_rows("eval"))
    for kind in KINDS:
        share = eval_kinds[kind] / (train_kinds[kind] + eval_kinds[kind])
        assert 0.15 <= share <= 0.35, kind


def test_txt_file_one_prompt_a_line(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(
        "  First prompt  \n\nSecond prompt\n   \nThird, with a comma\n", encoding="utf-8"
    )
    expected = ["First prompt", "Second prompt", "Third, with a comma"]
    assert load_prompts(str(path)) == expected
    assert load_prompts(path, "eval") == expected  # a file gives the same prompts for both splits


def test_jsonl_file_reads_the_text_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"text": "A café review", "kind": "review"}, {"text": " keeps its spaces "}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_prompts(str(path)) == ["A café review", " keeps its spaces "]


def test_unknown_set_lists_the_shipped_ones():
    with pytest.raises(
        ValueError, match=r"unknown prompt set 'nope'; shipped: (\w+, )*default(, \w+)*, or give"
    ):
        load_prompts("nope")


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of train, eval, got 'test'"):
        load_prompts("default", "test")


def test_folder_is_not_a_prompt_file(tmp_path):
    with pytest.raises(ValueError, match="unknown prompt set"):
        load_prompts(str(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n\n{"text": "ok"\n', r":3: expected a JSON object with a 'text' field"),
        (
            '{"text": "ok"}\n{"prompt": "no text field"}\n',
            r":2: expected a JSON object with a 'text' field",
        ),
        ('["a list"]\n', r":1: expected a JSON object with a 'text' field"),
        ('{"text": null}\n', r":1: 'text' must be a non-empty string, got None"),
        ('{"text": 42}\n', r":1: 'text' must be a non-empty string, got 42"),
        ('{"text": "  "}\n', r":1: 'text' must be a non-empty string, got '  '"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        load_prompts(str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        load_prompts(str(path))


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text \(invalid continuation byte"):
        load_prompts(str(path))
