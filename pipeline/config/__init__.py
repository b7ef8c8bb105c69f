"""Runtime settings: typed groups read from ``CDRPIPE_`` variables, with one-line errors.

``settings`` (the groups and :func:`load_settings`), ``group`` (the base of a group and its error
messages), ``fields`` (field types shared by the groups).
"""
