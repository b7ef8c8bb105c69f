"""The Parquet store every stage uses: the storage seam, names, encoding, schema, subject index.

``storage`` (the local seam and its protocol), ``object_storage`` (S3 and other ``pyarrow.fs``
stores), ``errors`` (transient and terminal storage errors), ``retry`` (the one retry policy),
``naming`` (the path grammar, built and parsed in one place), ``schema`` (the stored columns),
``parquet`` (encoding with bloom filters and the subject index), ``subject_index`` (which
pseudonyms a file holds), ``merge`` (joining a replayed batch with an existing file),
``permissions`` (who may read a local store: the start check and the fix), ``fence`` (the
lifecycle owner's numbered claims, checked before every write of the lifecycle path).
"""
