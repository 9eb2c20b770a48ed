"""Free text (datasheets, model cards) rendered as Markdown, sanitised to an allow-list.

Two layers: markdown-it-py renders CommonMark with raw HTML *off* (a ``<script>`` typed into a
datasheet is shown as text) and refuses ``javascript:``/``vbscript:``/``data:`` links; nh3 then
keeps only the tags and attributes below, only http(s)/mailto/relative URLs, and gives every
link ``rel="noopener noreferrer nofollow"``. No class, style, id or on* attribute survives.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "strong",
        "em",
        "del",
        "s",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "a",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
# Dropped with their content (the rest of an unknown tag's text is kept as text).
DROP_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "template"})

_renderer = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    .enable("table")
    .enable("strikethrough")
)


def render_markdown(text: str | None) -> SafeString:
    """Sanitised HTML for ``text`` (empty for None or blank)."""
    if not text or not str(text).strip():
        return SafeString("")
    html = _renderer.render(str(text))
    clean = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
    # nh3 has just reduced it to the allow-list above: safe to mark (docs/security-exceptions.md)
    return mark_safe(clean)  # noqa: S308  # nosec B308 B703
