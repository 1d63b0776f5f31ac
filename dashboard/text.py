"""Data reaches the page as plain text. Whatever a store, a query parameter or an error message
holds (camera ids, explanations, rules, notes, labels, URLs) is shown with `st.text`: no
Markdown, no HTML, no colour directives, no links, no images fetched from anywhere. Markdown is
only for words the app writes itself. Every function takes the container to draw in."""

from __future__ import annotations

from typing import Any

ICONS = {"info": ":material/info:", "warning": ":material/warning:",
         "error": ":material/error:", "success": ":material/check_circle:"}


def plain(container: Any, value: object) -> None:
    """`value` exactly as it is, whatever characters it holds."""
    container.text(str(value))


def field(container: Any, label: str, value: object) -> None:
    """An app-made label over a value shown literally."""
    container.caption(label)
    container.text(str(value))


def notice(container: Any, kind: str, message: str, detail: object | None = None) -> None:
    """An info/warning/error/success box with the app's own `message`, and the `detail` (an
    error's text, an id from the URL) literally under it."""
    getattr(container, kind)(message, icon=ICONS[kind])
    if detail is not None and str(detail):
        container.text(str(detail))
