"""JSON for embedding in HTML."""

from __future__ import annotations

import json
from typing import Any


def script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` escaped,
    so a user-supplied string (a subgroup called ``</script>…``) cannot end the element."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
