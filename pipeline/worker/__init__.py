"""The worker: the Faust app, its assembly from the settings, the ingest service and the lifecycle agents.

``app`` (the app factory and the module-level app Faust loads), ``assembly`` (decoders, classifier,
pseudonymizers and ingestor from the settings), ``context`` (what agents share), ``ingest_service``
(the batched aiokafka consumer inside the app), ``lifecycle_agents`` (the request agents and the
timers), ``ownership`` (this worker's lifecycle claim across rebalances), ``dpo_records`` (the
watch over the audit trail and the register; timers that cannot stop the worker), ``gc_tuning``
(garbage-collector thresholds for the hot path).
"""
