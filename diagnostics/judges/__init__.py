"""Faithfulness judges: one interface (base.Judge), one module per judge, each trainer beside its judge.

- heuristic: embedding + lexical evidence, hand-set weights (the default)
- logistic (+ logistic_train): a logistic regression over the same evidence, trained on SciFact claims
- model (+ model_train): a local cross-encoder, or the one `rag judge train` builds from your corpus
- llm: claim by claim through an OpenAI-compatible endpoint
- ragas_metrics: ragas' LLM-judged metrics (faithfulness, context recall/precision) and their disk cache

factory.make_judge picks one from the settings. Judges never import the audit (an import-linter contract).
"""
