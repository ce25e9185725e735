"""The gateway's OpenAI-compatible HTTP door: routes, JSON and SSE codecs, errors.

A second front beside ``servicer.py``: it decodes OpenAI's request bodies into
the same domain request, calls the same orchestrator in this process and encodes
OpenAI's shapes and errors, so applications written against the official
``openai`` SDKs switch ``base_url`` and nothing else.
"""
