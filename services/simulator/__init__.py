"""An OpenAI-compatible HTTP simulator for Tollgate.

It serves the Responses, Chat Completions, Embeddings, Models, Files and Batches
endpoints on loopback with deterministic text, exact o200k_base usage numbers,
configurable latency and fault injection, so that users and tests can exercise
every path of the gateway without an OpenAI API key.
"""
