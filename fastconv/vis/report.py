"""A self-contained HTML report: every figure embedded (base64 PNG) with a title and a one-line caption
saying what it shows and how it was computed; the PNG files stay next to the page as well."""
from __future__ import annotations

import base64
import html
import os


class Report:
    def __init__(self, title, intro=""):
        self.title, self.intro = title, intro
        self.sections = []   # [(heading, [items])]; item: ("figure", path, title, caption) or ("html", text)

    def section(self, heading):
        self.sections.append((heading, []))
        return self

    def _items(self):
        if not self.sections:
            self.section("")
        return self.sections[-1][1]

    def figure(self, path, title, caption):
        """Add the PNG at `path` under the current section."""
        self._items().append(("figure", os.fspath(path), title, caption))
        return self

    def text(self, text):
        self._items().append(("html", f"<p>{html.escape(text)}</p>"))
        return self

    def table(self, header, rows, caption=""):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._items().append(("html", f"<table>{cap}<tr>{head}</tr>{body}</table>"))
        return self

    def figures(self):
        return [item[1] for _, items in self.sections for item in items if item[0] == "figure"]

    def write(self, path):
        """Write the page to `path`; returns path."""
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        if self.intro:
            parts.append(f"<p class='intro'>{html.escape(self.intro)}</p>")
        for heading, items in self.sections:
            if heading:
                parts.append(f"<h2>{html.escape(heading)}</h2>")
            for item in items:
                if item[0] == "html":
                    parts.append(item[1])
                    continue
                _, fig, title, caption = item
                with open(fig, "rb") as f:
                    data = base64.b64encode(f.read()).decode("ascii")
                name = os.path.basename(fig)
                parts.append(f"<figure id='{html.escape(os.path.splitext(name)[0])}'><h3>{html.escape(title)}</h3>"
                             f"<img src='data:image/png;base64,{data}' alt='{html.escape(title)}' "
                             f"data-file='{html.escape(name)}'>"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</body></html>")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
        return path


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}figure{margin:1.2em 0}
h3{font-size:1em;margin:.3em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;max-width:900px}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}caption{text-align:left;color:#444}
.intro{color:#444}"""
