"""Operations on the store: finding a subject's files and rows, judging the keys they were written
under, rewriting, quarantine, export, rectification, retention, re-apply and the keys the store knows."""
