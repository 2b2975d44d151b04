"""EFEN (Enhanced Feature Extraction Network) in PyTorch: model, data, training, export."""
