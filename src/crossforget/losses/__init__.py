"""Training losses; each can return the batch loss or per-sample losses (for exact Fisher)."""
