"""The optimisation ladder, in the order to climb it: experiments (compare pipeline variants on one golden set),
fine-tuning export (chat examples for the generator), retriever tuning (fine-tune the embedding model)."""
