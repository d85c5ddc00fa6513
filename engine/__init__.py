"""The query engine, with no HTTP: retrieval stages (sparse + dense candidates, fusion in Qdrant, rerank),
generation (prompt, LLM or extractive, citations) and the answer. The service, the audit and the CLI all run it.
"""
