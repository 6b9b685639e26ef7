"""SmolVLA finetuning with LoRA on LIBERO. Not implemented yet: see README.md."""
