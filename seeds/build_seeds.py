"""Regenerate seeds/trending-papers.json from the captured trending-papers page.

Run from the repository root:  python seeds/build_seeds.py PATH/TO/trending-papers-page.txt
The page gives titles and abstracts in trending order and no ids, links, dates
or vote counts, so: `url` is an arXiv title search for the paper, `upvotes`
(digestd's `_paper` JSON Feed extension) is derived from the page order (first
= most), `code_url` is the code link an abstract names, and there is no date
(ingestion time is used).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import quote_plus

CODE_LINK = re.compile(r"https?://(?:github\.com|gitlab\.com|huggingface\.co)/[^\s,;)]+")


def build(page: str) -> dict:
    lines = [ln.strip() for ln in page.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", ln))
    body = lines[start + 1 :]
    if len(body) % 2:
        raise SystemExit("the page does not alternate title / abstract lines")
    items = []
    count = len(body) // 2
    for rank in range(count):
        title, abstract = body[2 * rank], body[2 * rank + 1]
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
        code = CODE_LINK.search(abstract)
        paper = {"upvotes": 10 + 2 * (count - rank), "trending_rank": rank + 1}
        if code:
            paper["code_url"] = code.group(0).rstrip(".")
        items.append(
            {
                "id": f"seed:{rank + 1:03d}:{slug}",
                "url": f"https://arxiv.org/search/?query={quote_plus(title)}&searchtype=title",
                "title": title,
                "content_text": abstract,
                "_paper": paper,
            }
        )
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Trending papers (digestd demo seed)",
        "home_page_url": "https://github.com/digestd/digestd",
        "description": "Trending research papers captured from a daily trending-papers page.",
        "items": items,
    }


if __name__ == "__main__":
    feed = build(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = Path(__file__).parent / "trending-papers.json"
    out.write_text(json.dumps(feed, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(feed['items'])} papers to {out}")
