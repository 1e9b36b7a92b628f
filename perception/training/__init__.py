"""Training Grounding DINO: generated grounding data with exact ground truth, prompts with negative
phrases, token-level targets, Hungarian matching and the set losses, and the training loop."""
