"""Loading models, pooling and prompts, decoder embedders, LoRA and layer reduction."""
