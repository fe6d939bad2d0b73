"""``crossforget search``: top-k items of a live index for a sentence (T2I) or an image (I2T)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossforget.cli.common import add_checkpoint_option

DESCRIPTION = (
    "Rank the index's items by Hamming distance to the query's code (ties by database "
    "index, as the exact mAP ranks them)."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="the index folder")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a sentence: images nearest it (text-to-image)")
    query.add_argument("--image", type=Path, help="an image file: captions nearest it (image-to-text)")
    parser.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    parser.add_argument("--exact", action="store_true", help="exact search even where an IVF index exists")
    add_checkpoint_option(
        parser,
        help="refuse to search unless the index serves this checkpoint (its sha256 must match)",
        required=False,
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from crossforget.index.search import Searcher, check_k

    check_k(args.k)
    searcher = Searcher(args.index, args.checkpoint)
    if args.text is not None:
        result = searcher.search_text(args.text, args.k, args.exact)
    else:
        result = searcher.search_image(args.image, args.k, args.exact)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    how = "exact" if result.exact else "IVF"
    print(f"{result.direction} top-{args.k} from version {result.version} ({how} search)")
    print(f"{'rank':>4} {'dist':>4} {'item':>8}  labels | caption")
    for hit in result.hits:
        print(f"{hit.rank:>4} {hit.distance:>4} {hit.item:>8}  {', '.join(hit.labels)} | {hit.caption}")
    return 0
