"""``{% load charter_markdown %}{{ text|markdown }}``: sanitised Markdown (portal/markdown.py)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from portal.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown", is_safe=True)
def markdown_filter(text: str | None) -> SafeString:
    return render_markdown(text)
