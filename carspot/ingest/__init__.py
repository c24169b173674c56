"""Sources, safe image normalising, de-duplication and the sink-agnostic producer loop.

``errors`` (refusal reasons) · ``images`` (``normalize_image``, ``decode_jpeg_rgb``) · ``sources``
(``FolderSource``, ``JsonlSource``) · ``dedup`` (``RedisDeduplicator``, ``InMemoryDeduplicator``) · ``loop``
(``run_ingest``). Import from the submodules: this package imports nothing, so importing one stays cheap.
"""
