"""The optimisation ladder, in the order to climb it: experiments (compare pipeline variants on one golden set:
variants, experiment, analysis), fine-tuning export (chat examples for the generator: finetune, chat_format;
retriever pairs: pairs), retriever tuning (fine-tune the embedding model: tune_embeddings)."""
