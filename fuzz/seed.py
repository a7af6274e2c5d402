#!/usr/bin/env python3
"""Seeds the fuzz corpora from the reference data, at run time.

    fuzz/seed.py FIXTURES CORPUS_DIR

Writes CORPUS_DIR/<target>/ for every fuzz target: the fixtures' products
and index files (products), filters built from their items' attributes
(filter), their item paths behind the default store.toml templates
(path_template), and their signed files, signatures and keys (cleartext).
Nothing is copied into the repository.
"""
import hashlib
import json
import pathlib
import sys

# The default store.toml's product_id and paths (core/src/store/config.rs).
PRODUCT_ID = "com.ubuntu.maas.daily:v3:boot:{version}:{arch}:{subarch+kflavor}"
TEMPLATES = [
    "{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}",
    "{release}/{arch}/{version_name}/{ftype}",
]


def put(corpus, target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def items(doc):
    for pname, p in (doc.get("products") or {}).items():
        if not isinstance(p, dict):
            continue
        for vname, v in (p.get("versions") or {}).items():
            if not isinstance(v, dict):
                continue
            for iname, i in (v.get("items") or {}).items():
                if isinstance(i, dict):
                    yield pname, vname, iname, {**p, **v, **i}


def main():
    fixtures, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    counts = {}
    for f in sorted(fixtures.rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes()
        if f.suffix == ".json":
            put(corpus, "products", data)
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            for n, (pname, vname, iname, flat) in enumerate(items(doc)):
                if n >= 20:
                    break
                for key, value in list(flat.items())[:6]:
                    if isinstance(value, str) and "\n" not in value:
                        put(corpus, "filter", f"{key}={value}\n{value}")
                        put(corpus, "filter", f"{key}~^{value[:4]}\n{value}")
                        put(corpus, "filter", f"{key}!~{value[-3:]}$\n{pname}")
                path = flat.get("path")
                if isinstance(path, str):
                    put(corpus, "path_template", "\n".join([PRODUCT_ID, *TEMPLATES, path]))
        elif f.suffix in (".sjson", ".gpg", ".asc"):
            put(corpus, "cleartext", data)
    for t in ("products", "filter", "path_template", "cleartext"):
        counts[t] = len(list((corpus / t).iterdir())) if (corpus / t).is_dir() else 0
    print("seeds: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    if not all(counts.values()):
        sys.exit(f"no seeds for some target under {fixtures}")


main()
