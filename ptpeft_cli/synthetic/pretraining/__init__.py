"""Builder, pre-training recipe and zero-shot probe of the embedded tiny LLaVA."""
