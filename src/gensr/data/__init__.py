"""Training and validation data: HR-only folders with on-the-fly MATLAB bicubic degradation, paired folders."""
