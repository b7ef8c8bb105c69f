"""Phone numbers and other party strings: classification, E.164, dialled keys, numbers in free text.

``types`` (the number types and roles), ``plan`` (the national numbering plan), ``msisdn`` (the
role-aware classifier), ``dialled`` (the dialled key that ties spellings of one number together),
``text`` (the detector and redactor of numbers in free text), ``identifiers`` (the one rule
for ids: call ids and request ids hold no number), ``resolution`` (how a DPO's
``--number`` is resolved to the subject it names).
"""
