#!/usr/bin/env python3
"""Writes a synthetic simplestreams mirror for query benchmarks and tests.

Usage: gen_stream.py [--data] OUT_DIR [ITEMS]   (default 40000 items)

OUT_DIR/streams/v1/index.json lists two products files: a large one holding
ITEMS items (products x versions x 4 items) and a small one; a third index
entry has a format readers skip. The data is deterministic and exercises what
sstream-query's output depends on: attributes inherited at every level and
overridden deeper, `_aliases`, booleans, integers and floats, strings that
Python quotes or escapes differently (quotes, backslashes, control and
non-ASCII characters), items without `path`, md5-only checksums, versions
with no items, and version names whose string order differs from their
numeric order.

With --data, OUT_DIR is a build output a store can insert (the mount
benchmarks): every item has a path unique to its product and a data file
there (a few dozen bytes, distinct), with its real size and sha256, and only
the large products file is written.
"""

import hashlib
import json
import os
import sys

ITEMS_PER_VERSION = 4
VERSIONS_PER_PRODUCT = 50
UPDATED = "Sun, 22 Nov 2026 00:52:13 +0000"
ODD_STRINGS = [
    "it's",
    'say "hi"',
    "both ' and \"",
    "back\\slash",
    "tab\there",
    "caf\u00e9 \u4e2d\u6587",
    "nbsp\u00a0soft\u00adhyphen",
    "bell\u0007del\u007f",
    "emoji \U0001f600 and \U000e0001",
    "a long description with many words that goes past the width of eighty columns for pprint",
]


def sha(n):
    return hashlib.sha256(b"%d" % n).hexdigest()


def big_products(n_items, data_dir=None):
    per_product = VERSIONS_PER_PRODUCT * ITEMS_PER_VERSION
    n_products = max(1, -(-n_items // per_product))
    products = {}
    count = 0
    arches = ["amd64", "arm64", "armhf", "ppc64el", "s390x"]
    releases = ["focal", "jammy", "noble", "oracular"]
    # Document order differs from sorted order on every level.
    for p in sorted(range(n_products), key=lambda p: (p * 7) % n_products):
        arch = arches[p % len(arches)]
        release = releases[p % len(releases)]
        name = "com.example.bench:v1:%s:%s:p%03d" % (release, arch, p)
        product = {
            "arch": arch,
            "release": release,
            "os": "ubuntu",
            "release_title": ODD_STRINGS[p % len(ODD_STRINGS)],
            "support_eol": "2029-05-31",
            "supported": p % 3 != 0,
            "ratio": [0.5, 1.0, 1e16, 2.5e-07][p % 4],
            "region": "r%d" % (p % 3),
            "versions": {},
        }
        for v in sorted(range(VERSIONS_PER_PRODUCT), key=lambda v: (v * 17) % 50):
            if count >= n_items:
                break
            # 2025MMDD plus a ".N" suffix on some, so "…01.10" < "…01.2".
            vname = "202501%02d" % (v % 28 + 1)
            if v >= 28:
                vname += ".%d" % (v - 27)
            version = {"label": ["daily", "release"][v % 2], "items": {}}
            if v % 7 == 0:
                version["pubname"] = "bench-%s-%s" % (release, vname)
            for i in range(ITEMS_PER_VERSION):
                if count >= n_items:
                    break
                count += 1
                ftype = ["squashfs", "boot-kernel", "boot-initrd", "manifest"][i]
                item = {
                    "ftype": ftype,
                    "size": 1000 + count,
                }
                if data_dir is not None:
                    # A path per product, a file per item, real checksums.
                    item["path"] = "%s/%s/p%03d/%s/%s" % (release, arch, p, vname, ftype)
                    if i == 2:
                        item["path"] += " with space"
                    body = b"item %d of %s\n" % (count, name.encode())
                    dest = os.path.join(data_dir, item["path"])
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as f:
                        f.write(body)
                    item["size"] = len(body)
                    item["sha256"] = hashlib.sha256(body).hexdigest()
                    version["items"]["%s.%s" % (ftype, "img" if i else "sq")] = item
                    continue
                if i == 3 and v % 5 == 0:
                    pass  # no path: no item_url, no checksum needed
                else:
                    item["path"] = "%s/%s/%s/%s" % (release, arch, vname, ftype)
                    if i == 2:
                        item["path"] += " with space"
                if i == 1 and v % 3 == 0:
                    item["md5"] = sha(count)[:32]
                else:
                    item["sha256"] = sha(count)
                if i == 0:
                    item["kpackage"] = "linux-generic"
                    item["label"] = "item-label"
                if count % 11 == 0:
                    item["note"] = ODD_STRINGS[count % len(ODD_STRINGS)]
                if count % 13 == 0:
                    item["crsn"] = "us-east-1"
                version["items"]["%s.%s" % (ftype, "img" if i else "sq")] = item
            product["versions"][vname] = version
        if p % 17 == 0:
            product["versions"]["99990101"] = {"label": "empty"}
            product["versions"]["99990102"] = {"label": "empty", "items": {}}
        products[name] = product
    return products


def main():
    args = sys.argv[1:]
    data = "--data" in args
    args = [a for a in args if a != "--data"]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    out = args[0]
    n_items = int(args[1]) if len(args) == 2 else 40000
    v1 = os.path.join(out, "streams", "v1")
    os.makedirs(v1, exist_ok=True)
    big = {
        "format": "products:1.0",
        "content_id": "com.example.bench:v1:download",
        "datatype": "image-downloads",
        "updated": UPDATED,
        "license": ODD_STRINGS[0],
        "flag": True,
        "_aliases": {
            "crsn": {
                "us-east-1": {
                    "endpoint": "https://ec2.us-east-1.example",
                    "region": "us-east-1",
                }
            }
        },
        "products": big_products(n_items, out if data else None),
    }
    if data:
        path = os.path.join(v1, "%s.json" % big["content_id"])
        with open(path, "w") as f:
            json.dump(big, f, indent=1, separators=(",", ": "))
            f.write("\n")
        return
    small = {
        "format": "products:1.0",
        "content_id": "com.example.bench:v1:small",
        "datatype": "image-ids",
        "updated": UPDATED,
        "products": {
            "com.example.small:p": {
                "arch": "amd64",
                "versions": {
                    "1": {"items": {"id": {"id": "ami-1", "size": 5}}},
                    "2": {"items": {"id": {"id": "ami-2", "size": 6}}},
                },
            }
        },
    }
    index = {"format": "index:1.0", "updated": UPDATED, "index": {}}
    for doc in (big, small):
        path = "streams/v1/%s.json" % doc["content_id"]
        with open(os.path.join(out, path), "w") as f:
            json.dump(doc, f, indent=1, separators=(",", ": "))
            f.write("\n")
        index["index"][doc["content_id"]] = {
            "format": "products:1.0",
            "datatype": doc["datatype"],
            "path": path,
            "updated": UPDATED,
            "products": sorted(doc["products"]),
        }
    index["index"]["com.example.bench:v1:mirrors"] = {
        "format": "mirrors:1.0",
        "path": "streams/v1/mirrors.json",
        "updated": UPDATED,
    }
    with open(os.path.join(v1, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True, separators=(",", ": "))
        f.write("\n")


if __name__ == "__main__":
    main()
