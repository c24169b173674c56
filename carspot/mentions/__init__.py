"""Car makes named in a post's text (hashtags, handles, brand and model names), from a shipped alias table.

``aliases.toml`` is the vocabulary (one table per make of the released model); :mod:`.aliases` reads it,
:mod:`.matcher` finds the makes a text names (pure, no I/O), and :mod:`.rerank` puts a make the text names first
in an image's top-5. See docs/mentions.md.
"""
