"""Operations on the store: finding a subject's files and rows, rewriting, quarantine, export,
rectification, retention and re-apply."""
