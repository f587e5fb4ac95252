"""Build the embedded model's English training text from redistributable packaged sources.

Sources (each fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``; nothing is
installed on the system):

| package      | what we take                              | licence                          |
|--------------|-------------------------------------------|----------------------------------|
| fortunes     | short English fortune cookies (prose)     | BSD (see the package's copyright) |
| wordnet-base | usage examples and glosses of WordNet 3.0 | WordNet 3.0 licence (permissive) |
| dict-devil   | Bierce's The Devil's Dictionary (1911)    | public domain                    |
| (ours)       | seeded everyday-English grammar (grammar.py) | this project's licence        |

The output is one text file of documents separated by blank lines, plus a JSON manifest with
per-source document and character counts and the package versions.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
from pathlib import Path

import grammar

PACKAGES = {
    "fortunes": "BSD (fortune-mod; see usr/share/doc/fortunes/copyright)",
    "wordnet-base": "WordNet 3.0 licence (Princeton; permissive, see usr/share/doc/wordnet-base/copyright)",
    "dict-devil": "Public domain (copyright expired; see usr/share/doc/dict-devil/copyright)",
}
# Fortune files that are mostly prose; the others are code, ascii art or non-English.
FORTUNE_FILES = [
    "fortunes",
    "wisdom",
    "literature",
    "people",
    "humorists",
    "love",
    "men-women",
    "miscellaneous",
    "pets",
    "platitudes",
    "riddles",
    "food",
    "education",
    "goedel",
    "kids",
    "law",
    "medicine",
    "science",
    "songs-poems",
    "sports",
    "work",
    "politics",
    "drugs",
    "art",
    "news",
    "definitions",
    "cookie",
    "ethnic",
    "pratchett",
    "startrek",
    "magic",
    "paradoxum",
    "zippy",
]
_OK_CHARS = re.compile(r"^[A-Za-z0-9 .,;:!?'\"()\-\n]+$")


def fetch(workdir: Path) -> dict[str, str]:
    """Download and unpack the packages into ``workdir/root``; return {package: version}."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "root"
    versions = {}
    for package in PACKAGES:
        debs = list(workdir.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=workdir, check=True)
            debs = list(workdir.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
        versions[package] = debs[0].name.split("_")[1].replace("%3a", ":")
    return versions


def _clean(text: str) -> str:
    text = text.replace("\t", " ")
    text = re.sub(r"[ ]{2,}", " ", text)
    return re.sub(r"\n(?!\n)", " ", text).strip()


def fortunes(root: Path) -> list[str]:
    """Short prose fortunes (attribution lines dropped, ASCII-only, 20-600 characters)."""
    out = []
    for name in FORTUNE_FILES:
        path = root / "usr/share/games/fortunes" / name
        if not path.exists():
            continue
        for entry in path.read_text(encoding="latin-1").split("\n%\n"):
            lines = [ln for ln in entry.splitlines() if not re.match(r"^\s*(--|-- )", ln.strip())]
            text = _clean("\n".join(lines))
            if 20 <= len(text) <= 600 and _OK_CHARS.match(text) and ":" not in text[:12]:
                out.append(text)
    return out


def wordnet_examples(root: Path) -> list[str]:
    """WordNet usage examples (the quoted sentences in glosses), as sentences."""
    out = []
    for pos in ["noun", "verb", "adj", "adv"]:
        data = (root / "usr/share/wordnet" / f"data.{pos}").read_text(encoding="latin-1")
        for example in re.findall(r'"([^"]{12,200})"', data):
            if _OK_CHARS.match(example) and " " in example:
                sentence = example[0].upper() + example[1:]
                out.append(sentence if sentence[-1] in ".!?" else sentence + ".")
    return out


def devils_dictionary(root: Path) -> list[str]:
    """Bierce's definitions as 'Word, n. definition' paragraphs."""
    with gzip.open(root / "usr/share/dictd/devil.dict.dz") as handle:
        raw = handle.read().decode("latin-1")
    out = []
    for para in re.split(r"\n\s*\n", raw):
        text = _clean(para)
        if 30 <= len(text) <= 800 and _OK_CHARS.match(text) and "wiretap" not in text.lower():
            out.append(text)
    return out


def build(
    workdir: Path,
    out_dir: Path,
    seed: int = 0,
    grammar_docs: int = 150_000,
    natural_repeats: int = 3,
) -> dict:
    """Write ``out_dir/train.txt``, ``out_dir/valid.txt`` and ``out_dir/manifest.json``.

    The packaged (natural) text is small next to what the grammar can write, so its training
    documents are repeated ``natural_repeats`` times; validation documents are never repeated.
    """
    versions = fetch(workdir)
    root = workdir / "root"
    sources = {
        "fortunes": fortunes(root),
        "wordnet-base": wordnet_examples(root),
        "dict-devil": devils_dictionary(root),
        "grammar": grammar.documents(grammar_docs, seed=seed),
    }
    # WordNet examples are short fragments: pack a few into one "document" so lines look like prose.
    rng = random.Random(seed)
    wn = sources["wordnet-base"]
    rng.shuffle(wn)
    sources["wordnet-base"] = [" ".join(wn[i : i + 4]) for i in range(0, len(wn), 4)]
    docs = [(name, d) for name, items in sources.items() for d in items]
    rng.shuffle(docs)
    n_valid = max(1000, len(docs) // 100)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "valid.txt").write_text("\n\n".join(d for _, d in docs[:n_valid]) + "\n")
    train = [
        d for name, d in docs[n_valid:] for _ in range(1 if name == "grammar" else natural_repeats)
    ]
    rng.shuffle(train)
    (out_dir / "train.txt").write_text("\n\n".join(train) + "\n")
    manifest = {
        "seed": seed,
        "packages": {p: {"version": versions[p], "licence": lic} for p, lic in PACKAGES.items()},
        "sources": {
            n: {"documents": len(v), "characters": sum(map(len, v))} for n, v in sources.items()
        },
        "valid_documents": n_valid,
        "train_documents": len(docs) - n_valid,
        "natural_repeats": natural_repeats,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
