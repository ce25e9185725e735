"""The stages of the request flow, composed by ``services.gateway.orchestrator``.

``plan`` (count, route, fit, key) · ``admit`` (limits, budget, cache lookup) ·
``serve`` (the ladder of models, breakers, the queue, singleflight, the upstream) ·
``settle`` (reconcile, cache write, ledger, outbox, reports), each a module of its
own so that a stage can be read, changed and tested alone.
"""
