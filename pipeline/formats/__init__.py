"""Input formats: each module decodes one format's bytes into :class:`~pipeline.record.CanonicalCdr`."""
