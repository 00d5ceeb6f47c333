"""What a choice becomes: C source and builds for one pruned layer and one KernelConfig."""
